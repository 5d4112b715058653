//! The store's part of `chatnode admin`: accounts (disabled or not, their tokens revoked),
//! rooms and their deletion, and counts. Every backend implements it; [`super::Store`]
//! requires it. Changes that must reach the sockets of running nodes queue an outbox event
//! per affected room in the same transaction, so they travel the one durable path.

use async_trait::async_trait;
use serde::Serialize;

use super::{Member, StoreResult, User};
use crate::domain::conversations::RoomKind;

/// Most rows one listing returns; a larger `--limit` is read as this.
pub const MAX_ADMIN_PAGE: u32 = 1000;

/// Whether the tokens of an account still work: checked on every authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStanding {
    Live,
    /// This token's id was revoked (logout), or the account's tokens were revoked after it
    /// was issued.
    Revoked,
    /// The account is disabled: none of its tokens work until it is enabled again.
    Disabled,
}

/// A page of a listing: ids above `after`, at most `limit` (up to [`MAX_ADMIN_PAGE`]).
#[derive(Debug, Clone, Copy)]
pub struct AdminPage {
    pub after: i64,
    pub limit: u32,
}

/// An account as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    #[serde(flatten)]
    pub user: User,
    /// When it was disabled; `None` while it is enabled.
    pub disabled_at: Option<String>,
    /// Tokens issued at or before this Unix second are refused (`tokens revoke --user`).
    pub tokens_revoked_at: Option<i64>,
    /// Rooms it is a member of.
    pub rooms: i64,
}

/// A room as an operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomRecord {
    pub id: i64,
    pub name: String,
    pub kind: RoomKind,
    pub admin: i64,
    pub members: i64,
    pub messages: i64,
    pub created_at: String,
}

/// What deleting a room removed: the room as it was and the attachment files its messages
/// named (the caller removes them from the media directory).
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedRoom {
    pub room: RoomRecord,
    pub files: Vec<String>,
}

/// Rows of the main tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub users: i64,
    pub disabled_users: i64,
    pub rooms: i64,
    pub messages: i64,
}

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// A page of accounts by id.
    async fn accounts(&self, page: AdminPage) -> StoreResult<Vec<Account>>;

    /// One account, and how many messages it sent.
    async fn account(&self, id: i64) -> StoreResult<Option<(Account, i64)>>;

    /// Disables (`true`) or enables an account; idempotent. Disabling also queues a
    /// `member_disabled` event in each of its rooms, in the same transaction, so every node
    /// closes its sockets. `UserNotFound` for an unknown id.
    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<Account>;

    /// Whether the account is disabled (`UserNotFound` for an unknown id): login asks.
    async fn is_disabled(&self, id: i64) -> StoreResult<bool>;

    /// Refuses every token of the account issued until now and queues a
    /// `member_signed_out` event in each of its rooms. `UserNotFound` for an unknown id.
    async fn revoke_user_tokens(&self, id: i64) -> StoreResult<Account>;

    /// A page of rooms by id.
    async fn room_records(&self, page: AdminPage) -> StoreResult<Vec<RoomRecord>>;

    /// One room and its members.
    async fn room_record(&self, id: i64) -> StoreResult<Option<(RoomRecord, Vec<Member>)>>;

    /// Deletes a room with its members, messages and receipts, and queues `room_deleted`
    /// in the same transaction. `RoomNotFound` for an unknown id.
    async fn delete_room(&self, id: i64) -> StoreResult<DeletedRoom>;

    /// How many users, rooms and messages there are.
    async fn counts(&self) -> StoreResult<Counts>;
}

impl TokenStanding {
    /// The standing of a token whose own id was (`revoked`) or was not revoked, of an account
    /// `disabled` or not, whose tokens up to `revoked_at` were revoked, issued at `issued_at`.
    pub fn of(revoked: bool, disabled: bool, revoked_at: Option<i64>, issued_at: i64) -> Self {
        if disabled {
            Self::Disabled
        } else if revoked || revoked_at.is_some_and(|at| issued_at <= at) {
            Self::Revoked
        } else {
            Self::Live
        }
    }
}
