//! The event log's retention: every node removes log entries older than
//! `--event-retention`, a batch at a time (the store raises each room's floor, so a replay
//! from before it is answered with a reset instead of a gap).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::SharedState;
use crate::store::events::PRUNE_BATCH;

/// Batches removed per round before the pruner sleeps again: a backlog (a node that was off
/// for long) is worked off over several rounds instead of holding the writer.
const MAX_BATCHES_PER_ROUND: usize = 20;

/// How often to prune: a quarter of the retention, between 1 s and a minute, so an entry
/// outlives its retention by at most that.
pub fn interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Prunes until the node shuts down.
pub async fn run(state: SharedState, shutdown: CancellationToken) {
    let retention = Duration::from_secs(state.config.event_retention_secs);
    let every = interval(retention);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // A retention too long for the calendar never prunes.
        let before = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|age| chrono::Utc::now().checked_sub_signed(age));
        let Some(before) = before else { return };
        for _ in 0..MAX_BATCHES_PER_ROUND {
            match state.store.prune_events(before).await {
                Ok(removed) if removed < u64::from(PRUNE_BATCH) => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error.chain(), "pruning the event log failed");
                    break;
                }
            }
        }
    }
}
