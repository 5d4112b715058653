//! The outbox relay: publishes stored events through the transport, in commit order, and
//! deletes them only once the transport has confirmed them. A broker outage or a crash
//! delays broadcasts; it never loses them.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::state::SharedState;

/// Events published per round trip to the store.
const BATCH: u32 = 256;
/// Only one node's relay publishes at a time, which keeps every room in id order.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// An idle relay looks again this often (it is also woken by every local commit).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Runs until cancelled; an error (store or transport) ends it and the supervisor restarts it.
pub async fn run(state: SharedState, token: CancellationToken) -> Result<(), String> {
    let holder = state.config.node_id.clone();
    let signal = state.store.outbox_signal();
    let mut lease_until: Option<Instant> = None;
    let outcome = loop {
        if token.is_cancelled() {
            break Ok(());
        }
        let leased = match lease_until {
            Some(until) if until > Instant::now() + LEASE_TTL / 2 => true,
            _ => {
                let granted = state
                    .store
                    .acquire_relay_lease(&holder, LEASE_TTL)
                    .await
                    .map_err(|e| e.to_string())?;
                lease_until = granted.then(|| Instant::now() + LEASE_TTL);
                granted
            }
        };
        let batch = if leased {
            state
                .store
                .outbox_batch(BATCH)
                .await
                .map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        if batch.is_empty() {
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
            break Err(format!(
                "publishing outbox events failed (they stay queued): {e}"
            ));
        }
        if let Err(e) = state.store.outbox_delete(ids).await {
            break Err(format!("cannot clear published outbox events: {e}"));
        }
    };
    if lease_until.is_some() {
        if let Err(error) = state.store.release_relay_lease(&holder).await {
            tracing::warn!(%error, "could not release the relay lease");
        }
    }
    outcome
}
