//! The transport seam: how room events travel from the node that stored them to every node
//! with sockets in that room. The in-process bus is the embedded default; `amqp091` carries
//! events between nodes through a RabbitMQ exchange.

pub mod amqp091;
pub mod memory;

use std::pin::Pin;

use async_trait::async_trait;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

pub const BOT_SENDER: &str = "WhatsApp MessengerBot";

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the transport is closed")]
    Closed,
    #[error("the event stream is already being consumed")]
    Busy,
    #[error("transport error: {0}")]
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Message,
    MemberJoined,
    MemberLeft,
}

/// One room event as it crosses the transport (JSON on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub kind: EventKind,
    pub chat_id: i64,
    /// Message id; `None` for join/leave notices, which are not stored.
    pub id: Option<i64>,
    pub message: String,
    /// Username of the author, or the bot for notices.
    pub sender: String,
    pub sender_id: Option<i64>,
    /// Whom a join/leave notice is about.
    pub user_id: Option<i64>,
    /// Attachment URL.
    pub file: Option<String>,
    pub created_at: String,
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<RoomEvent, TransportError>> + Send>>;

#[async_trait]
pub trait Transport: Send + Sync {
    /// Hands an already stored event to every node serving its room.
    async fn publish(&self, event: RoomEvent) -> Result<(), TransportError>;
    /// This node now has sockets in `room`: deliver its events here. Idempotent.
    fn subscribe(&self, room: i64);
    /// The last socket of `room` on this node has gone.
    fn unsubscribe(&self, room: i64);
    /// The events of subscribed rooms. One consumer at a time; after the stream ends or
    /// fails, the subscriber calls this again to resume.
    async fn events(&self) -> Result<EventStream, TransportError>;
    /// Short state for `/readyz`; `Err` when events cannot flow.
    fn health(&self) -> Result<&'static str, String>;
}
