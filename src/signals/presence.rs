//! Presence: a user is online while a live node holds a socket of theirs. Each node counts
//! its own sockets per user and tells the store (which node holds whom, and a heartbeat per
//! node) in batches; the store decides who came online or went offline for everyone, and
//! this node announces those changes to the user's rooms as ephemeral signals.
//!
//! A user whose last socket here closes stays held for [`GRACE`], so a socket that drops
//! and reconnects (a flap) announces nothing. A node that dies stops renewing its heartbeat;
//! whichever node sweeps first after [`NODE_TTL`] takes its users offline.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::events::RoomEvent;
use crate::state::SharedState;
use crate::store::now_timestamp;
use crate::store::presence::PresenceChange;

/// How long a user whose last socket here closed is still held (flap grace).
pub const GRACE: Duration = Duration::from_secs(3);
/// How often a node renews its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// A node whose heartbeat is older than this is dead. With [`SWEEP`], a killed node's users
/// go offline 7-12 s after its last heartbeat (the bound: 15 s).
pub const NODE_TTL: Duration = Duration::from_secs(10);
/// How often each node looks for dead nodes.
pub const SWEEP: Duration = Duration::from_secs(2);
/// How often arrivals and due leaves are handed to the store at most (they are batched).
const TICK: Duration = Duration::from_millis(200);
/// Longest the final sweep of a stopping node may take.
const FINAL_SWEEP: Duration = Duration::from_secs(2);

/// This node's sockets per user and what the store knows of them. Every map is bounded by
/// the open sockets (`--max-connections`) plus the users who left within [`GRACE`].
#[derive(Default)]
pub struct Presence {
    local: Mutex<Local>,
    wake: Notify,
}

#[derive(Default)]
struct Local {
    /// Open sockets here, per user.
    sockets: HashMap<i64, u32>,
    /// Users the store has a session of on this node.
    stored: HashSet<i64>,
    /// Users with sockets here that the store does not know of yet.
    arriving: HashSet<i64>,
    /// Stored users without sockets here: their session ends at the instant, unless one opens.
    leaving: HashMap<i64, Instant>,
}

/// Held by a socket task while its socket is open; dropping it counts the socket closed.
pub struct Present {
    presence: Arc<Presence>,
    user: i64,
}

impl Drop for Present {
    fn drop(&mut self) {
        self.presence.closed(self.user, Instant::now());
    }
}

impl Presence {
    pub fn opened(self: &Arc<Self>, user: i64) -> Present {
        let mut local = self.local.lock().expect("presence poisoned");
        *local.sockets.entry(user).or_default() += 1;
        local.leaving.remove(&user);
        if !local.stored.contains(&user) && local.arriving.insert(user) {
            self.wake.notify_one();
        }
        Present {
            presence: self.clone(),
            user,
        }
    }

    fn closed(&self, user: i64, now: Instant) {
        let mut local = self.local.lock().expect("presence poisoned");
        let Some(count) = local.sockets.get_mut(&user) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        local.sockets.remove(&user);
        local.arriving.remove(&user);
        if local.stored.contains(&user) {
            local.leaving.insert(user, now + GRACE);
        }
    }

    /// Users the store should now learn arrived, and those whose grace is over.
    fn due(&self, now: Instant) -> (Vec<i64>, Vec<i64>) {
        let local = self.local.lock().expect("presence poisoned");
        let left = local.leaving.iter().filter(|(_, at)| **at <= now);
        (
            local.arriving.iter().copied().collect(),
            left.map(|(user, _)| *user).collect(),
        )
    }

    /// The store took `arrived` and `left`; sockets may have opened or closed meanwhile.
    fn settled(&self, arrived: &[i64], left: &[i64], now: Instant) {
        let mut local = self.local.lock().expect("presence poisoned");
        for &user in arrived {
            local.arriving.remove(&user);
            local.stored.insert(user);
            if !local.sockets.contains_key(&user) {
                local.leaving.insert(user, now + GRACE);
            }
        }
        for &user in left {
            local.stored.remove(&user);
            local.leaving.remove(&user);
            if local.sockets.contains_key(&user) {
                local.arriving.insert(user);
            }
        }
    }

    /// The store lost this node's sessions: nothing is stored any more, everyone with a
    /// socket here is to arrive.
    fn lapsed(&self) {
        let mut local = self.local.lock().expect("presence poisoned");
        local.stored.clear();
        local.leaving.clear();
        let users: Vec<i64> = local.sockets.keys().copied().collect();
        local.arriving.extend(users);
    }

    /// Users with sockets here.
    pub fn local_users(&self) -> usize {
        self.local.lock().expect("presence poisoned").sockets.len()
    }
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

/// Keeps the store's view of this node current until `token` is cancelled: batches of
/// arrivals and leaves, the heartbeat, sweeps of dead nodes; then ends this node's sessions.
pub async fn run(state: SharedState, token: CancellationToken) {
    let node = state.config.node_id.clone();
    // Sessions a previous run of this node left (it was killed): ended first.
    sweep(&state, Some(node.clone())).await;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeps = tokio::time::interval(SWEEP);
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_apply: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = sweeps.tick() => sweep(&state, None).await,
            _ = ticks.tick() => {
                let now = Instant::now();
                let heartbeat_due = last_apply.is_none_or(|at| now >= at + HEARTBEAT);
                let (arrived, left) = state.presence.due(now);
                let due = heartbeat_due || !arrived.is_empty() || !left.is_empty();
                if due && apply(&state, &node, arrived, left).await {
                    last_apply = Some(now);
                }
            }
        }
    }
    // Users held only here go offline now rather than when the heartbeat expires.
    if tokio::time::timeout(FINAL_SWEEP, sweep(&state, Some(node)))
        .await
        .is_err()
    {
        tracing::warn!("the final presence sweep did not finish in time");
    }
}

/// Hands one batch to the store and announces what changed; `false` if the store failed
/// (the batch is tried again on the next tick).
async fn apply(state: &SharedState, node: &str, arrived: Vec<i64>, left: Vec<i64>) -> bool {
    let result = state
        .store
        .presence_apply(
            node,
            now_millis(),
            millis(NODE_TTL),
            arrived.clone(),
            left.clone(),
        )
        .await;
    match result {
        Ok(changes) => {
            if changes.lapsed {
                // Swept while the store was out of reach (or a first batch): every user
                // with a socket here arrives again.
                state.presence.lapsed();
            }
            state.presence.settled(&arrived, &left, Instant::now());
            let mut all = changes.online;
            all.extend(changes.offline);
            announce(state, &all).await;
            true
        }
        Err(error) => {
            tracing::warn!(error = %error.chain(), "presence not stored; retrying");
            false
        }
    }
}

async fn sweep(state: &SharedState, node: Option<String>) {
    match state.store.presence_sweep(now_millis(), node).await {
        Ok(offline) => announce(state, &offline).await,
        Err(error) => tracing::warn!(error = %error.chain(), "presence sweep failed"),
    }
}

/// Tells the sockets of every room the changed users are in; best effort, like every
/// signal. A room with more members than `--presence-room-limit` hears one `online_count`
/// for the whole batch instead of a `presence` per change, so a burst of arrivals costs each
/// of its sockets one frame per batch, not one per arrival.
async fn announce(state: &SharedState, changes: &[PresenceChange]) {
    if changes.is_empty() {
        return;
    }
    let users = changes.iter().map(|change| change.user).collect();
    let rooms = match state.store.presence_rooms(users).await {
        Ok(rooms) => rooms,
        Err(error) => {
            tracing::warn!(error = %error.chain(), "presence not announced");
            return;
        }
    };
    let limit = state.config.presence_room_limit;
    let mut small: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut big = BTreeSet::new();
    for room in rooms {
        if room.members > limit {
            big.insert(room.room);
        } else {
            small.entry(room.user).or_default().push(room.room);
        }
    }
    let at = now_timestamp();
    for change in changes {
        let online = change.last_seen.is_none();
        let last_seen = change.last_seen.clone().filter(|_| change.show_last_seen);
        for &room in small.get(&change.user).into_iter().flatten() {
            let event = RoomEvent::presence(room, change.user, online, last_seen.clone(), &at);
            signal(state, event).await;
        }
    }
    if !big.is_empty() {
        announce_counts(state, big.into_iter().collect(), &at).await;
    }
}

/// One `online_count` to each of `rooms`, as the store counts them after the batch.
async fn announce_counts(state: &SharedState, rooms: Vec<i64>, at: &str) {
    let counts = match state.store.online_counts(rooms.clone(), now_millis()).await {
        Ok(counts) => counts.into_iter().collect::<HashMap<_, _>>(),
        Err(error) => {
            tracing::warn!(error = %error.chain(), "online counts not announced");
            return;
        }
    };
    for room in rooms {
        let count = counts.get(&room).copied().unwrap_or(0);
        signal(state, RoomEvent::online_count(room, count, at)).await;
    }
}

async fn signal(state: &SharedState, event: RoomEvent) {
    let (room, kind) = (event.chat_id, event.kind);
    if let Err(error) = state.transport.signal(event).await {
        tracing::debug!(room, ?kind, error = %error.chain(), "presence signal dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(presence: &Presence, now: Instant) -> (Vec<i64>, Vec<i64>) {
        let (mut arrived, mut left) = presence.due(now);
        arrived.sort_unstable();
        left.sort_unstable();
        (arrived, left)
    }

    #[test]
    fn a_user_arrives_once_and_leaves_after_the_grace_of_their_last_socket() {
        let presence = Arc::new(Presence::default());
        let t0 = Instant::now();
        let first = presence.opened(7);
        let second = presence.opened(7);
        assert_eq!(due(&presence, t0), (vec![7], vec![]));
        presence.settled(&[7], &[], t0);
        assert_eq!(due(&presence, t0), (vec![], vec![]));
        drop(first);
        assert_eq!(due(&presence, t0 + GRACE * 2), (vec![], vec![]));
        drop(second);
        let closed = Instant::now();
        assert_eq!(due(&presence, closed), (vec![], vec![]));
        assert_eq!(due(&presence, closed + GRACE), (vec![], vec![7]));
        presence.settled(&[], &[7], closed + GRACE);
        assert_eq!(due(&presence, closed + GRACE * 2), (vec![], vec![]));
        assert_eq!(presence.local_users(), 0);
    }

    #[test]
    fn a_flap_within_the_grace_tells_the_store_nothing() {
        let presence = Arc::new(Presence::default());
        let t0 = Instant::now();
        drop(presence.opened(7));
        // Closed before the store heard of it: nothing to arrive or leave.
        assert_eq!(due(&presence, t0 + GRACE), (vec![], vec![]));
        let socket = presence.opened(7);
        presence.settled(&[7], &[], t0);
        drop(socket);
        let again = presence.opened(7);
        assert_eq!(due(&presence, Instant::now() + GRACE * 2), (vec![], vec![]));
        drop(again);
    }

    #[test]
    fn a_lapsed_node_has_every_user_with_a_socket_arrive_again() {
        let presence = Arc::new(Presence::default());
        let now = Instant::now();
        let (_one, _two) = (presence.opened(1), presence.opened(2));
        presence.settled(&[1, 2], &[], now);
        drop(presence.opened(3));
        presence.settled(&[3], &[], now);
        presence.lapsed();
        assert_eq!(due(&presence, now + GRACE), (vec![1, 2], vec![]));
    }

    #[test]
    fn sockets_that_change_while_the_store_works_are_not_forgotten() {
        let presence = Arc::new(Presence::default());
        let now = Instant::now();
        // Arrived and closed while the store was storing the arrival: it must leave later.
        drop(presence.opened(1));
        presence.settled(&[1], &[], now);
        assert_eq!(due(&presence, now + GRACE), (vec![], vec![1]));
        // Reopened while the store was ending the session: it must arrive again.
        let socket = presence.opened(1);
        presence.settled(&[], &[1], now + GRACE);
        assert_eq!(due(&presence, now + GRACE), (vec![1], vec![]));
        drop(socket);
    }
}
