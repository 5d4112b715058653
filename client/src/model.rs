//! What the API answers with, typed. Fields the node may add later are ignored, so a
//! client keeps working against newer nodes.

use serde::{Deserialize, Serialize};

/// What registration asks for.
#[derive(Debug, Clone, Serialize)]
pub struct NewAccount {
    pub email: String,
    /// International form, e.g. `+14155552671`.
    pub phone_number: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
}

/// The account as the node shows it to its owner.
#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    pub id: i64,
    pub email: String,
    pub username: String,
    pub phone_number: String,
    pub first_name: String,
    pub last_name: String,
    pub created_at: String,
    pub updated_at: String,
    /// Whether others may see when this user was last online.
    #[serde(default = "shown")]
    pub show_last_seen: bool,
}

fn shown() -> bool {
    true
}

/// A person's presence (`GET /api/v1/users/<id>/presence/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Presence {
    pub user_id: i64,
    /// `online` or `offline`.
    pub status: String,
    /// Null while online, when never seen, or when hidden.
    pub last_seen: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// The short-lived token every authenticated call sends.
    pub access: String,
    /// Exchanged for a new access token at `/api/v1/auth/refresh/`.
    pub refresh: String,
}

/// A registration's or a login's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub user: Profile,
    pub credentials: Credentials,
}

impl Session {
    pub fn access(&self) -> &str {
        &self.credentials.access
    }
}

/// Another person, as members and lookups show them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Person {
    pub id: i64,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
}

/// A member as a room lists them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    pub id: i64,
    pub username: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Room {
    pub id: i64,
    /// A direct conversation is named after the other person.
    pub name: String,
    pub admin: i64,
    pub members: Vec<Member>,
    pub created_at: String,
    pub updated_at: String,
    /// `group` or `direct`.
    pub kind: String,
    pub member_count: i64,
    /// Members online now (absent from older nodes).
    #[serde(default)]
    pub online_count: i64,
    /// Direct conversations: the other person.
    pub peer: Option<Person>,
}

/// A room in the caller's chat list.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatListEntry {
    #[serde(flatten)]
    pub room: Room,
    pub last_message: Option<Message>,
    pub unread_count: i64,
    pub last_read_id: i64,
}

/// One page of a list; `next` is the path of the next page, if any.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub id: i64,
    /// Empty for a deleted message (a tombstone).
    #[serde(default)]
    pub content: String,
    /// The sender's user id.
    pub sender: i64,
    /// 0 for a tombstone, which does not repeat its room.
    #[serde(default)]
    pub chatroom: i64,
    /// The attachment's URL path (`/media/...`).
    pub attachment: Option<String>,
    pub created_at: String,
    /// The caller's own messages: members who have it delivered.
    pub delivered_count: Option<i64>,
    /// The caller's own messages: members who read it.
    pub read_count: Option<i64>,
    /// The caller's own messages in a direct conversation: `sent`, `delivered` or `read`.
    pub status: Option<String>,
    /// When its sender last edited it.
    pub edited_at: Option<String>,
    /// Deleted for everyone: what history keeps is a tombstone.
    #[serde(default)]
    pub deleted: bool,
    /// Members' reactions, most used first (history only).
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    /// The caller's own reaction (history only).
    #[serde(default)]
    pub my_reaction: Option<String>,
}

/// How many members reacted to a message with one emoji.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    pub count: i64,
}

/// What a reaction change answers (`PUT`/`DELETE .../messages/<id>/reaction/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reactions {
    pub message_id: i64,
    pub reactions: Vec<Reaction>,
    /// The caller's own reaction, if any.
    pub my_reaction: Option<String>,
}

/// A page of a room's event log (`GET .../events/`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventPage {
    /// Each event as its socket frame's `data`, with its `seq`.
    pub events: Vec<serde_json::Value>,
    /// The room's newest position.
    pub last_seq: i64,
    pub has_more: bool,
}

/// Where history reading starts and how much it reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryQuery {
    pub limit: Option<u32>,
    /// Messages older than this id (scrolling up).
    pub before: Option<i64>,
    /// Messages newer than this id (catching up).
    pub after: Option<i64>,
}

impl HistoryQuery {
    pub(crate) fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        if let Some(before) = self.before {
            parts.push(format!("before={before}"));
        }
        if let Some(after) = self.after {
            parts.push(format!("after={after}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// The caller's read position in a room after marking it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ReadPosition {
    pub chat_id: i64,
    pub upto: i64,
    pub unread_count: i64,
}

/// Who has one of the caller's messages delivered and read.
#[derive(Debug, Clone, Deserialize)]
pub struct Receipt {
    pub user_id: i64,
    pub username: String,
    pub delivered_at: Option<String>,
    pub read_at: Option<String>,
}

/// `/readyz`: whether the node serves, and what it reports about itself.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub ready: bool,
    /// The report: `data` when ready, `errors` when not.
    pub report: serde_json::Value,
}

impl Readiness {
    /// The sockets the node has open.
    pub fn sockets(&self) -> Option<u64> {
        self.report["sockets"].as_u64()
    }
}
