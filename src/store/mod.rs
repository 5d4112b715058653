//! The storage seam. Handlers only see [`Store`]; SQLite is the embedded implementation,
//! PostgreSQL (the `postgres` feature) the one several nodes can share.

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::events::RoomEvent;

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
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    #[error("migration {name} failed: {reason}")]
    Migration { name: String, reason: String },
    /// The disk under the node's data is full (ENOSPC, SQLITE_FULL, PostgreSQL `disk_full`).
    #[error("storage is full: {0}")]
    StorageFull(String),
    /// The node's data cannot be written: a read-only file system or database.
    #[error("storage is read-only: {0}")]
    StorageReadOnly(String),
    #[error("database error: {0}")]
    Backend(String),
    /// Too many writes are already waiting: refused at once so memory stays bounded.
    #[error("storage is overloaded: too many writes are waiting")]
    Overloaded,
}

impl StoreError {
    /// A failed file operation, named by its cause when that is a full or read-only disk.
    pub fn from_io(what: &str, err: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        let reason = format!("{what}: {err}");
        match err.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StoreError::StorageFull(reason),
            ErrorKind::ReadOnlyFilesystem => StoreError::StorageReadOnly(reason),
            _ => StoreError::Backend(reason),
        }
    }
}

/// Checks that `dir` accepts new data now: an unnamed file gets one page written and goes
/// away. A full or read-only disk fails here as the next write would, and recovers with it.
pub fn probe_writable(dir: &Path) -> StoreResult<()> {
    use std::io::Write;
    let what = format!("cannot write in {}", dir.display());
    let mut file = tempfile::tempfile_in(dir).map_err(|e| StoreError::from_io(&what, &e))?;
    file.write_all(&[0; 4096])
        .map_err(|e| StoreError::from_io(&what, &e))
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user as the API shows it (the password hash never leaves the store).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub username: String,
    pub phone_number: String,
    pub first_name: String,
    pub last_name: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub username: String,
    pub phone_number: String,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: String,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: i64,
    pub username: String,
}

#[derive(Debug, Clone)]
pub struct Room {
    pub id: i64,
    pub name: String,
    pub admin: i64,
    pub members: Vec<Member>,
    pub created_at: String,
    pub updated_at: String,
}

/// A stored attachment: `file_name` is the name under the media directory.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: i64,
    pub room_id: i64,
    pub sender_id: i64,
    pub sender_username: String,
    pub content: String,
    pub attachment: Option<Attachment>,
    pub created_at: String,
}

/// A window of a room's history, always returned oldest first.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    /// Only messages with a smaller id (the newest `limit` of them).
    pub before: Option<i64>,
    /// Only messages with a larger id (the oldest `limit` of them).
    pub after: Option<i64>,
}

/// An event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub event: RoomEvent,
}

/// Who may see an attachment: the members of `room_id`.
#[derive(Debug, Clone)]
pub struct AttachmentOwner {
    pub room_id: i64,
    pub content_type: String,
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    /// The user with this email (case-insensitive) and their password hash.
    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>>;
    async fn user(&self, id: i64) -> StoreResult<Option<User>>;

    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()>;
    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool>;

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
    ) -> StoreResult<Message>;
    /// A page of a room's history for a member.
    async fn messages(&self, room: i64, user: i64, page: Page) -> StoreResult<Vec<Message>>;
    async fn attachment_owner(&self, file_name: &str) -> StoreResult<Option<AttachmentOwner>>;

    /// The oldest outbox entries, in id (commit) order.
    async fn outbox_batch(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>>;
    /// Removes published entries.
    async fn outbox_delete(&self, ids: Vec<i64>) -> StoreResult<()>;
    /// Notified after each commit that added outbox entries.
    fn outbox_signal(&self) -> Arc<Notify>;
    /// Takes or renews the relay lease for `holder`; `false` while another holder has it.
    async fn acquire_relay_lease(&self, holder: &str, ttl: Duration) -> StoreResult<bool>;
    /// Gives the lease up (on shutdown), so another relay need not wait for it to expire.
    async fn release_relay_lease(&self, holder: &str) -> StoreResult<()>;

    /// Cheap round trip used by readiness checks.
    async fn ping(&self) -> StoreResult<()>;
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
