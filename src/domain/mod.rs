//! The domain: the entities every seam speaks of and the room events they produce. It
//! imports no seam, so the store, the transport and the HTTP layer all depend on it and
//! never on each other for these types.

pub mod conversations;
pub mod events;
pub mod request_id;
pub mod values;

use conversations::RoomKind;
use events::RoomEvent;
use values::{Email, PhoneNumber};

/// A user as the API shows it (the password hash never leaves the store).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub username: String,
    pub phone_number: String,
    pub first_name: String,
    pub last_name: String,
    pub created_at: String,
    pub updated_at: String,
    /// Whether others may see when this user was last online (`PATCH /api/v1/users/me/`).
    pub show_last_seen: bool,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub username: String,
    pub phone_number: PhoneNumber,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: String,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: i64,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
}

#[derive(Debug, Clone)]
pub struct Room {
    pub id: i64,
    pub name: String,
    pub admin: i64,
    pub kind: RoomKind,
    /// Every member in [`Room`]s the store loads whole; at most a few in chat-list entries.
    pub members: Vec<Member>,
    pub member_count: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A stored attachment: `file_name` is the name under the media directory.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    /// The name the sender's client gave the file, cleaned; for `Content-Disposition`.
    pub original_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: i64,
    pub room_id: i64,
    pub sender_id: i64,
    pub sender_username: String,
    pub content: String,
    pub attachment: Option<Attachment>,
    pub created_at: String,
    /// When the sender last edited it.
    pub edited_at: Option<String>,
    /// Deleted for everyone: a tombstone, its content and attachment gone.
    pub deleted: bool,
    /// The message this one answers.
    pub reply_to: Option<ReplyRef>,
}

/// How many members reacted to a message with one emoji.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReactionCount {
    #[schema(example = "\u{1F44D}")]
    pub emoji: String,
    pub count: i64,
}

/// A message's reactions, and one member's own (the changing member's, after a change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactions {
    pub message_id: i64,
    /// Most used first, then by emoji.
    pub counts: Vec<ReactionCount>,
    pub mine: Option<String>,
}

/// Characters of the answered message a reply shows.
pub const EXCERPT_CHARS: usize = 100;

/// What a reply shows of the message it answers; `excerpt` is gone once that is deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReplyRef {
    /// The answered message's id.
    pub id: i64,
    /// Its sender's user id.
    pub sender: i64,
    /// Its first 100 characters; `null` once it was deleted.
    pub excerpt: Option<String>,
}

impl ReplyRef {
    /// The reference to message `id` by `sender`, showing the start of `content` unless the
    /// message was deleted.
    pub fn new(id: i64, sender: i64, content: &str, deleted: bool) -> Self {
        Self {
            id,
            sender,
            excerpt: (!deleted).then(|| content.chars().take(EXCERPT_CHARS).collect()),
        }
    }
}

/// A window of a room's history, always returned oldest first.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u32,
    /// Only messages with a smaller id (the newest `limit` of them).
    pub before: Option<i64>,
    /// Only messages with a larger id (the oldest `limit` of them).
    pub after: Option<i64>,
}

/// An event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub event: RoomEvent,
}

/// How far the relay is behind: the events waiting and when the oldest was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxDepth {
    pub rows: u64,
    /// RFC 3339; `None` when the outbox is empty.
    pub oldest_at: Option<String>,
}

/// Who may see an attachment: the members of `room_id`.
#[derive(Debug, Clone)]
pub struct AttachmentOwner {
    pub room_id: i64,
    pub content_type: String,
    pub original_name: Option<String>,
}
