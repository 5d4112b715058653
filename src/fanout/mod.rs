//! The durable path after the store, as ARCHITECTURE.md draws it: the relay publishes the
//! outbox through the transport, the subscriber hands what the transport delivers to the
//! hub, and the supervisor restarts either when it fails.

pub mod relay;
pub mod subscriber;
pub mod supervisor;

use crate::store::StoreError;
use crate::transport::TransportError;

/// Why a supervised task ended; the supervisor logs it with its whole cause chain.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("the store failed")]
    Store(#[source] StoreError),
    #[error("the relay lease is no longer sure")]
    LeaseLost(#[source] StoreError),
    #[error("publishing outbox events failed (they stay queued)")]
    Publish(#[source] TransportError),
    #[error("cannot clear published outbox events")]
    Clear(#[source] StoreError),
    #[error("the task clearing published outbox events failed")]
    ClearTask(#[source] tokio::task::JoinError),
    #[error("the event stream could not be opened")]
    Subscribe(#[source] TransportError),
    #[error("the event stream failed")]
    Stream(#[source] TransportError),
    #[error("the event stream ended")]
    StreamEnded,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause_chain;

    #[test]
    fn a_task_error_is_logged_with_every_cause() {
        let error = TaskError::LeaseLost(StoreError::backend(
            "the relay lock connection failed",
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        ));
        assert_eq!(
            cause_chain(&error),
            "the relay lease is no longer sure: database error: the relay lock connection \
             failed: connection reset"
        );
    }
}
