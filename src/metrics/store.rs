//! Store operation latency, measured once at the store seam for every backend: a [`Store`]
//! that times each call of the one it wraps under a small fixed set of operation kinds.
//! Only wrapped when metrics are on, so a node without `--metrics-listen` pays nothing.
//! A method added to a store trait gets one line below, naming its kind.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;

use crate::domain::conversations::{
    ListPage, MemberPage, MessageReceipt, ReceiptMark, RoomPositions, RoomSummary, UserLookup,
};
use crate::domain::Reactions;
use crate::store::admin::{Account, AdminPage, Counts, DeletedRoom, RoomRecord};
use crate::store::edits::ChangeRule;
use crate::store::events::LogRead;
use crate::store::presence::{PresenceChange, PresenceChanges, PresenceRoom, PresenceState};
use crate::store::{
    AdminStore, Attachment, AttachmentOwner, ConversationStore, EditStore, EventLogStore, Member,
    Message, NewUser, OutboxDepth, OutboxEntry, Page, PresenceStore, ReactionStore, RelayLease,
    Room, Store, StoreError, StoreResult, TokenStanding, User,
};

/// The `op` label: what a store call does, not which method (several share a kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Register,
    AuthLookup,
    TokenRevoke,
    UserLookup,
    RoomWrite,
    RoomRead,
    ChatList,
    StoreMessage,
    ReadHistory,
    Receipts,
    OutboxFetch,
    OutboxDelete,
    OutboxDepth,
    RelayLease,
    Ping,
    Setup,
    Presence,
    Admin,
    EventLog,
}

impl Op {
    pub(super) const ALL: [Op; 19] = [
        Op::Register,
        Op::AuthLookup,
        Op::TokenRevoke,
        Op::UserLookup,
        Op::RoomWrite,
        Op::RoomRead,
        Op::ChatList,
        Op::StoreMessage,
        Op::ReadHistory,
        Op::Receipts,
        Op::OutboxFetch,
        Op::OutboxDelete,
        Op::OutboxDepth,
        Op::RelayLease,
        Op::Ping,
        Op::Setup,
        Op::Presence,
        Op::Admin,
        Op::EventLog,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Op::Register => "register",
            Op::AuthLookup => "auth_lookup",
            Op::TokenRevoke => "token_revoke",
            Op::UserLookup => "user_lookup",
            Op::RoomWrite => "room_write",
            Op::RoomRead => "room_read",
            Op::ChatList => "chat_list",
            Op::StoreMessage => "store_message",
            Op::ReadHistory => "read_history",
            Op::Receipts => "receipts",
            Op::OutboxFetch => "outbox_fetch",
            Op::OutboxDelete => "outbox_delete",
            Op::OutboxDepth => "outbox_depth",
            Op::RelayLease => "relay_lease",
            Op::Ping => "ping",
            Op::Setup => "setup",
            Op::Presence => "presence",
            Op::Admin => "admin",
            Op::EventLog => "event_log",
        }
    }
}

/// The histograms of every operation kind (made up front: no lookup per call) and the count
/// of writes shed because the write queue was full.
#[derive(Clone)]
pub(super) struct StoreProbe {
    pub(super) ops: Arc<[Histogram; Op::ALL.len()]>,
    pub(super) write_queue_full: Counter,
}

pub struct TimedStore {
    inner: Arc<dyn Store>,
    probe: StoreProbe,
}

impl TimedStore {
    pub(super) fn new(inner: Arc<dyn Store>, probe: StoreProbe) -> Self {
        Self { inner, probe }
    }

    async fn timed<T>(&self, op: Op, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let started = Instant::now();
        let result = work.await;
        self.probe.ops[op as usize].observe(started.elapsed().as_secs_f64());
        if matches!(result, Err(StoreError::Overloaded)) {
            self.probe.write_queue_full.inc();
        }
        result
    }
}

/// Implements `$seam` for [`TimedStore`]: each async method times the inner store's under
/// its kind; each plain one just asks the inner store.
macro_rules! timed {
    ($seam:ident {
        $(async fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $op:ident;)*
        $(fn $plain:ident() -> $plain_ret:ty;)*
    }) => {
        #[async_trait]
        impl $seam for TimedStore {
            $(async fn $name(&self, $($arg: $ty),*) -> StoreResult<$ret> {
                self.timed(Op::$op, self.inner.$name($($arg),*)).await
            })*
            $(fn $plain(&self) -> $plain_ret {
                self.inner.$plain()
            })*
        }
    };
}

timed!(Store {
    async fn create_user(user: NewUser) -> User => Register;
    async fn credentials(email: &str) -> Option<(User, String)> => AuthLookup;
    async fn user(id: i64) -> Option<User> => AuthLookup;
    async fn revoke_token(jti: &str, expires_at: i64) -> () => TokenRevoke;
    async fn is_token_revoked(jti: &str) -> bool => AuthLookup;
    async fn token_user(id: i64, jti: &str, issued_at: i64) -> Option<(User, TokenStanding)> => AuthLookup;
    async fn create_room(name: &str, admin: i64, members: &[i64], cap: usize) -> Room => RoomWrite;
    async fn rooms_of(user: i64) -> Vec<Room> => RoomRead;
    async fn room(room: i64) -> Option<Room> => RoomRead;
    async fn check_member(room: i64, user: i64) -> () => RoomRead;
    async fn join_room(room: i64, user: i64, cap: usize) -> Room => RoomWrite;
    async fn leave_room(room: i64, user: i64) -> Room => RoomWrite;
    async fn post_reply(room: i64, sender: i64, content: &str, attachment: Option<Attachment>, reply_to: Option<i64>) -> Message => StoreMessage;
    async fn messages(room: i64, user: i64, page: Page) -> Vec<Message> => ReadHistory;
    async fn attachment_owner(file_name: &str) -> Option<AttachmentOwner> => RoomRead;
    async fn outbox_batch(limit: u32) -> Vec<OutboxEntry> => OutboxFetch;
    async fn outbox_delete(ids: Vec<i64>) -> () => OutboxDelete;
    async fn outbox_depth() -> OutboxDepth => OutboxDepth;
    async fn try_relay_lease(key: u32) -> Option<Box<dyn RelayLease>> => RelayLease;
    async fn ping() -> () => Ping;
    async fn agree_jwt_secret(candidate: &str) -> String => Setup;
    fn outbox_signal() -> Arc<Notify>;
    fn queue_depth() -> usize;
});

timed!(ConversationStore {
    async fn find_user(lookup: UserLookup) -> Option<User> => UserLookup;
    async fn direct_room(caller: i64, peer: i64) -> (Room, bool) => RoomWrite;
    async fn set_block(blocker: i64, blocked: i64, on: bool) -> User => RoomWrite;
    async fn blocked_users(blocker: i64) -> Vec<User> => UserLookup;
    async fn chat_list(user: i64, page: ListPage) -> Vec<RoomSummary> => ChatList;
    async fn room_members(room: i64, user: i64, page: MemberPage) -> Vec<Member> => RoomRead;
    async fn newest_message_id(room: i64, user: i64) -> i64 => RoomRead;
    async fn apply_receipts(marks: Vec<ReceiptMark>) -> Vec<i64> => Receipts;
    async fn unread_count(room: i64, user: i64) -> i64 => RoomRead;
    async fn positions(room: i64) -> RoomPositions => RoomRead;
    async fn message_receipts(room: i64, user: i64, message: i64) -> Vec<MessageReceipt> => RoomRead;
});

timed!(PresenceStore {
    async fn presence_apply(node: &str, now: i64, ttl_ms: i64, arrived: Vec<i64>, left: Vec<i64>) -> PresenceChanges => Presence;
    async fn presence_sweep(now: i64, node: Option<String>) -> Vec<PresenceChange> => Presence;
    async fn presence_of(viewer: i64, subject: i64, now: i64) -> Option<PresenceState> => Presence;
    async fn online_counts(rooms: Vec<i64>, now: i64) -> Vec<(i64, i64)> => Presence;
    async fn presence_rooms(users: Vec<i64>) -> Vec<PresenceRoom> => RoomRead;
    async fn set_show_last_seen(user: i64, show: bool) -> User => Presence;
});

timed!(EditStore {
    async fn edit_message(room: i64, user: i64, id: i64, content: &str, rule: ChangeRule) -> Message => StoreMessage;
    async fn delete_message(room: i64, user: i64, id: i64, rule: ChangeRule) -> (Message, Option<Attachment>) => StoreMessage;
});

timed!(ReactionStore {
    async fn react(room: i64, user: i64, id: i64, emoji: Option<&str>) -> Reactions => StoreMessage;
    async fn reaction_counts(room: i64, viewer: i64, messages: Vec<i64>) -> Vec<Reactions> => RoomRead;
});

timed!(EventLogStore {
    async fn events_after(room: i64, user: i64, after_seq: i64, limit: u32) -> LogRead => EventLog;
    async fn prune_events(before: chrono::DateTime<chrono::Utc>) -> u64 => EventLog;
});

timed!(AdminStore {
    async fn accounts(page: AdminPage) -> Vec<Account> => Admin;
    async fn account(id: i64) -> Option<(Account, i64)> => Admin;
    async fn set_disabled(id: i64, disabled: bool) -> Account => Admin;
    async fn is_disabled(id: i64) -> bool => AuthLookup;
    async fn revoke_user_tokens(id: i64) -> Account => Admin;
    async fn room_records(page: AdminPage) -> Vec<RoomRecord> => Admin;
    async fn room_record(id: i64) -> Option<(RoomRecord, Vec<Member>)> => Admin;
    async fn delete_room(id: i64) -> DeletedRoom => Admin;
    async fn counts() -> Counts => Admin;
});
