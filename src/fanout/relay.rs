//! The outbox relay: publishes stored events through the transport, in commit order, and
//! deletes them only once the transport has confirmed them. A broker outage or a crash
//! delays broadcasts; it never loses them.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::TaskError;
use crate::state::SharedState;
use crate::store::{RelayLease, StoreError};

/// Events published per round trip to the store.
const BATCH: u32 = 256;
/// Only one node's relay publishes at a time, which keeps every room in id order. The lease
/// is a lock its holder's death releases at once, so a survivor takes over promptly.
const LEASE_KEY: u32 = 0;
/// An idle relay looks again this often; it is also woken by the commits the store sees
/// (SQLite: its commit watcher, every node sharing the file included; PostgreSQL: NOTIFY).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Runs until cancelled; an error (store or transport) ends it and the supervisor restarts it.
pub async fn run(state: SharedState, token: CancellationToken) -> Result<(), TaskError> {
    let signal = state.store.outbox_signal();
    let mut lease: Option<Box<dyn RelayLease>> = None;
    // The delete of the last published batch runs while the next one is read and published,
    // so a commit is not on the relay's path; its rows are skipped until it is done.
    let mut deleting: Option<Deleting> = None;
    let outcome = loop {
        if token.is_cancelled() {
            break Ok(());
        }
        // Checked before every batch: a relay not sure of its lease publishes nothing more.
        let leased = match lease.as_mut() {
            Some(held) => {
                held.confirm().await.map_err(TaskError::LeaseLost)?;
                true
            }
            None => {
                lease = state
                    .store
                    .try_relay_lease(LEASE_KEY)
                    .await
                    .map_err(TaskError::Store)?;
                lease.is_some()
            }
        };
        let in_flight = deleting.as_ref().map_or(&[][..], |d| &d.ids[..]);
        let mut batch = if leased {
            state
                .store
                .outbox_batch(BATCH + in_flight.len() as u32)
                .await
                .map_err(TaskError::Store)?
        } else {
            Vec::new()
        };
        batch.retain(|entry| !in_flight.contains(&entry.id));
        if batch.is_empty() {
            if let Some(previous) = deleting.take() {
                if let Err(e) = previous.finish().await {
                    break Err(e);
                }
                continue;
            }
            tokio::select! {
                _ = token.cancelled() => break Ok(()),
                _ = signal.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let ids: Vec<i64> = batch.iter().map(|entry| entry.id).collect();
        let events = batch.into_iter().map(|entry| entry.event).collect();
        if let Err(e) = state.transport.publish_batch(events).await {
            break Err(TaskError::Publish(e));
        }
        if let Some(previous) = deleting.take() {
            if let Err(e) = previous.finish().await {
                break Err(e);
            }
        }
        deleting = Some(Deleting::start(&state, ids));
    };
    // Published rows left in the outbox would be published again by the next relay.
    let outcome = match deleting.take() {
        Some(previous) => outcome.and(previous.finish().await),
        None => outcome,
    };
    // Released at once, so another relay need not wait for this session or file to close.
    if let Some(lease) = lease {
        if let Err(error) = lease.release().await {
            tracing::warn!(%error, "could not release the relay lease");
        }
    }
    outcome
}

/// Published outbox rows being deleted.
struct Deleting {
    ids: Vec<i64>,
    task: JoinHandle<Result<(), StoreError>>,
}

impl Deleting {
    fn start(state: &SharedState, ids: Vec<i64>) -> Self {
        let store = state.store.clone();
        let deleted = ids.clone();
        Self {
            ids,
            task: tokio::spawn(async move { store.outbox_delete(deleted).await }),
        }
    }

    async fn finish(self) -> Result<(), TaskError> {
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TaskError::Clear(e)),
            Err(e) => Err(TaskError::ClearTask(e)),
        }
    }
}
