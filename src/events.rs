//! Room events: what the transport carries from the node that stored them to every node
//! with sockets in the room, and the WebSocket frame each becomes. The JSON of
//! [`RoomEvent`] is the documented wire format on the broker.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::store::{Attachment, Message};

pub const BOT_SENDER: &str = "WhatsApp MessengerBot";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Message,
    MemberJoined,
    MemberLeft,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub kind: EventKind,
    pub chat_id: i64,
    /// Message id; `None` for join/leave notices, which are not messages.
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

pub fn attachment_url(file: &Attachment) -> String {
    format!("/media/{}", file.file_name)
}

impl RoomEvent {
    pub fn message(m: &Message) -> Self {
        Self {
            kind: EventKind::Message,
            chat_id: m.room_id,
            id: Some(m.id),
            message: m.content.clone(),
            sender: m.sender_username.clone(),
            sender_id: Some(m.sender_id),
            user_id: None,
            file: m.attachment.as_ref().map(attachment_url),
            created_at: m.created_at.clone(),
        }
    }

    pub fn joined(room: i64, user_id: i64, username: &str, at: &str) -> Self {
        Self::notice(
            EventKind::MemberJoined,
            room,
            user_id,
            format!("{username} just joined the Chatroom"),
            at,
        )
    }

    pub fn left(room: i64, user_id: i64, username: &str, at: &str) -> Self {
        Self::notice(
            EventKind::MemberLeft,
            room,
            user_id,
            format!("{username} has left the chatroom"),
            at,
        )
    }

    fn notice(kind: EventKind, room: i64, user_id: i64, text: String, at: &str) -> Self {
        Self {
            kind,
            chat_id: room,
            id: None,
            message: text,
            sender: BOT_SENDER.to_string(),
            sender_id: None,
            user_id: Some(user_id),
            file: None,
            created_at: at.to_string(),
        }
    }

    /// The broker message body: this event's JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a RoomEvent always serialises")
    }

    /// An event from a broker message body, which any AMQP client may have published.
    pub fn decode(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The WebSocket frame: the original's `{"data": {...}}` plus ids and the file.
    pub fn frame_json(&self) -> String {
        json!({
            "data": {
                "purpose": "new_chat_message",
                "event": self.kind,
                "message": self.message,
                "sender": self.sender,
                "id": self.id,
                "chat_id": self.chat_id,
                "sender_id": self.sender_id,
                "file": self.file,
                "created_at": self.created_at,
            }
        })
        .to_string()
    }
}
