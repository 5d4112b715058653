//! Coalesces receipts: marks (a socket was written a message, a client read up to one) wait
//! here up to one [`FLUSH_EVERY`] and are stored together, one per member, room and kind
//! carrying the highest position. A burst of messages into a busy room thus costs each
//! member one delivered receipt per interval, not one per message.
//!
//! Bounded by its keys: one entry per (room, member, kind) marked within an interval, so at
//! most two per open socket plus one per read request in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::domain::conversations::{ReceiptKind, ReceiptMark};
use crate::store::{Store, StoreError, StoreResult};

/// How long a mark may wait for others to join it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

type Key = (i64, i64, ReceiptKind);
type Waiter = oneshot::Sender<StoreResult<i64>>;

struct Pending {
    upto: i64,
    /// Requests waiting for the position after the flush (read receipts over REST).
    waiters: Vec<Waiter>,
}

#[derive(Default)]
pub struct Receipts {
    pending: Mutex<HashMap<Key, Pending>>,
    wake: Notify,
}

impl Receipts {
    /// Queues `mark`; it is stored within one interval.
    pub fn mark(&self, mark: ReceiptMark) {
        self.queue(mark, None);
    }

    /// Queues `mark` and waits until it is stored: the position afterwards.
    pub async fn mark_and_wait(&self, mark: ReceiptMark) -> StoreResult<i64> {
        let (tx, rx) = oneshot::channel();
        self.queue(mark, Some(tx));
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Backend(
                "the node stopped before storing it".into(),
            ))
        })
    }

    fn queue(&self, mark: ReceiptMark, waiter: Option<Waiter>) {
        let key = (mark.room, mark.user, mark.kind);
        let mut pending = self.pending.lock().expect("receipts poisoned");
        let entry = pending.entry(key).or_insert(Pending {
            upto: mark.upto,
            waiters: Vec::new(),
        });
        entry.upto = entry.upto.max(mark.upto);
        entry.waiters.extend(waiter);
        drop(pending);
        self.wake.notify_one();
    }

    /// Entries waiting for the next flush.
    pub fn pending_len(&self) -> usize {
        self.pending.lock().expect("receipts poisoned").len()
    }

    /// Stores what was marked, one interval after the first mark of each batch, until
    /// `token` fires; then stores what is left once more.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, token: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = token.cancelled() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
                _ = token.cancelled() => break,
            }
            self.flush(store.as_ref()).await;
        }
        self.flush(store.as_ref()).await;
    }

    async fn flush(&self, store: &dyn Store) {
        let batch: Vec<(Key, Pending)> = {
            let mut pending = self.pending.lock().expect("receipts poisoned");
            pending.drain().collect()
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
                tracing::warn!(%error, marks = marks.len(), "storing receipts failed; retrying");
                for (_, pending) in batch {
                    for waiter in pending.waiters {
                        let _ = waiter.send(Err(error.clone()));
                    }
                }
                // Nobody waits for these any more, but they still count: try again later.
                for mark in marks {
                    self.queue(mark, None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(upto: i64) -> ReceiptMark {
        ReceiptMark {
            room: 1,
            user: 2,
            kind: ReceiptKind::Delivered,
            upto,
        }
    }

    #[test]
    fn marks_of_one_member_room_and_kind_share_one_entry_with_the_highest_position() {
        let receipts = Receipts::default();
        for upto in (1..=1000).rev() {
            receipts.mark(delivered(upto));
        }
        receipts.mark(ReceiptMark {
            kind: ReceiptKind::Read,
            ..delivered(5)
        });
        assert_eq!(receipts.pending_len(), 2);
        let pending = receipts.pending.lock().unwrap();
        assert_eq!(pending[&(1, 2, ReceiptKind::Delivered)].upto, 1000);
    }
}
