//! The store's part of presence: which node holds sockets of which user, node heartbeats,
//! `last_seen` and its privacy setting. Every backend implements it; [`super::Store`]
//! requires it. Times are Unix milliseconds from the caller's clock (nodes' clocks are
//! assumed to agree within a second, as NTP gives).

use async_trait::async_trait;

use super::{StoreResult, User};

/// A user whose online state changed for everyone, as the announcement needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub user: i64,
    /// When they went offline (stored as their `last_seen`); `None` for coming online.
    pub last_seen: Option<String>,
    /// The user's privacy setting: others may see `last_seen`.
    pub show_last_seen: bool,
}

/// A room of a user whose presence changed, with its size: a big room hears a count instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceRoom {
    pub user: i64,
    pub room: i64,
    pub members: i64,
}

/// What one batch of socket news changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PresenceChanges {
    pub online: Vec<PresenceChange>,
    pub offline: Vec<PresenceChange>,
    /// The node's heartbeat had expired (or it was swept) before this batch: the sessions it
    /// thought it had are gone, and its users must arrive again.
    pub lapsed: bool,
}

/// A user's presence as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceState {
    pub online: bool,
    pub last_seen: Option<String>,
    pub show_last_seen: bool,
}

#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// In one transaction: renews `node`'s heartbeat until `now + ttl_ms`, records that it
    /// now holds sockets of each user in `arrived` and none of each in `left`. A user no
    /// live node held before is in `online`; one no live node holds after is in `offline`,
    /// with `last_seen` stored as now.
    async fn presence_apply(
        &self,
        node: &str,
        now: i64,
        ttl_ms: i64,
        arrived: Vec<i64>,
        left: Vec<i64>,
    ) -> StoreResult<PresenceChanges>;

    /// Removes every node whose heartbeat expired before `now` (or `node` itself, whatever
    /// its heartbeat, when given: a node starting again or stopping) with its sessions; the
    /// users no live node holds any more are returned, `last_seen` stored as the node's last
    /// heartbeat (`now` for `node`). Each dead node is swept by one caller only.
    async fn presence_sweep(
        &self,
        now: i64,
        node: Option<String>,
    ) -> StoreResult<Vec<PresenceChange>>;

    /// `subject`'s presence, if `viewer` is them or shares a room with them.
    async fn presence_of(
        &self,
        viewer: i64,
        subject: i64,
        now: i64,
    ) -> StoreResult<Option<PresenceState>>;

    /// How many members of each room are online, for rooms in `rooms` (absent: none).
    async fn online_counts(&self, rooms: Vec<i64>, now: i64) -> StoreResult<Vec<(i64, i64)>>;

    /// Every room of each of `users`, with its member count: where their presence is
    /// announced, and how.
    async fn presence_rooms(&self, users: Vec<i64>) -> StoreResult<Vec<PresenceRoom>>;

    /// Sets whether others may see `user`'s last_seen; returns the user.
    async fn set_show_last_seen(&self, user: i64, show: bool) -> StoreResult<User>;
}
