//! A typed async client for [chatnode](https://github.com/): every REST endpoint, a room's
//! WebSocket feed with the frames a client sends, the error envelope as a typed error, and
//! [`Launch`]/[`NodeProcess`] to run `chatnode serve` as a child process.
//!
//! ```no_run
//! use chatnode_client::{Client, Event};
//! # async fn demo() -> Result<(), chatnode_client::Error> {
//! let client = Client::new("http://127.0.0.1:8000");
//! let me = client.login("bot@example.com", "a-long-passphrase").await?;
//! let room = client.create_room(me.access(), "Bots", &[]).await?;
//! let mut socket = client.socket(room.id, me.access()).await?;
//! client.send(me.access(), room.id, "hello").await?;
//! while let Some(event) = socket.event_within(std::time::Duration::from_secs(5)).await? {
//!     if let Event::Message(message) = event {
//!         println!("{}: {}", message.sender, message.message);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Every call is bounded ([`REQUEST_TIMEOUT`], [`CONNECT_TIMEOUT`]); a refusal is
//! [`Error::Api`] with the node's status and `errors` object.

mod client;
mod endpoints;
mod error;
mod model;
mod process;
mod socket;

pub use client::{Answer, Client, Request, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
pub use endpoints::Attachment;
pub use error::{ApiError, Error};
pub use model::{
    ChatListEntry, Credentials, EventPage, HistoryQuery, Member, Message, NewAccount, Page, Person,
    Presence, Profile, Reaction, Reactions, ReadPosition, Readiness, Receipt, Room, Session,
};
pub use process::{Launch, NodeProcess, LOG_LINES_KEPT, START_TIMEOUT};
pub use reqwest::{header, multipart, Body, Method, StatusCode};
pub use socket::{Event, Incoming, MessageFrame, ReceiptFrame, Socket, SocketOptions};
pub use tokio_tungstenite::tungstenite::Message as WsMessage;
