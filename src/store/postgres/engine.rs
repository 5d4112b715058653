//! The PostgreSQL engine: the connection pool, the LISTEN task, the relay lock sessions and
//! the migrations runner. The queries live in `queries.rs`.

use std::error::Error as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, Pool, PoolError, Runtime};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Config, NoTls};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::store::{redact, Cause, RelayLease, StoreError, StoreResult};

/// The schema, applied in this order and recorded in `schema_migrations`.
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../../sql/postgres/0001_init.sql"),
    ),
    (
        "0002_outbox",
        include_str!("../../../sql/postgres/0002_outbox.sql"),
    ),
    (
        "0003_jwt_secret",
        include_str!("../../../sql/postgres/0003_jwt_secret.sql"),
    ),
    (
        "0004_revoked_tokens_expiry",
        include_str!("../../../sql/postgres/0004_revoked_tokens_expiry.sql"),
    ),
    (
        "0005_relay_lock",
        include_str!("../../../sql/postgres/0005_relay_lock.sql"),
    ),
    (
        "0006_conversations",
        include_str!("../../../sql/postgres/0006_conversations.sql"),
    ),
    (
        "0007_presence",
        include_str!("../../../sql/postgres/0007_presence.sql"),
    ),
    (
        "0008_admin",
        include_str!("../../../sql/postgres/0008_admin.sql"),
    ),
    (
        "0009_attachment_names",
        include_str!("../../../sql/postgres/0009_attachment_names.sql"),
    ),
    (
        "0010_event_log",
        include_str!("../../../sql/postgres/0010_event_log.sql"),
    ),
    (
        "0011_edits_and_replies",
        include_str!("../../../sql/postgres/0011_edits_and_replies.sql"),
    ),
    (
        "0012_reactions",
        include_str!("../../../sql/postgres/0012_reactions.sql"),
    ),
];

/// Advisory lock key ("chatnode" in ASCII) held while migrating, so nodes starting together
/// apply each migration once.
const MIGRATION_LOCK: i64 = 0x6368_6174_6e6f_6465;
const POOL_SIZE: usize = 16;
/// Bounds how long a request waits for a connection when the database is slow or gone.
const POOL_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before listening again after the notification connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);
/// First advisory-lock key of the relay leases ("chat"), the second being the lease's key.
pub(super) const RELAY_LOCK_CLASS: i32 = 0x6368_6174;
/// Longest wait for the lock connection to answer; beyond it the lease is not sure.
pub(super) const LOCK_ROUND_TRIP: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pub(super) pool: Pool,
    pub(super) config: Config,
    /// A lock connection that did not get the lease, kept for the next try.
    pub(super) spare_lock_session: std::sync::Mutex<Option<LockSession>>,
    pub(super) outbox: Arc<Notify>,
    /// Stops the LISTEN task when the store is dropped.
    _listener: DropGuard,
}

/// The error with its cause: tokio-postgres' own text is only "db error" for server errors.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.source() {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let what = "PostgreSQL".to_string();
        let code = err.code().cloned();
        let source: Cause = Arc::new(err);
        match code {
            Some(code) if code == SqlState::DISK_FULL => StoreError::StorageFull { what, source },
            Some(code) if code == SqlState::READ_ONLY_SQL_TRANSACTION => {
                StoreError::StorageReadOnly { what, source }
            }
            _ => StoreError::Backend {
                what,
                source: Some(source),
            },
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Backend(err) => err.into(),
            other => StoreError::backend("the connection pool failed", other),
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url`, applies pending migrations and starts listening
    /// for outbox notifications.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let mut config = Config::from_str(url)
            .map_err(|e| StoreError::UnsupportedUrl(format!("{}: {e}", redact(url))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        migrate(&config).await?;
        let pool = Pool::builder(Manager::new(config.clone(), NoTls))
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::backend("cannot build the connection pool", e))?;
        let outbox = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(listen(config.clone(), outbox.clone(), stop.clone()));
        Ok(Self {
            pool,
            config,
            spare_lock_session: std::sync::Mutex::new(None),
            outbox,
            _listener: stop.drop_guard(),
        })
    }
}

/// A connection of its own holding session-level advisory locks: the server releases them
/// when the session ends, including when the node holding them dies. Dropping the client
/// ends the session.
pub(super) struct LockSession {
    pub(super) client: tokio_postgres::Client,
}

impl LockSession {
    pub(super) async fn connect(config: &Config) -> StoreResult<Self> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %describe(&e), "the relay lock connection failed");
            }
        });
        Ok(Self { client })
    }
}

#[async_trait]
impl RelayLease for LockSession {
    async fn confirm(&mut self) -> StoreResult<()> {
        // An answer on the session proves it lives, and with it every lock it took.
        tokio::time::timeout(LOCK_ROUND_TRIP, self.client.simple_query(""))
            .await
            .map_err(|_| StoreError::internal("the relay lock connection stopped answering"))??;
        Ok(())
    }

    async fn release(self: Box<Self>) -> StoreResult<()> {
        // The session holds this lease's lock only.
        tokio::time::timeout(
            LOCK_ROUND_TRIP,
            self.client.simple_query("SELECT pg_advisory_unlock_all()"),
        )
        .await
        .map_err(|_| StoreError::internal("releasing the relay lock timed out"))??;
        Ok(())
    }
}

async fn migrate(config: &Config) -> StoreResult<()> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let applied = apply_migrations(&mut client).await;
    // Closing the session also releases the advisory lock when a migration failed.
    drop(client);
    let _ = driver.await;
    applied
}

async fn apply_migrations(client: &mut tokio_postgres::Client) -> StoreResult<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                name       TEXT        PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
    for (name, sql) in MIGRATIONS {
        let failed = |e: tokio_postgres::Error| StoreError::Migration {
            name: name.to_string(),
            source: Arc::new(e),
        };
        let tx = client.transaction().await?;
        let done: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE name = $1)",
                &[name],
            )
            .await?
            .get(0);
        if done {
            continue;
        }
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(migration = name, "applied migration");
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    Ok(())
}

/// Pokes `outbox` for every notification on the outbox channel, reconnecting whenever the
/// connection drops, until `stop` is cancelled.
async fn listen(config: Config, outbox: Arc<Notify>, stop: CancellationToken) {
    loop {
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            ended = listen_once(&config, &outbox) => ended,
        };
        match ended {
            Ok(()) => tracing::warn!("the outbox notification connection closed; reconnecting"),
            Err(e) => tracing::warn!(
                error = %describe(&e),
                "the outbox notification connection failed; reconnecting"
            ),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RELISTEN_DELAY) => {}
        }
    }
}

async fn listen_once(config: &Config, outbox: &Notify) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    // Notifications arrive through the connection, so it is polled here rather than spawned.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let subscribe = client.batch_execute("LISTEN chatnode_outbox");
    tokio::pin!(subscribe);
    let mut subscribed = false;
    loop {
        tokio::select! {
            done = &mut subscribe, if !subscribed => {
                done?;
                subscribed = true;
                // Commits made while nothing listened were announced to no one.
                outbox.notify_one();
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => outbox.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}
