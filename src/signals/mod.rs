//! Ephemeral signals (typing, presence): published through the transport's best-effort path, never
//! through the store or the outbox, and expired by each receiving node on its own clock.

pub mod presence;
pub mod typing;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::events::{EventKind, RoomEvent};
use crate::state::SharedState;
use crate::store::now_timestamp;

pub use presence::Presence;
pub use typing::Typing;

/// How often expired typing starts are ended: a start lasts 6-6.5 s without a refresh.
const EXPIRY_SWEEP: Duration = Duration::from_millis(500);

/// Tells every node serving `room` that `user` started or stopped typing. Best effort: a
/// signal the transport cannot take now is dropped (and said so in the debug log).
pub async fn send_typing(state: &SharedState, room: i64, user: i64, name: &str, started: bool) {
    let signal = RoomEvent::typing(room, user, name, started, &now_timestamp());
    if let Err(error) = state.transport.signal(signal).await {
        tracing::debug!(room, user, error = %error.chain(), "typing signal dropped");
    }
}

/// Hands an event from the transport to this node's sockets, with the typing stops it implies.
pub fn deliver(state: &SharedState, mut event: RoomEvent) {
    // Minted here, on the delivering node, for the members whose sockets it serves.
    event.file = event.file.map(|path| state.media_urls.mint(&path));
    if event.kind == EventKind::Message {
        state.metrics.delivered(&event.created_at);
    }
    for event in state.typing.on_event(event, tokio::time::Instant::now()) {
        state.hub.deliver(&event);
    }
}

/// Ends typing that was not refreshed in time, until `token` is cancelled.
pub async fn expire_typing(state: SharedState, token: CancellationToken) {
    let mut sweeps = tokio::time::interval(EXPIRY_SWEEP);
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = sweeps.tick() => {
                for stop in state.typing.expire(tokio::time::Instant::now()) {
                    state.hub.deliver(&stop);
                }
            }
        }
    }
}
