//! SQLite behind the [`Store`] seam.
//!
//! rusqlite is blocking, so it never runs on the async workers: one writer thread owns the
//! only write connection and commits queued writes in groups (each write in its own savepoint,
//! answered only after the shared COMMIT), and reads run in `spawn_blocking` on a small pool of
//! read-only connections that WAL lets proceed while the writer works.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, Notify};

use super::{
    now_timestamp, Attachment, AttachmentOwner, Member, Message, NewUser, OutboxEntry, Page, Room,
    Store, StoreError, StoreResult, User,
};
use crate::events::RoomEvent;

/// The schema, applied in this order and recorded in `schema_migrations`.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../sql/sqlite/0001_init.sql")),
    (
        "0002_outbox",
        include_str!("../../sql/sqlite/0002_outbox.sql"),
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
    jobs: mpsc::Sender<Job>,
    readers: Arc<Readers>,
    outbox: Arc<Notify>,
    _watcher: CommitWatcher,
}

/// Wakes the relay when anyone commits, other nodes sharing the file included: their commits
/// reach this process only through the file, and `PRAGMA data_version` (a cheap read of the
/// WAL index) changes with each. Stopped, and its connection closed, when the store drops.
struct CommitWatcher {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
            .map_err(|e| StoreError::Backend(format!("cannot start the watch thread: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for CommitWatcher {
    /// Waits for the thread (it wakes at once), so that nothing holds the file afterwards.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        let code = match &err {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.code),
            _ => None,
        };
        match code {
            Some(ErrorCode::DiskFull) => StoreError::StorageFull(err.to_string()),
            Some(ErrorCode::ReadOnly) => StoreError::StorageReadOnly(err.to_string()),
            _ => StoreError::Backend(err.to_string()),
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
        let reason = || format!("{err}: {}", std::io::Error::from_raw_os_error(errno));
        if errno == libc::EROFS {
            return StoreError::StorageReadOnly(reason());
        }
        if errno == libc::ENOSPC || errno == libc::EDQUOT {
            return StoreError::StorageFull(reason());
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
            .map_err(|e| StoreError::Backend(e.to_string()))??;
        let (jobs, queue) = mpsc::channel::<Job>(max_queued_writes.max(1));
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, queue))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        let readers = Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
        });
        let outbox = Arc::new(Notify::new());
        let watcher = CommitWatcher::start(readers.take()?, outbox.clone())?;
        Ok(Self {
            jobs,
            readers,
            outbox,
            _watcher: watcher,
        })
    }

    /// A write for a client: refused with `Overloaded` rather than queued without bound.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(Queueing::Shed, work).await
    }

    /// A write of the node's own (relay): waits for room, as the relay must not lose it.
    async fn internal_write<T, F>(&self, work: F) -> StoreResult<T>
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
        let stopped = || StoreError::Backend("the database writer has stopped".into());
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = conn.and_then(work);
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

    async fn read<T, F>(&self, work: F) -> StoreResult<T>
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
        .map_err(|e| StoreError::Backend(e.to_string()))?
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
fn database_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn open_writer(path: &Path) -> StoreResult<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
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
            reason: e.to_string(),
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
            tracing::error!(%error, "group commit failed");
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

const USER_COLUMNS: &str =
    "id, email, username, phone_number, first_name, last_name, created_at, updated_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        username: row.get(2)?,
        phone_number: row.get(3)?,
        first_name: row.get(4)?,
        last_name: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

fn is_constraint(err: &rusqlite::Error, needle: &str) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, Some(msg))
        if e.code == ErrorCode::ConstraintViolation && msg.contains(needle))
}

fn load_room(conn: &Connection, room: i64) -> StoreResult<Option<Room>> {
    let head = conn
        .query_row(
            "SELECT id, name, admin_id, created_at, updated_at FROM rooms WHERE id = ?1",
            [room],
            |row| {
                Ok(Room {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    admin: row.get(2)?,
                    members: Vec::new(),
                    created_at: row.get(3)?,
                    updated_at: row.get(4)?,
                })
            },
        )
        .optional()?;
    let Some(mut room) = head else {
        return Ok(None);
    };
    let mut members = conn.prepare_cached(
        "SELECT u.id, u.username FROM room_members m JOIN users u ON u.id = m.user_id
         WHERE m.room_id = ?1 ORDER BY m.joined_at, u.id",
    )?;
    room.members = members
        .query_map([room.id], |row| {
            Ok(Member {
                id: row.get(0)?,
                username: row.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(room))
}

fn check_member(conn: &Connection, room: i64, user: i64) -> StoreResult<()> {
    let state: Option<bool> = conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM room_members WHERE room_id = r.id AND user_id = ?2)
             FROM rooms r WHERE r.id = ?1",
        )?
        .query_row(params![room, user], |row| row.get(0))
        .optional()?;
    match state {
        None => Err(StoreError::RoomNotFound),
        Some(false) => Err(StoreError::NotMember),
        Some(true) => Ok(()),
    }
}

fn enqueue(conn: &Connection, event: &RoomEvent) -> StoreResult<()> {
    let body = serde_json::to_string(event).map_err(|e| StoreError::Backend(e.to_string()))?;
    conn.prepare_cached("INSERT INTO outbox (event, created_at) VALUES (?1, ?2)")?
        .execute(params![body, event.created_at])?;
    Ok(())
}

fn username(conn: &Connection, user: i64) -> StoreResult<String> {
    Ok(
        conn.query_row("SELECT username FROM users WHERE id = ?1", [user], |row| {
            row.get(0)
        })?,
    )
}

fn touch_room(conn: &Connection, room: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE rooms SET updated_at = ?2 WHERE id = ?1",
        params![room, now_timestamp()],
    )?;
    Ok(())
}

const MESSAGE_SELECT: &str =
    "SELECT m.id, m.room_id, m.sender_id, u.username, m.content, m.created_at,
            a.file_name, a.content_type, a.size
     FROM messages m JOIN users u ON u.id = m.sender_id
     LEFT JOIN attachments a ON a.message_id = m.id";

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let file_name: Option<String> = row.get(6)?;
    let attachment = match file_name {
        Some(file_name) => Some(Attachment {
            file_name,
            content_type: row.get(7)?,
            size: row.get::<_, i64>(8)? as u64,
        }),
        None => None,
    };
    Ok(Message {
        id: row.get(0)?,
        room_id: row.get(1)?,
        sender_id: row.get(2)?,
        sender_username: row.get(3)?,
        content: row.get(4)?,
        created_at: row.get(5)?,
        attachment,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        self.write(move |conn| {
            let now = now_timestamp();
            let inserted = conn.execute(
                "INSERT INTO users (email, username, phone_number, first_name, last_name,
                                    password_hash, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    user.email,
                    user.username,
                    user.phone_number,
                    user.first_name,
                    user.last_name,
                    user.password_hash,
                    now
                ],
            );
            match inserted {
                Err(e) if is_constraint(&e, "users.email") => return Err(StoreError::EmailTaken),
                other => other?,
            };
            let id = conn.last_insert_rowid();
            Ok(conn.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id],
                user_from_row,
            )?)
        })
        .await
    }

    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        let email = email.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = ?1"),
                    [email],
                    |row| Ok((user_from_row(row)?, row.get(8)?)),
                )
                .optional()?)
        })
        .await
    }

    async fn user(&self, id: i64) -> StoreResult<Option<User>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row([id], user_from_row)
                .optional()?)
        })
        .await
    }

    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        let jti = jti.to_string();
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM revoked_tokens WHERE expires_at < ?1",
                [chrono::Utc::now().timestamp()],
            )?;
            conn.execute(
                "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)",
                params![jti, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        let jti = jti.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM revoked_tokens WHERE jti = ?1)")?
                .query_row([jti], |row| row.get(0))?)
        })
        .await
    }

    async fn create_room(
        &self,
        name: &str,
        admin: i64,
        members: &[i64],
        cap: usize,
    ) -> StoreResult<Room> {
        let name = name.to_string();
        let mut ids = vec![admin];
        for id in members {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        self.write(move |conn| {
            if ids.len() > cap {
                return Err(StoreError::RoomFull);
            }
            let mut exists = conn.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?;
            let mut unknown = Vec::new();
            for id in &ids {
                if !exists.exists([id])? {
                    unknown.push(*id);
                }
            }
            if !unknown.is_empty() {
                return Err(StoreError::UnknownUsers(unknown));
            }
            let now = now_timestamp();
            conn.execute(
                "INSERT INTO rooms (name, admin_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                params![name, admin, now],
            )?;
            let room = conn.last_insert_rowid();
            let mut add = conn.prepare_cached(
                "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
            )?;
            for id in &ids {
                add.execute(params![room, id, now])?;
            }
            load_room(conn, room)?.ok_or(StoreError::RoomNotFound)
        })
        .await
    }

    async fn rooms_of(&self, user: i64) -> StoreResult<Vec<Room>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT room_id FROM room_members WHERE user_id = ?1 ORDER BY room_id",
            )?;
            let ids = stmt
                .query_map([user], |row| row.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut rooms = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(room) = load_room(conn, id)? {
                    rooms.push(room);
                }
            }
            Ok(rooms)
        })
        .await
    }

    async fn room(&self, room: i64) -> StoreResult<Option<Room>> {
        self.read(move |conn| load_room(conn, room)).await
    }

    async fn check_member(&self, room: i64, user: i64) -> StoreResult<()> {
        self.read(move |conn| check_member(conn, room, user)).await
    }

    async fn join_room(&self, room: i64, user: i64, cap: usize) -> StoreResult<Room> {
        let joined = self
            .write(move |conn| {
                match check_member(conn, room, user) {
                    Ok(()) => return Err(StoreError::AlreadyMember),
                    Err(StoreError::NotMember) => {}
                    Err(e) => return Err(e),
                }
                let count: i64 = conn.query_row(
                    "SELECT COUNT(*) FROM room_members WHERE room_id = ?1",
                    [room],
                    |row| row.get(0),
                )?;
                if count as usize >= cap {
                    return Err(StoreError::RoomFull);
                }
                let now = now_timestamp();
                conn.execute(
                    "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
                    params![room, user, now],
                )?;
                touch_room(conn, room)?;
                enqueue(
                    conn,
                    &RoomEvent::joined(room, user, &username(conn, user)?, &now),
                )?;
                load_room(conn, room)?.ok_or(StoreError::RoomNotFound)
            })
            .await?;
        self.outbox.notify_one();
        Ok(joined)
    }

    async fn leave_room(&self, room: i64, user: i64) -> StoreResult<Room> {
        let left = self
            .write(move |conn| {
                check_member(conn, room, user)?;
                conn.execute(
                    "DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2",
                    params![room, user],
                )?;
                touch_room(conn, room)?;
                let now = now_timestamp();
                enqueue(
                    conn,
                    &RoomEvent::left(room, user, &username(conn, user)?, &now),
                )?;
                load_room(conn, room)?.ok_or(StoreError::RoomNotFound)
            })
            .await?;
        self.outbox.notify_one();
        Ok(left)
    }

    async fn post_message(
        &self,
        room: i64,
        sender: i64,
        content: &str,
        attachment: Option<Attachment>,
    ) -> StoreResult<Message> {
        let content = content.to_string();
        let message = self
            .write(move |conn| {
                check_member(conn, room, sender)?;
                conn.prepare_cached(
                    "INSERT INTO messages (room_id, sender_id, content, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![room, sender, content, now_timestamp()])?;
                let id = conn.last_insert_rowid();
                if let Some(file) = &attachment {
                    conn.execute(
                        "INSERT INTO attachments (message_id, file_name, content_type, size)
                     VALUES (?1, ?2, ?3, ?4)",
                        params![id, file.file_name, file.content_type, file.size as i64],
                    )?;
                }
                let message = conn
                    .prepare_cached(&format!("{MESSAGE_SELECT} WHERE m.id = ?1"))?
                    .query_row([id], message_from_row)?;
                enqueue(conn, &RoomEvent::message(&message))?;
                Ok(message)
            })
            .await?;
        self.outbox.notify_one();
        Ok(message)
    }

    async fn messages(&self, room: i64, user: i64, page: Page) -> StoreResult<Vec<Message>> {
        self.read(move |conn| {
            check_member(conn, room, user)?;
            let before = page.before.unwrap_or(i64::MAX);
            let limit = i64::from(page.limit);
            let messages = match page.after {
                Some(after) => conn
                    .prepare_cached(&format!(
                        "{MESSAGE_SELECT} WHERE m.room_id = ?1 AND m.id > ?2 AND m.id < ?3
                         ORDER BY m.id ASC LIMIT ?4"
                    ))?
                    .query_map(params![room, after, before, limit], message_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
                None => {
                    let mut newest = conn
                        .prepare_cached(&format!(
                            "{MESSAGE_SELECT} WHERE m.room_id = ?1 AND m.id < ?2
                             ORDER BY m.id DESC LIMIT ?3"
                        ))?
                        .query_map(params![room, before, limit], message_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    newest.reverse();
                    newest
                }
            };
            Ok(messages)
        })
        .await
    }

    async fn attachment_owner(&self, file_name: &str) -> StoreResult<Option<AttachmentOwner>> {
        let file_name = file_name.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT m.room_id, a.content_type FROM attachments a
                     JOIN messages m ON m.id = a.message_id WHERE a.file_name = ?1",
                    [file_name],
                    |row| {
                        Ok(AttachmentOwner {
                            room_id: row.get(0)?,
                            content_type: row.get(1)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn outbox_batch(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT id, event FROM outbox ORDER BY id LIMIT ?1")?;
            let rows = stmt
                .query_map([limit], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(id, body)| {
                    let event = serde_json::from_str(&body).map_err(|e| {
                        StoreError::Backend(format!("outbox entry {id} is corrupt: {e}"))
                    })?;
                    Ok(OutboxEntry { id, event })
                })
                .collect()
        })
        .await
    }

    async fn outbox_delete(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.internal_write(move |conn| {
            let mut delete = conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in ids {
                delete.execute([id])?;
            }
            Ok(())
        })
        .await
    }

    fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox.clone()
    }

    async fn acquire_relay_lease(&self, holder: &str, ttl: Duration) -> StoreResult<bool> {
        let holder = holder.to_string();
        self.internal_write(move |conn| {
            let now = chrono::Utc::now().timestamp_millis();
            let until = now + ttl.as_millis() as i64;
            conn.prepare_cached(
                "INSERT INTO relay_lease (id, holder, expires_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,
                                                expires_at = excluded.expires_at
                 WHERE relay_lease.holder = excluded.holder OR relay_lease.expires_at < ?3",
            )?
            .execute(params![holder, until, now])?;
            Ok(conn
                .prepare_cached("SELECT holder = ?1 FROM relay_lease WHERE id = 1")?
                .query_row([&holder], |row| row.get(0))?)
        })
        .await
    }

    async fn release_relay_lease(&self, holder: &str) -> StoreResult<()> {
        let holder = holder.to_string();
        self.internal_write(move |conn| {
            conn.execute("DELETE FROM relay_lease WHERE holder = ?1", [holder])?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await?;
        self.write(|_| Ok(())).await?;
        // The round trips above write nothing to disk: a full or read-only disk shows here.
        let dir = database_dir(&self.readers.path);
        tokio::task::spawn_blocking(move || super::probe_writable(&dir))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sql_file_is_a_listed_migration_in_order() {
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(crate::store::migration_files("sqlite"), listed);
    }

    #[tokio::test]
    async fn a_commit_by_another_node_sharing_the_file_wakes_the_relay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let path = path.to_str().unwrap();
        let other_node = SqliteStore::open(path, 16).await.unwrap();
        let this_node = SqliteStore::open(path, 16).await.unwrap();
        let woken = this_node.outbox_signal();
        other_node
            .create_user(NewUser {
                email: "a@example.com".into(),
                username: "a".into(),
                phone_number: String::new(),
                first_name: String::new(),
                last_name: String::new(),
                password_hash: "x".into(),
            })
            .await
            .unwrap();
        // Without the watcher this node only hears of its own commits: this would time out.
        tokio::time::timeout(Duration::from_secs(10), woken.notified())
            .await
            .expect("the other node's commit wakes this node's relay");
    }

    #[tokio::test]
    async fn client_writes_beyond_the_queue_bound_are_refused_and_relay_writes_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bounded.db");
        let store = Arc::new(SqliteStore::open(path.to_str().unwrap(), 1).await.unwrap());
        // Hold the writer thread inside a job, so the next write sits in the queue.
        let (started, writer_busy) = std::sync::mpsc::channel::<()>();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(move |_| {
                        started.send(()).unwrap();
                        let _ = held.recv();
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || writer_busy.recv().unwrap())
            .await
            .unwrap();
        let queued = tokio::spawn({
            let store = store.clone();
            async move { store.write(|_| Ok(1)).await }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.jobs.capacity() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the write never queued"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The queue is full: a client write is refused at once, a relay write waits for room.
        assert!(matches!(
            store.write(|_| Ok(2)).await,
            Err(StoreError::Overloaded)
        ));
        let internal = tokio::spawn({
            let store = store.clone();
            async move { store.release_relay_lease("nobody").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!internal.is_finished(), "the relay write waits for room");
        release.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        assert_eq!(queued.await.unwrap().unwrap(), 1);
        internal.await.unwrap().unwrap();
        // Once drained, writes are accepted again.
        assert_eq!(store.write(|_| Ok(3)).await.unwrap(), 3);
    }
}
