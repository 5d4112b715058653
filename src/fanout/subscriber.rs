//! The subscriber: moves the events the transport delivers to this node's sockets.

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::TaskError;
use crate::state::SharedState;

/// Moves events from the transport to this node's sockets until cancelled or the stream fails.
pub async fn run(state: SharedState, token: CancellationToken) -> Result<(), TaskError> {
    let mut events = state
        .transport
        .events()
        .await
        .map_err(TaskError::Subscribe)?;
    state.set_subscriber_up(true);
    // Events published while the stream was down never reached this node: every socket
    // re-reads its room from where it is.
    state.hub.resync_all();
    let outcome = loop {
        tokio::select! {
            _ = token.cancelled() => break Ok(()),
            event = events.next() => match event {
                Some(Ok(event)) => crate::signals::deliver(&state, event),
                Some(Err(e)) => break Err(TaskError::Stream(e)),
                None => break Err(TaskError::StreamEnded),
            },
        }
    };
    state.set_subscriber_up(false);
    outcome
}
