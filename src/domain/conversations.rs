//! Conversations: the kinds of room, the chat list and its cursor, looking people up, and
//! the delivered/read positions behind receipts.

use serde::{Deserialize, Serialize};

use super::{Message, Room};

/// A group anyone may be added to, or a direct conversation of exactly two people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    Group,
    Direct,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Direct => "direct",
        }
    }

    /// The stored name; anything but `direct` is a group, as every room was before kinds.
    pub fn from_stored(kind: &str) -> Self {
        if kind == "direct" {
            Self::Direct
        } else {
            Self::Group
        }
    }
}

/// The key that makes one direct conversation per pair of users.
pub fn direct_key(a: i64, b: i64) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

/// Where a chat-list page starts: after the room with this activity and id (the list runs
/// newest activity first, ties by id, largest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub activity: i64,
    pub room: i64,
}

impl ListCursor {
    /// The cursor a client sends back: `<activity>.<room id>`, as the list's `next` gave it.
    pub fn parse(raw: &str) -> Option<Self> {
        let (activity, room) = raw.trim().split_once('.')?;
        Some(Self {
            activity: activity.parse().ok()?,
            room: room.parse().ok()?,
        })
    }

    pub fn encode(&self) -> String {
        format!("{}.{}", self.activity, self.room)
    }
}

/// One page of a user's chat list.
#[derive(Debug, Clone, Copy)]
pub struct ListPage {
    pub limit: u32,
    pub after: Option<ListCursor>,
}

/// Members a chat-list entry inlines; the rest are paged at `.../members/`.
pub const INLINE_MEMBERS: usize = 10;

/// A chat-list entry: the room (with at most [`INLINE_MEMBERS`] members) and the caller's
/// view of it.
#[derive(Debug, Clone)]
pub struct RoomSummary {
    pub room: Room,
    pub last_message: Option<Message>,
    pub unread_count: i64,
    pub last_read_id: i64,
    pub activity: i64,
}

/// One page of a room's members, by user id.
#[derive(Debug, Clone, Copy)]
pub struct MemberPage {
    pub limit: u32,
    /// Only members with a larger user id.
    pub after: Option<i64>,
}

/// How a person is looked up: exactly, never by prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserLookup {
    /// Compared without regard to letter case, as registration does.
    Email(String),
    /// In the international format registration stores.
    Phone(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    Delivered,
    Read,
}

impl ReceiptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }
}

/// A request to move a member's position forward to `upto` (never back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptMark {
    pub room: i64,
    pub user: i64,
    pub kind: ReceiptKind,
    pub upto: i64,
}

/// A member's positions in a room: the newest message id delivered to them and read by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Position {
    pub user_id: i64,
    pub delivered_upto: i64,
    pub read_upto: i64,
}

/// A room's kind with every member's positions.
#[derive(Debug, Clone)]
pub struct RoomPositions {
    pub kind: RoomKind,
    pub positions: Vec<Position>,
}

/// How far one message got with its sender's room-mates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MessageState {
    pub delivered_count: i64,
    pub read_count: i64,
    /// Direct rooms only: `sent`, `delivered` or `read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

impl RoomPositions {
    /// The state of a message `id` sent by `sender`, from the other members' positions.
    pub fn state_of(&self, id: i64, sender: i64) -> MessageState {
        let others = || self.positions.iter().filter(|p| p.user_id != sender);
        let delivered_count = others().filter(|p| p.delivered_upto >= id).count() as i64;
        let read_count = others().filter(|p| p.read_upto >= id).count() as i64;
        let status = (self.kind == RoomKind::Direct).then_some(if read_count > 0 {
            "read"
        } else if delivered_count > 0 {
            "delivered"
        } else {
            "sent"
        });
        MessageState {
            delivered_count,
            read_count,
            status,
        }
    }
}

/// When one member got and read a message (`None`: not yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MessageReceipt {
    pub user_id: i64,
    pub username: String,
    pub delivered_at: Option<String>,
    pub read_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cursors_round_trip_and_refuse_garbage() {
        let cursor = ListCursor {
            activity: 1_733_000_000_123_456,
            room: 42,
        };
        assert_eq!(ListCursor::parse(&cursor.encode()), Some(cursor));
        for bad in ["", "12", "a.b", "1.2.3", ".4", "5."] {
            assert_eq!(ListCursor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_message_state_counts_only_the_other_members() {
        let positions = RoomPositions {
            kind: RoomKind::Direct,
            positions: vec![
                Position {
                    user_id: 1,
                    delivered_upto: 9,
                    read_upto: 9,
                },
                Position {
                    user_id: 2,
                    delivered_upto: 7,
                    read_upto: 5,
                },
            ],
        };
        let sent = |id| positions.state_of(id, 1).status;
        assert_eq!(sent(5), Some("read"));
        assert_eq!(sent(6), Some("delivered"));
        assert_eq!(sent(8), Some("sent"));
        assert_eq!(positions.state_of(6, 1).delivered_count, 1);
        assert_eq!(positions.state_of(6, 1).read_count, 0);
    }
}
