//! The SQLite engine: the writer thread and its commit groups, the read-only connection
//! pool, the commit watcher and the migrations runner. The queries live in `queries.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, TransactionBehavior};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::domain::request_id::RequestId;
use crate::store::{now_timestamp, Cause, StoreError, StoreResult};

/// The schema, applied in this order and recorded in `schema_migrations`.
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../../sql/sqlite/0001_init.sql"),
    ),
    (
        "0002_outbox",
        include_str!("../../../sql/sqlite/0002_outbox.sql"),
    ),
    (
        "0003_jwt_secret",
        include_str!("../../../sql/sqlite/0003_jwt_secret.sql"),
    ),
    (
        "0004_revoked_tokens_expiry",
        include_str!("../../../sql/sqlite/0004_revoked_tokens_expiry.sql"),
    ),
    (
        "0005_relay_lock",
        include_str!("../../../sql/sqlite/0005_relay_lock.sql"),
    ),
    (
        "0006_conversations",
        include_str!("../../../sql/sqlite/0006_conversations.sql"),
    ),
    (
        "0007_presence",
        include_str!("../../../sql/sqlite/0007_presence.sql"),
    ),
    (
        "0008_admin",
        include_str!("../../../sql/sqlite/0008_admin.sql"),
    ),
    (
        "0009_attachment_names",
        include_str!("../../../sql/sqlite/0009_attachment_names.sql"),
    ),
    (
        "0010_event_log",
        include_str!("../../../sql/sqlite/0010_event_log.sql"),
    ),
    (
        "0011_edits_and_replies",
        include_str!("../../../sql/sqlite/0011_edits_and_replies.sql"),
    ),
    (
        "0012_reactions",
        include_str!("../../../sql/sqlite/0012_reactions.sql"),
    ),
];

/// Prepared statements kept per connection: more than the hot paths use, so none of them is
/// parsed again (rusqlite keeps 16 by default).
const STATEMENT_CACHE: usize = 32;
/// Most writes committed together; bounds the latency a write can add to the others.
const MAX_BATCH: usize = 512;
const IDLE_READERS: usize = 8;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the commit watcher looks while the database keeps changing, and at most how
/// long it waits once it has stopped changing (it backs off between the two).
const WATCH_BUSY: Duration = Duration::from_millis(2);
const WATCH_IDLE: Duration = Duration::from_millis(100);

type Reply = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A queued write: runs on the writer connection (or is told why it could not) and returns
/// whether it succeeded plus the answer to send once the group's COMMIT is known.
type Job = Box<dyn FnOnce(StoreResult<&Connection>) -> (bool, Reply) + Send>;

pub struct SqliteStore {
    pub(super) jobs: mpsc::Sender<Job>,
    // Declared after `jobs`: dropping `jobs` first ends the writer loop this then waits for.
    _writer: Joined,
    pub(super) readers: Arc<Readers>,
    pub(super) outbox: Arc<Notify>,
    _watcher: CommitWatcher,
}

/// A thread joined on drop, so that its connection is closed once the store is gone (a disk
/// can be unmounted right after a node stops). Never joined from itself: that would deadlock.
struct Joined(Option<std::thread::JoinHandle<()>>);

impl Drop for Joined {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// Wakes the relay when anyone commits, other nodes sharing the file included: their commits
/// reach this process only through the file, and `PRAGMA data_version` (a cheap read of the
/// WAL index) changes with each. Stopped, and its connection closed, when the store drops.
struct CommitWatcher {
    // Dropped before the thread is joined: the thread wakes at once when it goes.
    _stop: std::sync::mpsc::Sender<()>,
    _thread: Joined,
}

impl CommitWatcher {
    fn start(conn: Connection, outbox: Arc<Notify>) -> StoreResult<Self> {
        // Read here, not in the thread: a commit made once `open` has returned must count as
        // a change, however late the thread gets to run.
        let seen = data_version(&conn)?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-watch".into())
            .spawn(move || watch_commits(&conn, seen, &outbox, &stopped))
            .map_err(|e| StoreError::backend("cannot start the watch thread", e))?;
        Ok(Self {
            _stop: stop,
            _thread: Joined(Some(thread)),
        })
    }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
}

fn watch_commits(
    conn: &Connection,
    mut seen: i64,
    outbox: &Notify,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    let mut pause = WATCH_BUSY;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(pause) {
        match data_version(conn) {
            Ok(now) if now != seen => {
                seen = now;
                outbox.notify_one();
                pause = WATCH_BUSY;
            }
            Ok(_) => pause = (pause * 2).min(WATCH_IDLE),
            Err(error) => {
                tracing::warn!(%error, "cannot read the database's data_version");
                pause = WATCH_IDLE;
            }
        }
    }
}

enum Queueing {
    Shed,
    Wait,
}

pub(super) struct Readers {
    pub(super) path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        let code = match &err {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.code),
            _ => None,
        };
        let what = "SQLite".to_string();
        let source: Cause = Arc::new(err);
        match code {
            Some(ErrorCode::DiskFull) => StoreError::StorageFull { what, source },
            Some(ErrorCode::ReadOnly) => StoreError::StorageReadOnly { what, source },
            _ => StoreError::Backend {
                what,
                source: Some(source),
            },
        }
    }
}

/// A failed BEGIN or COMMIT on the writer. SQLite reports a write refused by a read-only file
/// system as a plain I/O error; the errno it saw tells it apart.
fn write_error(conn: &Connection, err: rusqlite::Error) -> StoreError {
    let io_error = matches!(&err, rusqlite::Error::SqliteFailure(e, _)
        if e.code == ErrorCode::SystemIoFailure);
    if io_error {
        // SAFETY: the handle belongs to `conn`, which is open and used by this thread only.
        let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
        let what = || format!("SQLite: {err}");
        let source = || -> Cause { Arc::new(std::io::Error::from_raw_os_error(errno)) };
        if errno == libc::EROFS {
            return StoreError::StorageReadOnly {
                what: what(),
                source: source(),
            };
        }
        if errno == libc::ENOSPC || errno == libc::EDQUOT {
            return StoreError::StorageFull {
                what: what(),
                source: source(),
            };
        }
    }
    err.into()
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations;
    /// while `max_queued_writes` writes wait for the writer, further ones are refused.
    pub async fn open(path: &str, max_queued_writes: usize) -> StoreResult<Self> {
        let path = PathBuf::from(path);
        let writer_path = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_writer(&writer_path))
            .await
            .map_err(|e| StoreError::backend("opening the writer panicked", e))??;
        let (jobs, queue) = mpsc::channel::<Job>(max_queued_writes.max(1));
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, queue))
            .map_err(|e| StoreError::backend("cannot start the writer thread", e))?;
        let readers = Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
        });
        let outbox = Arc::new(Notify::new());
        let watcher = CommitWatcher::start(readers.take()?, outbox.clone())?;
        Ok(Self {
            jobs,
            _writer: Joined(Some(writer)),
            readers,
            outbox,
            _watcher: watcher,
        })
    }

    /// A write for a client: refused with `Overloaded` rather than queued without bound.
    pub(super) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(Queueing::Shed, work).await
    }

    /// A write of the node's own (relay): waits for room, as the relay must not lose it.
    pub(super) async fn internal_write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(Queueing::Wait, work).await
    }

    async fn submit<T, F>(&self, queueing: Queueing, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let stopped = || StoreError::internal("the database writer has stopped");
        let (answer, answered) = oneshot::channel();
        // The writer thread serves the caller's request: the events it queues carry its id.
        let request = RequestId::current();
        let job: Job = Box::new(move |conn| {
            let result = RequestId::within_sync(request, || conn.and_then(work));
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = answer.send(commit.and(result));
            });
            (ok, reply)
        });
        match queueing {
            Queueing::Shed => self.jobs.try_send(job).map_err(|e| match e {
                TrySendError::Full(_) => StoreError::Overloaded,
                TrySendError::Closed(_) => stopped(),
            })?,
            Queueing::Wait => self.jobs.send(job).await.map_err(|_| stopped())?,
        }
        answered.await.map_err(|_| stopped())?
    }

    pub(super) async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = work(&conn);
            readers.put(conn);
            result
        })
        .await
        .map_err(|e| StoreError::backend("a read panicked", e))?
    }
}

impl Readers {
    fn take(&self) -> StoreResult<Connection> {
        if let Some(conn) = self.idle.lock().expect("reader pool poisoned").pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_handler(Some(wait_while_busy))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().expect("reader pool poisoned");
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
    }
}

/// Retries a statement that found the database locked by another process (another node
/// sharing the file) for up to [`BUSY_TIMEOUT`]. SQLite's own busy timeout sleeps up to
/// 100 ms between tries, which held a node's whole commit group back for tens of
/// milliseconds each time two nodes' writers met; the other writer's commit takes about a
/// millisecond, so look again soon.
fn wait_while_busy(attempts: i32) -> bool {
    const SHORT: Duration = Duration::from_micros(200);
    const SHORT_TRIES: u32 = 50;
    const LONG: Duration = Duration::from_millis(1);
    let attempts = attempts.max(0) as u32;
    let waited = SHORT * attempts.min(SHORT_TRIES) + LONG * attempts.saturating_sub(SHORT_TRIES);
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(if attempts < SHORT_TRIES { SHORT } else { LONG });
    true
}

/// The directory holding the database file (and its WAL).
pub(super) fn database_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn open_writer(path: &Path) -> StoreResult<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::backend(format!("cannot create {}", dir.display()), e))?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_handler(Some(wait_while_busy))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL lets readers work beside the writer; FULL keeps every acknowledged commit on disk.
    // Switching a new file to WAL can report "locked" at once (no busy handler) while another
    // node opening the same file does it: retry within the busy timeout.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    while let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
        let busy = matches!(&e, rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
        if !busy || std::time::Instant::now() >= deadline {
            return Err(e.into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            name TEXT PRIMARY KEY,
            applied_at TEXT NOT NULL
        )",
    )?;
    for (name, sql) in MIGRATIONS {
        // IMMEDIATE: nodes starting together on one file wait for each other (busy timeout)
        // instead of failing on a read-to-write lock upgrade.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE name = ?1)",
            [name],
            |row| row.get(0),
        )?;
        if done {
            continue;
        }
        let failed = |e: rusqlite::Error| StoreError::Migration {
            name: name.to_string(),
            source: Arc::new(e),
        };
        tx.execute_batch(sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?1, ?2)",
            params![name, now_timestamp()],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(migration = name, "applied migration");
    }
    Ok(())
}

fn writer_loop(conn: Connection, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            let error = write_error(&conn, e);
            for job in batch {
                let (_, reply) = job(Err(error.clone()));
                reply(Err(error.clone()));
            }
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            let reply = match run_cached(&conn, "SAVEPOINT job") {
                Ok(()) => {
                    let (ok, reply) = job(Ok(&conn));
                    let end = if ok {
                        run_cached(&conn, "RELEASE job")
                    } else {
                        conn.execute_batch("ROLLBACK TO job; RELEASE job")
                    };
                    if let Err(e) = end {
                        tracing::error!(error = %e, "savepoint cleanup failed");
                    }
                    reply
                }
                Err(e) => job(Err(e.into())).1,
            };
            replies.push(reply);
        }
        let commit = run_cached(&conn, "COMMIT").map_err(|e| {
            let error = write_error(&conn, e);
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %error.chain(), "group commit failed");
            error
        });
        for reply in replies {
            reply(commit.clone());
        }
    }
}

/// Runs a statement without results that the writer repeats for every group or job: parsed
/// once, not each time.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}
