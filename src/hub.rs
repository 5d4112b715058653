//! This node's sockets, by room, and the delivery of room events to them.
//!
//! Delivery never waits on a socket: each socket has a bounded queue and one that is full is
//! told to close, so a slow reader cannot hold up its room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::events::{EventKind, RoomEvent};
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
pub const CLOSE_LEFT_ROOM: CloseReason = CloseReason {
    code: 1008,
    reason: "you are no longer a member of this chatroom",
};

/// Lets the hub tell one socket task to close, and why.
#[derive(Clone, Default)]
pub struct Kick {
    token: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
}

impl Kick {
    pub fn fire(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    pub async fn fired(&self) -> CloseReason {
        self.token.cancelled().await;
        self.reason.get().copied().unwrap_or(CLOSE_LEFT_ROOM)
    }
}

/// What the hub puts in a socket's queue.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A serialised frame; `id` is the message id (none for notices), for de-duplication.
    Frame { id: Option<i64>, frame: Utf8Bytes },
    /// Events may have been missed (the transport reconnected): re-read the room's history
    /// after the last message sent.
    Resync,
}

struct LocalSocket {
    user_id: i64,
    queue: mpsc::Sender<Outgoing>,
    kick: Kick,
}

pub struct Hub {
    rooms: RwLock<HashMap<i64, HashMap<u64, LocalSocket>>>,
    transport: Arc<dyn Transport>,
    next_id: AtomicU64,
    // Serialises subscribe/unsubscribe with the map change they follow.
    membership: Mutex<()>,
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
        }
    }

    /// Adds a socket to its room and returns once the room's events reach this node (or the
    /// transport has said it will deliver them when it recovers).
    pub async fn register(
        self: &Arc<Self>,
        room: i64,
        user_id: i64,
        queue: mpsc::Sender<Outgoing>,
        kick: Kick,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let _serial = self.membership.lock().expect("hub poisoned");
            let mut rooms = self.rooms.write().expect("hub poisoned");
            rooms.entry(room).or_default().insert(
                id,
                LocalSocket {
                    user_id,
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
        let rooms = self.rooms.read().expect("hub poisoned");
        if let Some(sockets) = rooms.get(&room) {
            sockets
                .values()
                .filter(|s| s.user_id == user_id)
                .for_each(|s| s.kick.fire(CLOSE_LEFT_ROOM));
        }
    }

    /// Hands one event to the room's local sockets, serialised once for all of them.
    pub fn deliver(&self, event: &RoomEvent) {
        if event.kind == EventKind::MemberLeft {
            if let Some(user) = event.user_id {
                self.evict(event.chat_id, user);
            }
        }
        let rooms = self.rooms.read().expect("hub poisoned");
        let Some(sockets) = rooms.get(&event.chat_id) else {
            return;
        };
        let outgoing = Outgoing::Frame {
            id: event.id,
            frame: Utf8Bytes::from(event.frame_json()),
        };
        for socket in sockets.values() {
            offer(socket, &outgoing);
        }
    }

    /// Tells every local socket to re-read what it may have missed.
    pub fn resync_all(&self) {
        let rooms = self.rooms.read().expect("hub poisoned");
        for socket in rooms.values().flat_map(HashMap::values) {
            offer(socket, &Outgoing::Resync);
        }
    }

    pub fn socket_count(&self) -> usize {
        let rooms = self.rooms.read().expect("hub poisoned");
        rooms.values().map(HashMap::len).sum()
    }
}

/// Queues without waiting; a socket whose queue is full is told to close.
fn offer(socket: &LocalSocket, outgoing: &Outgoing) {
    if socket.kick.token.is_cancelled() {
        return;
    }
    if let Err(mpsc::error::TrySendError::Full(_)) = socket.queue.try_send(outgoing.clone()) {
        socket.kick.fire(CLOSE_SLOW_READER);
    }
}
