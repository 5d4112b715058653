//! The storage seam. Handlers only see [`Store`]; SQLite is the embedded implementation,
//! PostgreSQL (the `postgres` feature) the one several nodes can share.

pub mod admin;
pub mod conversations;
pub mod edits;
pub mod events;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod presence;
pub mod reactions;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

pub use crate::domain::{
    Attachment, AttachmentOwner, Member, Message, NewUser, OutboxDepth, OutboxEntry, Page, Room,
    User,
};
pub use admin::{AdminStore, TokenStanding};
pub use conversations::ConversationStore;
pub use edits::EditStore;
pub use events::EventLogStore;
pub use presence::PresenceStore;
pub use reactions::ReactionStore;

/// Errors a store reports. Domain outcomes (not found, not a member, ...) are variants so
/// that every backend answers them the same way and the HTTP layer maps them in one place.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("chatroom not found")]
    RoomNotFound,
    #[error("user is not a member of the chatroom")]
    NotMember,
    #[error("user is already a member of the chatroom")]
    AlreadyMember,
    #[error("the chatroom is full")]
    RoomFull,
    #[error("unknown user ids: {0:?}")]
    UnknownUsers(Vec<i64>),
    #[error("no such user")]
    UserNotFound,
    #[error("no such message in this chatroom")]
    MessageNotFound,
    /// Only the sender may edit a message (or delete it, the room's admin aside).
    #[error("the message is someone else's")]
    NotSender,
    /// A reply names a message that is not (or no longer) in the room.
    #[error("reply_to names no message of this chatroom")]
    BadReply,
    /// The edit or delete window after sending has passed.
    #[error("the message is too old to change")]
    ChangeWindowClosed,
    /// One of the two people blocked the other.
    #[error("blocked")]
    Blocked,
    /// A direct conversation keeps its two members: no one enters or leaves it.
    #[error("a direct conversation cannot be entered or left")]
    DirectRoom,
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    #[error("migration {name} failed")]
    Migration {
        name: String,
        #[source]
        source: Cause,
    },
    /// The disk under the node's data is full (ENOSPC, SQLITE_FULL, PostgreSQL `disk_full`).
    #[error("storage is full: {what}")]
    StorageFull {
        what: String,
        #[source]
        source: Cause,
    },
    /// The node's data cannot be written: a read-only file system or database.
    #[error("storage is read-only: {what}")]
    StorageReadOnly {
        what: String,
        #[source]
        source: Cause,
    },
    /// The database or its engine failed; `source` is the driver's error, when there is one.
    #[error("database error: {what}")]
    Backend {
        what: String,
        #[source]
        source: Option<Cause>,
    },
    /// Too many writes are already waiting: refused at once so memory stays bounded.
    #[error("storage is overloaded: too many writes are waiting")]
    Overloaded,
}

/// An error's cause, kept with it; shared so that a `StoreError` stays `Clone` (one group
/// commit's failure answers every sender in it).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

impl StoreError {
    /// `what` failed because of `source`.
    pub fn backend(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            what: what.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// `what` failed, with no error under it (a stopped thread, a timeout).
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Backend {
            what: what.into(),
            source: None,
        }
    }

    /// A failed file operation, named by its cause when that is a full or read-only disk.
    pub fn from_io(what: &str, err: std::io::Error) -> Self {
        use std::io::ErrorKind;
        let what = what.to_string();
        let kind = err.kind();
        let source: Cause = Arc::new(err);
        match kind {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
                StoreError::StorageFull { what, source }
            }
            ErrorKind::ReadOnlyFilesystem => StoreError::StorageReadOnly { what, source },
            _ => StoreError::Backend {
                what,
                source: Some(source),
            },
        }
    }

    /// The error and every cause under it, for `/readyz` and logs.
    pub fn chain(&self) -> String {
        crate::cause_chain(self)
    }
}

/// Checks that `dir` accepts new data now: an unnamed file gets one page written and goes
/// away. A full or read-only disk fails here as the next write would, and recovers with it.
pub fn probe_writable(dir: &Path) -> StoreResult<()> {
    use std::io::Write;
    let what = format!("cannot write in {}", dir.display());
    let mut file = tempfile::tempfile_in(dir).map_err(|e| StoreError::from_io(&what, e))?;
    file.write_all(&[0; 4096])
        .map_err(|e| StoreError::from_io(&what, e))
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store:
    ConversationStore
    + EditStore
    + ReactionStore
    + EventLogStore
    + PresenceStore
    + AdminStore
    + Send
    + Sync
{
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    /// The user with this email (case-insensitive) and their password hash.
    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>>;
    async fn user(&self, id: i64) -> StoreResult<Option<User>>;

    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()>;
    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool>;
    /// The user a token names and whether the token still works (its `jti` revoked, the
    /// account's tokens up to its `issued_at` revoked, the account disabled), in one read:
    /// every authenticated request asks.
    async fn token_user(
        &self,
        id: i64,
        jti: &str,
        issued_at: i64,
    ) -> StoreResult<Option<(User, TokenStanding)>>;

    /// Creates a room with `admin` and `members` (all must exist) as members; nothing is
    /// written when any id is unknown or the member count exceeds `cap`.
    async fn create_room(
        &self,
        name: &str,
        admin: i64,
        members: &[i64],
        cap: usize,
    ) -> StoreResult<Room>;
    async fn rooms_of(&self, user: i64) -> StoreResult<Vec<Room>>;
    async fn room(&self, room: i64) -> StoreResult<Option<Room>>;
    /// `Ok(())` for a member; `RoomNotFound` or `NotMember` otherwise.
    async fn check_member(&self, room: i64, user: i64) -> StoreResult<()>;
    /// Adds a member and queues the join notice in the outbox, atomically.
    async fn join_room(&self, room: i64, user: i64, cap: usize) -> StoreResult<Room>;
    /// Removes a member and queues the leave notice in the outbox, atomically.
    async fn leave_room(&self, room: i64, user: i64) -> StoreResult<Room>;

    /// Stores a message from a member and queues its event in the outbox; the membership
    /// check, the insert and the outbox row are one transaction.
    async fn post_message(
        &self,
        room: i64,
        sender: i64,
        content: &str,
        attachment: Option<Attachment>,
    ) -> StoreResult<Message> {
        self.post_reply(room, sender, content, attachment, None)
            .await
    }
    /// [`Store::post_message`], answering message `reply_to` of the same room (not deleted;
    /// `BadReply` otherwise).
    async fn post_reply(
        &self,
        room: i64,
        sender: i64,
        content: &str,
        attachment: Option<Attachment>,
        reply_to: Option<i64>,
    ) -> StoreResult<Message>;
    /// A page of a room's history for a member.
    async fn messages(&self, room: i64, user: i64, page: Page) -> StoreResult<Vec<Message>>;
    async fn attachment_owner(&self, file_name: &str) -> StoreResult<Option<AttachmentOwner>>;

    /// The oldest outbox entries, in id (commit) order.
    async fn outbox_batch(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>>;
    /// Removes published entries.
    async fn outbox_delete(&self, ids: Vec<i64>) -> StoreResult<()>;
    /// How many events wait in the outbox and when the oldest was stored (for metrics).
    async fn outbox_depth(&self) -> StoreResult<OutboxDepth>;
    /// Notified after each commit that added outbox entries.
    fn outbox_signal(&self) -> Arc<Notify>;
    /// Operations waiting for the database, for metrics: SQLite's writes queued for the
    /// writer thread, PostgreSQL's requests waiting for a pooled connection.
    fn queue_depth(&self) -> usize;
    /// Takes relay lease `key` when no live node holds it; `None` while one does. The lease
    /// ends when released, dropped, or when its holder dies (the database or the kernel
    /// releases it then), so another node can take over at once.
    async fn try_relay_lease(&self, key: u32) -> StoreResult<Option<Box<dyn RelayLease>>>;

    /// Cheap round trip used by readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// The JWT secret every node sharing this database uses when none is configured:
    /// `candidate` is stored if there is none yet, and the stored one is returned.
    async fn agree_jwt_secret(&self, candidate: &str) -> StoreResult<String>;
}

/// The exclusive right to publish one part of the outbox, held until released or dropped
/// (dropping a PostgreSQL lease lets the server release it once it sees the session end).
#[async_trait]
pub trait RelayLease: Send {
    /// Fails once this node cannot be sure it still holds the lease (its lock connection
    /// broke, its lock file was replaced): the relay must then stop publishing.
    async fn confirm(&mut self) -> StoreResult<()>;
    /// Gives the lease up now, so another node can take it on its next try.
    async fn release(self: Box<Self>) -> StoreResult<()>;
}

/// Writes the SQLite writer thread lets wait by default (`--max-queued-writes`).
pub const DEFAULT_MAX_QUEUED_WRITES: usize = 4096;

/// Opens the backend named by the URL's scheme and applies its migrations.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    open_bounded(url, DEFAULT_MAX_QUEUED_WRITES).await
}

/// [`open`], refusing writes with [`StoreError::Overloaded`] while `max_queued_writes` wait
/// (SQLite; PostgreSQL bounds its waiters with the pool's wait timeout instead).
pub async fn open_bounded(url: &str, max_queued_writes: usize) -> StoreResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open(path, max_queued_writes).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(postgres::PostgresStore::open(url).await?));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::UnsupportedUrl(format!(
            "{} (PostgreSQL needs the `postgres` cargo feature, which this build does not include: cargo build --features postgres)",
            redact(url)
        )));
    }
    Err(StoreError::UnsupportedUrl(format!(
        "{} (expected {SUPPORTED_URLS})",
        redact(url)
    )))
}

#[cfg(feature = "postgres")]
const SUPPORTED_URLS: &str = "sqlite://<path> or postgres://<user>@<host>/<database>";
#[cfg(not(feature = "postgres"))]
const SUPPORTED_URLS: &str = "sqlite://<path>";

/// Hides a password in `scheme://user:password@host` before it reaches a log or an error.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub fn now_timestamp() -> String {
    format_timestamp(chrono::Utc::now())
}

/// The one timestamp format every backend answers with: RFC 3339 in UTC, microseconds, `Z`.
pub fn format_timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The migration names in `sql/<dialect>/`, sorted: each backend checks it lists them all.
#[cfg(test)]
pub(crate) fn migration_files(dialect: &str) -> Vec<String> {
    let dir = format!("{}/sql/{dialect}", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".sql").map(str::to_string))
        .collect();
    files.sort();
    files
}
