//! The rooms a broker transport's node queue should be bound to. `subscribe` and `unsubscribe`
//! record what is wanted; the one live event stream applies it to the broker and reports back
//! what is bound, which is what `subscribe` waits for.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::{oneshot, Notify, OwnedMutexGuard};
use tokio::time::timeout;

use crate::transport::TransportError;

/// How long `subscribe` waits for its binding before reporting the broker as unavailable.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(crate) struct Subscriptions {
    rooms: Mutex<Rooms>,
    /// Wakes the consuming stream when `rooms` has changes to apply.
    changed: Notify,
    /// Held by the one live event stream.
    consuming: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct Rooms {
    /// Rooms with local sockets: what the queue should be bound to.
    wanted: HashSet<i64>,
    /// Rooms whose binding may differ from `wanted`, for the consuming stream to fix.
    dirty: HashSet<i64>,
    /// Rooms bound on the live queue (empty while there is none).
    bound: HashSet<i64>,
    /// `subscribe` calls waiting for their room to be bound.
    waiters: HashMap<i64, Vec<oneshot::Sender<()>>>,
}

impl Subscriptions {
    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms.lock().expect("rooms poisoned")
    }

    /// Wants `room` and waits until the live stream has bound it.
    pub(crate) async fn subscribe(&self, room: i64) -> Result<(), TransportError> {
        let bound = {
            let mut rooms = self.rooms();
            rooms.wanted.insert(room);
            if rooms.bound.contains(&room) {
                return Ok(());
            }
            rooms.dirty.insert(room);
            if self.consuming.try_lock().is_ok() {
                // No live stream: the binding waits for the next `events`.
                return Err(TransportError::NotConsuming { room });
            }
            let (waiter, bound) = oneshot::channel();
            rooms.waiters.entry(room).or_default().push(waiter);
            bound
        };
        self.changed.notify_one();
        match timeout(SUBSCRIBE_TIMEOUT, bound).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(TransportError::BindPending { room }),
        }
    }

    pub(crate) fn unsubscribe(&self, room: i64) {
        {
            let mut rooms = self.rooms();
            rooms.wanted.remove(&room);
            rooms.dirty.insert(room);
        }
        self.changed.notify_one();
    }

    /// Claims the right to run the event stream; the guard lives as long as the stream.
    pub(crate) fn start_stream(&self) -> Result<OwnedMutexGuard<()>, TransportError> {
        self.consuming
            .clone()
            .try_lock_owned()
            .map_err(|_| TransportError::Busy)
    }

    /// For a fresh queue: nothing is bound, every wanted room must be.
    pub(crate) fn rebind_all(&self) -> HashSet<i64> {
        let mut rooms = self.rooms();
        rooms.dirty.clear();
        rooms.bound.clear();
        rooms.wanted.clone()
    }

    /// Resolves when `subscribe` or `unsubscribe` left changes to apply.
    pub(crate) fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// The rooms whose binding may be wrong, each with whether it is wanted.
    pub(crate) fn take_changes(&self) -> Vec<(i64, bool)> {
        let mut rooms = self.rooms();
        let dirty = std::mem::take(&mut rooms.dirty);
        let changes: Vec<(i64, bool)> = dirty
            .into_iter()
            .map(|room| (room, rooms.wanted.contains(&room)))
            .collect();
        // A room about to be unbound no longer counts as bound, so a `subscribe` racing with
        // the unbind waits for the re-bind instead of trusting a dying binding.
        for (room, wanted) in &changes {
            if !wanted {
                rooms.bound.remove(room);
            }
        }
        changes
    }

    pub(crate) fn set_bound(&self, room: i64) {
        let mut rooms = self.rooms();
        rooms.bound.insert(room);
        for waiter in rooms.waiters.remove(&room).unwrap_or_default() {
            let _ = waiter.send(());
        }
    }

    pub(crate) fn set_unbound(&self, room: i64) {
        self.rooms().bound.remove(&room);
    }

    /// The queue has gone with its stream: nothing is bound until `events` runs again.
    pub(crate) fn clear_bound(&self) {
        self.rooms().bound.clear();
    }
}
