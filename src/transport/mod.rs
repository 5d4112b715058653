//! The transport seam: how room events travel from the node that stored them to every node
//! with sockets in that room. The in-process bus is the embedded default; `amqp091` carries
//! events between nodes through a RabbitMQ exchange.

pub mod amqp091;
pub mod amqp10;
pub mod memory;
mod rooms;
#[cfg(test)]
mod testing;

use std::pin::Pin;

use async_trait::async_trait;
use futures_util::Stream;

pub use crate::events::{EventKind, RoomEvent};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the transport is closed")]
    Closed,
    #[error("the event stream is already being consumed")]
    Busy,
    #[error("transport error: {0}")]
    Other(String),
}

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
}
