//! Coalesces receipts: marks (a socket was written a message, a client read up to one) wait
//! here and are stored together, one per member, room and kind carrying the highest
//! position. A burst of messages into a busy room thus costs each member one delivered
//! receipt per interval, not one per message.
//!
//! Every receipt is a frame to each socket of its room, so a room of S sockets whose members
//! all mark costs S x S frames per interval: the interval grows with the room's sockets on
//! this node ([`interval_for`]: [`FLUSH_EVERY`] up to [`SOCKETS_PER_STEP`] sockets, one
//! more step per that many, at most [`MAX_INTERVAL`]), which keeps a room's receipt frames
//! per second linear in its sockets up to 100 of them. A mark somebody waits for (a read
//! over REST) waits at most [`FLUSH_EVERY`].
//!
//! Bounded by its keys: one entry per (room, member, kind) marked within an interval, so at
//! most two per open socket plus one per read request in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::conversations::{ReceiptKind, ReceiptMark};
use crate::hub::Hub;
use crate::store::{Store, StoreError, StoreResult};

/// How long a mark in a small room (and any mark somebody waits for) may wait for others.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Each this many local sockets of a room add one [`FLUSH_EVERY`] to its interval.
pub const SOCKETS_PER_STEP: usize = 10;
/// The longest a mark waits, whatever the room's size.
pub const MAX_INTERVAL: Duration = Duration::from_secs(2);
/// A flush also takes what falls due this soon after it, so that marks made at different
/// moments still share a transaction (at most a flush per this long).
const SLACK: Duration = Duration::from_millis(100);

/// How long marks of a room with `sockets` local sockets are held.
pub fn interval_for(sockets: usize) -> Duration {
    let steps = sockets.div_ceil(SOCKETS_PER_STEP).max(1) as u32;
    (FLUSH_EVERY * steps).min(MAX_INTERVAL)
}

type Key = (i64, i64, ReceiptKind);
type Waiter = oneshot::Sender<StoreResult<i64>>;

struct Pending {
    upto: i64,
    /// When the entry is stored.
    due: Instant,
    /// Requests waiting for the position after the flush (read receipts over REST).
    waiters: Vec<Waiter>,
}

#[derive(Default)]
struct Queue {
    entries: HashMap<Key, Pending>,
    /// The due time the flushing task sleeps until (None: it waits for a mark).
    scheduled: Option<Instant>,
}

pub struct Receipts {
    pending: Mutex<Queue>,
    wake: Notify,
    /// Sizes rooms by their sockets here.
    hub: Arc<Hub>,
}

impl Receipts {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            pending: Mutex::default(),
            wake: Notify::new(),
            hub,
        }
    }

    /// Queues `mark`; it is stored within its room's interval.
    pub fn mark(&self, mark: ReceiptMark) {
        let delay = interval_for(self.hub.room_socket_count(mark.room));
        self.queue(mark, Instant::now() + delay, None);
    }

    /// Queues `mark` and waits until it is stored (within [`FLUSH_EVERY`]): the position
    /// afterwards.
    pub async fn mark_and_wait(&self, mark: ReceiptMark) -> StoreResult<i64> {
        let (tx, rx) = oneshot::channel();
        self.queue(mark, Instant::now() + FLUSH_EVERY, Some(tx));
        rx.await
            .unwrap_or_else(|_| Err(StoreError::internal("the node stopped before storing it")))
    }

    fn queue(&self, mark: ReceiptMark, due: Instant, waiter: Option<Waiter>) {
        let key = (mark.room, mark.user, mark.kind);
        let mut queue = self.pending.lock().expect("receipts poisoned");
        let entry = queue.entries.entry(key).or_insert(Pending {
            upto: mark.upto,
            due,
            waiters: Vec::new(),
        });
        entry.upto = entry.upto.max(mark.upto);
        // Joining an entry never delays it; a waiter may bring it forward.
        entry.due = entry.due.min(due);
        entry.waiters.extend(waiter);
        let due = entry.due;
        // Only a mark due before the flushing task's wake-up needs to wake it: most marks
        // join an entry or fall due later, and cost no wake-up.
        let sooner = queue.scheduled.is_none_or(|at| due < at);
        if sooner {
            queue.scheduled = Some(due);
        }
        drop(queue);
        if sooner {
            self.wake.notify_one();
        }
    }

    /// Entries waiting for a flush.
    pub fn pending_len(&self) -> usize {
        self.pending
            .lock()
            .expect("receipts poisoned")
            .entries
            .len()
    }

    /// When the next entry is due, if any, noted as the flushing task's wake-up.
    fn schedule(&self) -> Option<Instant> {
        let mut queue = self.pending.lock().expect("receipts poisoned");
        queue.scheduled = queue.entries.values().map(|p| p.due).min();
        queue.scheduled
    }

    /// Stores each entry when it is due, until `token` fires; then stores what is left.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, token: CancellationToken) {
        loop {
            let next = self.schedule();
            tokio::select! {
                // A new mark may be due before the one waited for.
                _ = self.wake.notified() => continue,
                _ = token.cancelled() => break,
                _ = sleep_until(next) => {}
            }
            self.flush(store.as_ref(), Some(Instant::now() + SLACK))
                .await;
        }
        self.flush(store.as_ref(), None).await;
    }

    /// Stores the entries due by `by` (every entry if `None`).
    async fn flush(&self, store: &dyn Store, by: Option<Instant>) {
        let batch: Vec<(Key, Pending)> = {
            let mut queue = self.pending.lock().expect("receipts poisoned");
            match by {
                Some(by) => {
                    let due: Vec<Key> = queue
                        .entries
                        .iter()
                        .filter(|(_, p)| p.due <= by)
                        .map(|(k, _)| *k)
                        .collect();
                    due.into_iter()
                        .filter_map(|k| queue.entries.remove_entry(&k))
                        .collect()
                }
                None => queue.entries.drain().collect(),
            }
        };
        if batch.is_empty() {
            return;
        }
        let marks: Vec<ReceiptMark> = batch
            .iter()
            .map(|&((room, user, kind), ref p)| ReceiptMark {
                room,
                user,
                kind,
                upto: p.upto,
            })
            .collect();
        match store.apply_receipts(marks.clone()).await {
            Ok(positions) => {
                for ((_, pending), position) in batch.into_iter().zip(positions) {
                    for waiter in pending.waiters {
                        let _ = waiter.send(Ok(position));
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %error.chain(), marks = marks.len(), "storing receipts failed; retrying");
                for (_, pending) in batch {
                    for waiter in pending.waiters {
                        let _ = waiter.send(Err(error.clone()));
                    }
                }
                // Nobody waits for these any more, but they still count: try again later.
                for mark in marks {
                    self.queue(mark, Instant::now() + FLUSH_EVERY, None);
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when nothing is pending.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::memory::MemoryTransport;

    fn delivered(upto: i64) -> ReceiptMark {
        ReceiptMark {
            room: 1,
            user: 2,
            kind: ReceiptKind::Delivered,
            upto,
        }
    }

    fn receipts() -> Receipts {
        Receipts::new(Arc::new(Hub::new(Arc::new(MemoryTransport::default()))))
    }

    #[test]
    fn a_rooms_interval_grows_with_its_sockets_up_to_the_maximum() {
        assert_eq!(interval_for(0), FLUSH_EVERY);
        assert_eq!(interval_for(2), FLUSH_EVERY);
        assert_eq!(interval_for(SOCKETS_PER_STEP), FLUSH_EVERY);
        assert_eq!(interval_for(SOCKETS_PER_STEP + 1), FLUSH_EVERY * 2);
        assert_eq!(interval_for(50), Duration::from_secs(1));
        assert_eq!(interval_for(100), MAX_INTERVAL);
        assert_eq!(interval_for(100_000), MAX_INTERVAL);
    }

    #[tokio::test]
    async fn a_mark_somebody_waits_for_brings_its_entry_forward_and_later_marks_keep_it() {
        let receipts = receipts();
        let start = Instant::now();
        receipts.queue(delivered(1), start + MAX_INTERVAL, None);
        let (tx, _rx) = oneshot::channel();
        receipts.queue(delivered(2), start + FLUSH_EVERY, Some(tx));
        receipts.queue(delivered(3), start + MAX_INTERVAL, None);
        let queue = receipts.pending.lock().unwrap();
        let entry = &queue.entries[&(1, 2, ReceiptKind::Delivered)];
        assert_eq!((entry.upto, entry.due), (3, start + FLUSH_EVERY));
        assert_eq!(queue.scheduled, Some(start + FLUSH_EVERY));
    }

    #[tokio::test]
    async fn marks_of_one_member_room_and_kind_share_one_entry_with_the_highest_position() {
        let receipts = receipts();
        for upto in (1..=1000).rev() {
            receipts.mark(delivered(upto));
        }
        receipts.mark(ReceiptMark {
            kind: ReceiptKind::Read,
            ..delivered(5)
        });
        assert_eq!(receipts.pending_len(), 2);
        let queue = receipts.pending.lock().unwrap();
        assert_eq!(queue.entries[&(1, 2, ReceiptKind::Delivered)].upto, 1000);
    }
}
