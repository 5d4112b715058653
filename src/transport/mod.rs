//! The transport seam: how room events travel from the node that stored them to every node
//! with sockets in that room. The in-process bus is the embedded default; the broker
//! transports (features `amqp091` and `amqp10`) carry events between nodes through a RabbitMQ
//! exchange, in `amqp/`.

#[cfg(any(feature = "amqp091", feature = "amqp10"))]
pub mod amqp;
pub mod memory;

use std::error::Error;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;

use crate::config::{Config, TransportKind};
pub use crate::domain::events::{EventKind, RoomEvent};

/// A cause kept behind an `Arc`, so the error stays `Clone` (a failed connection attempt is
/// handed to every caller during the cool-down).
pub type Cause = Arc<dyn Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("the transport is closed")]
    Closed,
    #[error("the event stream is already being consumed")]
    Busy,
    #[error("the {transport} transport needs the `{feature}` cargo feature, which this build does not include: cargo build --features {feature}")]
    NotCompiled {
        transport: &'static str,
        feature: &'static str,
    },
    #[error("invalid broker URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("broker URL {url}: only amqp:// is supported (no TLS in this build)")]
    UnsupportedScheme { url: String },
    #[error("cannot connect to the broker at {url}")]
    Connect {
        url: String,
        #[source]
        source: Cause,
    },
    /// One broker operation failed (`what`: "bind a room", "AMQP 1.0", ...).
    #[error("{what}")]
    Broker {
        what: &'static str,
        #[source]
        source: Cause,
    },
    #[error("{what}: no answer from the broker within {within:?}")]
    Timeout {
        what: &'static str,
        within: Duration,
    },
    #[error("room {room} will be bound once the broker connection is up")]
    NotConsuming { room: i64 },
    #[error("room {room} is not bound yet; it will be once the broker is back")]
    BindPending { room: i64 },
    #[error("the broker did not take the event: {0}")]
    NotTaken(Refusal),
    #[error("the signal was dropped: the event queue is full")]
    Congested,
    #[error("the broker ended the consumer")]
    ConsumerEnded,
    #[error("the AMQP 0-9-1 connection for bindings was lost")]
    TopologyLost,
}

/// How a broker answered an event it did not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// AMQP 0-9-1: a negative publisher confirm.
    #[error("nacked")]
    Nacked,
    /// AMQP 1.0: the `rejected` outcome, with the broker's error if it gave one.
    #[error("rejected ({})", .0.as_deref().unwrap_or("no reason given"))]
    Rejected(Option<String>),
    /// AMQP 1.0: the `modified` outcome (neither delivered nor to be retried as is).
    #[error("modified")]
    Modified,
}

impl TransportError {
    /// The error and every cause under it, for `/readyz` and logs.
    pub fn chain(&self) -> String {
        crate::cause_chain(self)
    }
}

/// How long a broker keeps an undelivered signal: later, typing news is wrong, not late.
pub const SIGNAL_TTL: Duration = Duration::from_secs(5);
/// Longest a socket task waits to hand a signal over (a broker mid-reconnect, a busy link).
pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(1);

pub type EventStream = Pin<Box<dyn Stream<Item = Result<RoomEvent, TransportError>> + Send>>;

#[async_trait]
pub trait Transport: Send + Sync {
    /// Hands an already stored event to every node serving its room; returns once the
    /// transport has taken responsibility for it (broker confirm).
    async fn publish(&self, event: RoomEvent) -> Result<(), TransportError>;
    /// Publishes events in order; all are taken when it returns `Ok`.
    async fn publish_batch(&self, events: Vec<RoomEvent>) -> Result<(), TransportError> {
        for event in events {
            self.publish(event).await?;
        }
        Ok(())
    }
    /// Hands an ephemeral signal ([`RoomEvent::is_signal`]) to every node serving its room,
    /// best effort: no outbox, no confirm awaited, dropped rather than queued when the
    /// transport cannot take it at once, expired by the broker after [`SIGNAL_TTL`], and
    /// never replayed. An `Err` only says it was dropped.
    async fn signal(&self, event: RoomEvent) -> Result<(), TransportError>;
    /// This node now has sockets in `room`: deliver its events here. Idempotent. Resolves
    /// once the room's events do reach this node; an error means they will once the
    /// transport recovers (the subscription is kept).
    async fn subscribe(&self, room: i64) -> Result<(), TransportError>;
    /// The last socket of `room` on this node has gone.
    fn unsubscribe(&self, room: i64);
    /// The events of subscribed rooms. One consumer at a time; after the stream ends or
    /// fails, the subscriber calls this again to resume.
    async fn events(&self) -> Result<EventStream, TransportError>;
    /// Short state for `/readyz`; `Err` when events cannot flow.
    fn health(&self) -> Result<&'static str, String>;
    /// Where to record reconnects and confirm latency (metrics on); the memory transport
    /// has neither.
    fn observe(&self, _probe: crate::metrics::TransportProbe) {}
}

/// The transport `config` asks for. Broker transports only check their URL here and connect
/// in the background; one whose cargo feature this build lacks stops the node.
pub fn open(config: &Config) -> Result<Arc<dyn Transport>, TransportError> {
    Ok(match config.transport {
        TransportKind::Memory => Arc::new(memory::MemoryTransport::default()),
        TransportKind::Amqp091 => open_amqp091(config)?,
        TransportKind::Amqp10 => open_amqp10(config)?,
    })
}

#[cfg(feature = "amqp091")]
fn open_amqp091(config: &Config) -> Result<Arc<dyn Transport>, TransportError> {
    let url = config.amqp_url();
    tracing::info!(
        broker = %crate::store::redact(&url),
        exchange = %config.exchange,
        node = %config.node_id,
        "using the AMQP 0-9-1 transport; connecting in the background"
    );
    Ok(Arc::new(amqp::v091::Amqp091Transport::new(
        &url,
        &config.exchange,
        &config.node_id,
    )?))
}

#[cfg(not(feature = "amqp091"))]
fn open_amqp091(_: &Config) -> Result<Arc<dyn Transport>, TransportError> {
    Err(TransportError::NotCompiled {
        transport: "amqp091",
        feature: "amqp091",
    })
}

#[cfg(feature = "amqp10")]
fn open_amqp10(config: &Config) -> Result<Arc<dyn Transport>, TransportError> {
    let url = config.amqp_url();
    tracing::info!(
        broker = %crate::store::redact(&url),
        exchange = %config.exchange,
        node = %config.node_id,
        addressing = ?config.amqp10_addressing,
        "using the AMQP 1.0 transport; connecting in the background"
    );
    Ok(Arc::new(amqp::v10::Amqp10Transport::new(
        &url,
        &config.exchange,
        &config.node_id,
        config.amqp10_addressing,
    )?))
}

#[cfg(not(feature = "amqp10"))]
fn open_amqp10(_: &Config) -> Result<Arc<dyn Transport>, TransportError> {
    Err(TransportError::NotCompiled {
        transport: "amqp10",
        feature: "amqp10",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_carries_every_cause() {
        let io = std::io::Error::other("refused");
        let error = TransportError::Connect {
            url: "amqp://h".into(),
            source: Arc::new(TransportError::Broker {
                what: "AMQP 0-9-1",
                source: Arc::new(io),
            }),
        };
        assert_eq!(
            error.chain(),
            "cannot connect to the broker at amqp://h: AMQP 0-9-1: refused"
        );
    }

    /// Builds without a broker feature refuse its transport by naming the feature.
    #[cfg(any(not(feature = "amqp091"), not(feature = "amqp10")))]
    #[test]
    fn a_transport_not_compiled_in_stops_the_node_naming_its_feature() {
        for (kind, feature) in [
            (TransportKind::Amqp091, "amqp091"),
            (TransportKind::Amqp10, "amqp10"),
        ] {
            let mut config = Config::new("data");
            config.transport = kind;
            match open(&config) {
                Err(error @ TransportError::NotCompiled { .. }) => {
                    let message = error.to_string();
                    assert!(
                        message.contains(&format!("`{feature}` cargo feature")),
                        "{message}"
                    );
                }
                Err(other) => panic!("{feature}: unexpected {other}"),
                // Compiled in: it builds.
                Ok(_) => {}
            }
        }
    }
}
