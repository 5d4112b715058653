//! The store's part of conversations: direct rooms, blocking, the chat list and receipts.
//! Every backend implements it; [`super::Store`] requires it.

use async_trait::async_trait;

use super::{Member, Room, StoreResult, User};
use crate::domain::conversations::{
    ListPage, MemberPage, MessageReceipt, ReceiptMark, RoomPositions, RoomSummary, UserLookup,
};

#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// The user with exactly this email or phone number (the oldest account if several
    /// share a phone number).
    async fn find_user(&self, lookup: UserLookup) -> StoreResult<Option<User>>;

    /// The direct room of `caller` and `peer`, made if missing (`true`): one per pair, also
    /// when both ask at once, on any node. `UserNotFound` for an unknown peer, `Blocked` when
    /// either blocked the other.
    async fn direct_room(&self, caller: i64, peer: i64) -> StoreResult<(Room, bool)>;

    /// Blocks (`on`) or unblocks `blocked` for `blocker`; idempotent. Returns the user.
    async fn set_block(&self, blocker: i64, blocked: i64, on: bool) -> StoreResult<User>;

    /// The users `blocker` blocked, by id.
    async fn blocked_users(&self, blocker: i64) -> StoreResult<Vec<User>>;

    /// A page of `user`'s rooms, newest activity first, in a constant number of queries.
    async fn chat_list(&self, user: i64, page: ListPage) -> StoreResult<Vec<RoomSummary>>;

    /// A page of a room's members by user id, for a member of it.
    async fn room_members(
        &self,
        room: i64,
        user: i64,
        page: MemberPage,
    ) -> StoreResult<Vec<Member>>;

    /// The newest message id of a room (0 if none), for a member of it.
    async fn newest_message_id(&self, room: i64, user: i64) -> StoreResult<i64>;

    /// Moves each mark's position forward (a read moves the delivered position too), records
    /// the moves and queues a receipt event for each, in one transaction. Returns each mark's
    /// position afterwards; a mark of someone no longer a member gives 0 and changes nothing.
    async fn apply_receipts(&self, marks: Vec<ReceiptMark>) -> StoreResult<Vec<i64>>;

    /// Messages in the room after `user`'s read position that others sent.
    async fn unread_count(&self, room: i64, user: i64) -> StoreResult<i64>;

    /// The room's kind and every member's positions.
    async fn positions(&self, room: i64) -> StoreResult<RoomPositions>;

    /// When each other member got and read message `message` of `room`, for a member.
    async fn message_receipts(
        &self,
        room: i64,
        user: i64,
        message: i64,
    ) -> StoreResult<Vec<MessageReceipt>>;
}
