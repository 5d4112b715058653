//! This node's sockets, by room, and the delivery of room events to them.
//!
//! Delivery never waits on a socket: each socket has a bounded queue and one that is full is
//! told to close, so a slow reader cannot hold up its room.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::domain::events::{EventKind, RoomEvent};
use crate::transport::Transport;

/// Why the server closes a socket, sent as its close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

pub const CLOSE_SLOW_READER: CloseReason = CloseReason {
    code: 1008,
    reason: "outgoing queue overflow: reader too slow, catch up over REST",
};
pub const CLOSE_SHUTDOWN: CloseReason = CloseReason {
    code: 1001,
    reason: "server shutting down",
};
pub const CLOSE_LEFT_ROOM: CloseReason = CloseReason {
    code: 1008,
    reason: "you are no longer a member of this chatroom",
};
/// `chatnode admin node drain`: the client should reconnect, to another node.
pub const CLOSE_RESTART: CloseReason = CloseReason {
    code: 1012,
    reason: "service restart",
};
/// Codes of the private range (4000-4999) for operator actions, so a client can tell them
/// apart without parsing the reason: 4401 sign in again, 4403 stop, 4404 the room is gone.
pub const CLOSE_SIGNED_OUT: CloseReason = CloseReason {
    code: 4401,
    reason: "your sessions were revoked: sign in again",
};
pub const CLOSE_DISABLED: CloseReason = CloseReason {
    code: 4403,
    reason: "your account was disabled",
};
pub const CLOSE_ROOM_DELETED: CloseReason = CloseReason {
    code: 4404,
    reason: "this chatroom was deleted",
};

/// The close an operator's event asks of the sockets it concerns, if it is one.
fn closing_reason(kind: EventKind) -> Option<CloseReason> {
    match kind {
        EventKind::MemberDisabled => Some(CLOSE_DISABLED),
        EventKind::MemberSignedOut => Some(CLOSE_SIGNED_OUT),
        EventKind::RoomDeleted => Some(CLOSE_ROOM_DELETED),
        _ => None,
    }
}

/// Lets the hub tell one socket task to close, and why.
#[derive(Clone)]
pub struct Kick {
    token: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
}

impl Kick {
    /// A kick that also fires, with [`CLOSE_SHUTDOWN`], when `shutdown` is cancelled: the
    /// socket task waits on one token instead of two each time it wakes.
    pub fn child_of(shutdown: &CancellationToken) -> Self {
        Self {
            token: shutdown.child_token(),
            reason: Arc::default(),
        }
    }

    pub fn fire(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    pub async fn fired(self) -> CloseReason {
        self.token.cancelled().await;
        // No reason: the token was cancelled through its parent.
        self.reason.get().copied().unwrap_or(CLOSE_SHUTDOWN)
    }
}

/// What the hub puts in a socket's queue.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A serialised frame; `id` is the message id (none for notices and receipts) and `seq`
    /// its position in the room's log (0 for signals, which have none), for de-duplication;
    /// `sender` is its author, whose delivered position it does not move.
    Frame {
        id: Option<i64>,
        seq: i64,
        sender: Option<i64>,
        frame: Utf8Bytes,
    },
    /// Events may have been missed (the transport reconnected): re-read the room's history
    /// after the last message sent.
    Resync,
}

/// Queue slots kept once a socket's backlog has drained.
const RETAINED: usize = 64;

/// A socket's bounded outgoing queue. Unlike tokio's channel, which allocates a block of 32
/// slots up front, it costs an idle socket no more than its header; and the socket task takes
/// a whole batch under one lock, which is never held across a write.
struct QueueShared {
    items: Mutex<VecDeque<Outgoing>>,
    capacity: usize,
    waker: AtomicWaker,
    /// The hub let go of the socket: what is queued is the last of it.
    closed: AtomicBool,
}

/// The hub's end of a socket's queue.
pub struct QueueSender(Arc<QueueShared>);

/// The socket task's end of its queue.
pub struct QueueReceiver(Arc<QueueShared>);

/// A queue holding at most `capacity` items (at least one).
pub fn queue(capacity: usize) -> (QueueSender, QueueReceiver) {
    let shared = Arc::new(QueueShared {
        items: Mutex::new(VecDeque::new()),
        capacity: capacity.max(1),
        waker: AtomicWaker::new(),
        closed: AtomicBool::new(false),
    });
    (QueueSender(shared.clone()), QueueReceiver(shared))
}

impl QueueSender {
    /// Queues without waiting; `false` when the queue is full.
    fn offer(&self, outgoing: &Outgoing) -> bool {
        {
            let mut items = self.0.items.lock().expect("queue poisoned");
            if items.len() >= self.0.capacity {
                return false;
            }
            items.push_back(outgoing.clone());
        }
        self.0.waker.wake();
        true
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

impl QueueReceiver {
    /// Waits for queued items and moves up to `max` of them into `batch`; `false` once the
    /// sender is gone and everything has been taken.
    pub async fn recv_many(&mut self, batch: &mut Vec<Outgoing>, max: usize) -> bool {
        poll_fn(|cx| {
            // Registered before looking, so an item queued meanwhile wakes this task.
            self.0.waker.register(cx.waker());
            let mut items = self.0.items.lock().expect("queue poisoned");
            if items.is_empty() {
                return if self.0.closed.load(Ordering::Acquire) {
                    Poll::Ready(false)
                } else {
                    Poll::Pending
                };
            }
            let take = items.len().min(max);
            batch.extend(items.drain(..take));
            // A reader that fell far behind once should not keep that much room for good.
            if items.is_empty() && items.capacity() > RETAINED {
                *items = VecDeque::new();
            }
            Poll::Ready(true)
        })
        .await
    }
}

/// Whose socket it is, as delivery needs it.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub user_id: i64,
    /// The user hides their own last_seen, so they see no one else's either.
    pub hides_last_seen: bool,
}

impl From<&crate::domain::User> for Owner {
    fn from(user: &crate::domain::User) -> Self {
        Self {
            user_id: user.id,
            hides_last_seen: !user.show_last_seen,
        }
    }
}

struct LocalSocket {
    user_id: i64,
    /// The user hides their own last_seen, so they see no one else's either.
    hides_last_seen: bool,
    queue: QueueSender,
    kick: Kick,
}

pub struct Hub {
    rooms: RwLock<HashMap<i64, HashMap<u64, LocalSocket>>>,
    transport: Arc<dyn Transport>,
    next_id: AtomicU64,
    // Serialises subscribe/unsubscribe with the map change they follow.
    membership: Mutex<()>,
    /// Set once by a drain (under `membership`): a socket registered after it closes at once.
    draining: AtomicBool,
}

/// Keeps a socket registered; dropping it unregisters (even if the socket task panics).
pub struct Registration {
    hub: Arc<Hub>,
    room: i64,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.room, self.id);
    }
}

impl Hub {
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            rooms: RwLock::new(HashMap::new()),
            transport,
            next_id: AtomicU64::new(1),
            membership: Mutex::new(()),
            draining: AtomicBool::new(false),
        }
    }

    /// Adds a socket to its room and returns once the room's events reach this node (or the
    /// transport has said it will deliver them when it recovers).
    pub async fn register(
        self: &Arc<Self>,
        room: i64,
        owner: Owner,
        queue: QueueSender,
        kick: Kick,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let _serial = self.membership.lock().expect("hub poisoned");
            if self.draining.load(Ordering::Acquire) {
                // Its handshake passed before the drain began.
                kick.fire(CLOSE_RESTART);
            }
            let mut rooms = self.rooms.write().expect("hub poisoned");
            rooms.entry(room).or_default().insert(
                id,
                LocalSocket {
                    user_id: owner.user_id,
                    hides_last_seen: owner.hides_last_seen,
                    queue,
                    kick,
                },
            );
        }
        // Created before waiting, so a cancelled registration still unregisters.
        let registration = Registration {
            hub: self.clone(),
            room,
            id,
        };
        if let Err(error) = self.transport.subscribe(room).await {
            tracing::warn!(room, %error, "room subscription pending");
        }
        registration
    }

    fn unregister(&self, room: i64, id: u64) {
        let _serial = self.membership.lock().expect("hub poisoned");
        let emptied = {
            let mut rooms = self.rooms.write().expect("hub poisoned");
            match rooms.get_mut(&room) {
                Some(sockets) => {
                    sockets.remove(&id);
                    let empty = sockets.is_empty();
                    if empty {
                        rooms.remove(&room);
                    }
                    empty
                }
                None => false,
            }
        };
        if emptied {
            self.transport.unsubscribe(room);
        }
    }

    /// Closes every local socket `user_id` has open in `room`.
    pub fn evict(&self, room: i64, user_id: i64) {
        self.close_in(room, Some(user_id), CLOSE_LEFT_ROOM);
    }

    /// Closes the local sockets of `room` (only `user`'s, if given) with `reason`.
    fn close_in(&self, room: i64, user: Option<i64>, reason: CloseReason) {
        let rooms = self.rooms.read().expect("hub poisoned");
        if let Some(sockets) = rooms.get(&room) {
            sockets
                .values()
                .filter(|s| user.is_none_or(|user| s.user_id == user))
                .for_each(|s| s.kick.fire(reason));
        }
    }

    /// Starts a drain: every local socket closes with 1012 "service restart", and so does
    /// any registered from now on. Returns how many were open.
    pub fn drain(&self) -> usize {
        let _serial = self.membership.lock().expect("hub poisoned");
        self.draining.store(true, Ordering::Release);
        let rooms = self.rooms.read().expect("hub poisoned");
        let mut open = 0;
        for socket in rooms.values().flat_map(HashMap::values) {
            socket.kick.fire(CLOSE_RESTART);
            open += 1;
        }
        open
    }

    /// Whether a drain began: new sockets are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Hands one event to the room's local sockets, serialised once for all of them.
    pub fn deliver(&self, event: &RoomEvent) {
        if let Some(reason) = closing_reason(event.kind) {
            // An operator's change (`chatnode admin`): it closes sockets and is no frame.
            return self.close_in(event.chat_id, event.user_id, reason);
        }
        if event.kind == EventKind::MemberLeft {
            if let Some(user) = event.user_id {
                self.evict(event.chat_id, user);
            }
        }
        let rooms = self.rooms.read().expect("hub poisoned");
        let Some(sockets) = rooms.get(&event.chat_id) else {
            return;
        };
        if let Some(request) = &event.request_id {
            // The last step of a send as the logs can follow it across nodes.
            tracing::debug!(request_id = %request, room = event.chat_id, id = ?event.id,
                sockets = sockets.len(), "handing an event to the room's sockets");
        }
        if event.is_signal() {
            return offer_signal(sockets, event);
        }
        let seq = event.seq.unwrap_or(0);
        // Only a new message moves a socket's message cursor (an edit names an older one).
        let id = event.id.filter(|_| event.kind == EventKind::Message);
        let outgoing = Outgoing::Frame {
            id,
            seq,
            sender: event.sender_id,
            frame: Utf8Bytes::from(event.frame_json()),
        };
        // The sender's own sockets get the message with its state; made once if needed.
        let mut own = None;
        for socket in sockets.values() {
            if event.kind == EventKind::Message && event.sender_id == Some(socket.user_id) {
                let own = own.get_or_insert_with(|| Outgoing::Frame {
                    id,
                    seq,
                    sender: event.sender_id,
                    frame: Utf8Bytes::from(event.frame_for_sender(event.fresh_state())),
                });
                offer(socket, own);
            } else {
                offer(socket, &outgoing);
            }
        }
    }

    /// Tells every local socket to re-read what it may have missed.
    pub fn resync_all(&self) {
        let rooms = self.rooms.read().expect("hub poisoned");
        for socket in rooms.values().flat_map(HashMap::values) {
            offer(socket, &Outgoing::Resync);
        }
    }

    /// Sockets open here in `room`.
    pub fn room_socket_count(&self, room: i64) -> usize {
        let rooms = self.rooms.read().expect("hub poisoned");
        rooms.get(&room).map_or(0, HashMap::len)
    }

    pub fn socket_count(&self) -> usize {
        let rooms = self.rooms.read().expect("hub poisoned");
        rooms.values().map(HashMap::len).sum()
    }
}

/// A signal goes to the room's sockets but the signaller's own, and only where there is
/// room: it is not worth closing a slow reader for. A presence frame goes without its
/// `last_seen` to sockets of users who hide their own.
fn offer_signal(sockets: &HashMap<u64, LocalSocket>, event: &RoomEvent) {
    let signal = |frame: String| Outgoing::Frame {
        id: None,
        seq: 0,
        sender: event.user_id,
        frame: Utf8Bytes::from(frame),
    };
    let outgoing = signal(event.frame_json());
    let mut redacted = None;
    for socket in sockets.values() {
        if Some(socket.user_id) == event.user_id || socket.kick.token.is_cancelled() {
            continue;
        }
        if socket.hides_last_seen && event.last_seen.is_some() {
            let redacted = redacted.get_or_insert_with(|| signal(event.presence_frame(true)));
            socket.queue.offer(redacted);
        } else {
            socket.queue.offer(&outgoing);
        }
    }
}

/// Queues without waiting; a socket whose queue is full is told to close.
fn offer(socket: &LocalSocket, outgoing: &Outgoing) {
    if socket.kick.token.is_cancelled() {
        return;
    }
    if !socket.queue.offer(outgoing) {
        socket.kick.fire(CLOSE_SLOW_READER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::memory::MemoryTransport;

    fn owner(user_id: i64) -> Owner {
        Owner {
            user_id,
            hides_last_seen: false,
        }
    }

    fn frame(id: i64) -> Outgoing {
        Outgoing::Frame {
            id: Some(id),
            seq: 0,
            sender: None,
            frame: Utf8Bytes::from(id.to_string()),
        }
    }

    fn ids(batch: &[Outgoing]) -> Vec<i64> {
        batch
            .iter()
            .filter_map(|o| match o {
                Outgoing::Frame { id, .. } => *id,
                Outgoing::Resync => None,
            })
            .collect()
    }

    /// The kick's reason, failing rather than hanging if it never fires.
    async fn fired(kick: Kick) -> CloseReason {
        let wait = std::time::Duration::from_secs(5);
        tokio::time::timeout(wait, kick.fired())
            .await
            .expect("the socket is kicked")
    }

    fn hub() -> Arc<Hub> {
        Arc::new(Hub::new(Arc::new(MemoryTransport::default())))
    }

    #[tokio::test]
    async fn a_queue_hands_items_over_in_order_in_batches_of_at_most_max() {
        let (tx, mut rx) = queue(10);
        for id in 1..=5 {
            assert!(tx.offer(&frame(id)));
        }
        let mut batch = Vec::new();
        assert!(rx.recv_many(&mut batch, 3).await);
        assert_eq!(ids(&batch), [1, 2, 3]);
        batch.clear();
        assert!(rx.recv_many(&mut batch, 3).await);
        assert_eq!(ids(&batch), [4, 5]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_what_it_holds_outlives_the_sender() {
        let (tx, mut rx) = queue(2);
        assert!(tx.offer(&frame(1)) && tx.offer(&frame(2)));
        assert!(!tx.offer(&frame(3)), "a full queue takes nothing more");
        drop(tx);
        let mut batch = Vec::new();
        assert!(rx.recv_many(&mut batch, 10).await);
        assert_eq!(ids(&batch), [1, 2]);
        assert!(!rx.recv_many(&mut batch, 10).await, "then it is over");
    }

    #[tokio::test]
    async fn a_socket_whose_queue_is_full_is_kicked_and_the_others_still_get_every_event() {
        let hub = hub();
        let shutdown = CancellationToken::new();
        let (slow_tx, _slow_rx) = queue(1);
        let slow_kick = Kick::child_of(&shutdown);
        let _slow = hub.register(7, owner(1), slow_tx, slow_kick.clone()).await;
        let (fast_tx, mut fast_rx) = queue(10);
        let fast_kick = Kick::child_of(&shutdown);
        let _fast = hub.register(7, owner(2), fast_tx, fast_kick.clone()).await;
        for _ in 0..3 {
            hub.deliver(&RoomEvent::joined(7, 3, "carol", "2026-12-03T00:00:00Z"));
        }
        assert_eq!(fired(slow_kick).await, CLOSE_SLOW_READER);
        assert!(!fast_kick.token.is_cancelled());
        let mut batch = Vec::new();
        assert!(fast_rx.recv_many(&mut batch, 10).await);
        assert_eq!(batch.len(), 3);
    }

    #[tokio::test]
    async fn a_dropped_registration_leaves_its_room_and_a_leave_evicts_the_leaver() {
        let hub = hub();
        let shutdown = CancellationToken::new();
        let (tx, _rx) = queue(4);
        let kick = Kick::child_of(&shutdown);
        let registration = hub.register(9, owner(5), tx, kick.clone()).await;
        assert_eq!((hub.room_socket_count(9), hub.socket_count()), (1, 1));
        hub.deliver(&RoomEvent::left(9, 5, "eve", "2026-12-03T00:00:00Z"));
        assert_eq!(fired(kick).await, CLOSE_LEFT_ROOM);
        drop(registration);
        assert_eq!((hub.room_socket_count(9), hub.socket_count()), (0, 0));
    }
}
