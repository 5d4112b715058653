//! Room events: what the transport carries from the node that stored them to every node
//! with sockets in the room, and the WebSocket frame each becomes. The JSON of
//! [`RoomEvent`] is the documented wire format on the broker.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::conversations::{MessageState, ReceiptKind, RoomKind};
use super::{Attachment, Message, ReactionCount, Reactions, ReplyRef};

pub const BOT_SENDER: &str = "WhatsApp MessengerBot";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Message,
    MemberJoined,
    MemberLeft,
    /// The sender edited message `id`: `message` is its new content.
    MessageEdited,
    /// Message `id` was deleted for everyone.
    MessageDeleted,
    /// `user_id` reacted to message `id` with `emoji` (`None`: took their reaction back);
    /// `reactions` are the message's counts after it.
    Reaction,
    /// A member's delivered position moved forward to `upto`.
    Delivered,
    /// A member's read position moved forward to `upto`.
    Read,
    /// An ephemeral signal, never stored: `user_id` is typing (again) in the room.
    TypingStarted,
    /// An ephemeral signal: `user_id` stopped typing.
    TypingStopped,
    /// An ephemeral signal: `user_id` came online (their first socket on any node).
    PresenceOnline,
    /// An ephemeral signal: `user_id` went offline (`last_seen`, unless they hide it).
    PresenceOffline,
    /// An ephemeral signal to a room too big for a `presence` frame per member
    /// (`--presence-room-limit`): `online_count` of its members are online now.
    OnlineCount,
    /// An operator disabled `user_id` (`chatnode admin users disable`): their sockets close.
    MemberDisabled,
    /// An operator revoked every token of `user_id`: their sockets close.
    MemberSignedOut,
    /// An operator deleted the room: every socket in it closes.
    RoomDeleted,
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
    /// A receipt's new position (delivered or read up to this message id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<i64>,
    /// A message of a direct conversation (its sender's frame then carries a `status`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
    /// The `X-Request-Id` of the request that caused the event, so one send can be followed
    /// from node to node in the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// When a user going offline was last seen; `None` when they hide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// The event's position in its room's log (durable events only; assigned at commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// When a message was edited (a `message_edited` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// The message this event is about was deleted since: its content is gone from the log.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The message a new message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyRef>,
    /// How many of the room's members are online (an `online_count` signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_count: Option<i64>,
    /// A `reaction` event's emoji; `None` when the member took theirs back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// A `reaction` event's counts for the message after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactions: Option<Vec<ReactionCount>>,
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
            upto: None,
            direct: false,
            request_id: None,
            last_seen: None,
            seq: None,
            edited_at: m.edited_at.clone(),
            deleted: false,
            reply_to: m.reply_to.clone(),
            online_count: None,
            emoji: None,
            reactions: None,
        }
    }

    /// `m` as edited by its sender at `m.edited_at`.
    pub fn edited(m: &Message) -> Self {
        Self {
            kind: EventKind::MessageEdited,
            file: None,
            edited_at: m.edited_at.clone(),
            reply_to: None,
            ..Self::message(m)
        }
    }

    /// `m` deleted for everyone: nothing of its content.
    pub fn deleted(m: &Message) -> Self {
        Self {
            kind: EventKind::MessageDeleted,
            message: String::new(),
            file: None,
            deleted: true,
            edited_at: None,
            reply_to: None,
            ..Self::message(m)
        }
    }

    /// `user` changed their reaction to message `r.message_id` of `room` to `r.mine`.
    pub fn reaction(room: i64, user: i64, r: &Reactions, at: &str) -> Self {
        Self {
            kind: EventKind::Reaction,
            id: Some(r.message_id),
            emoji: r.mine.clone(),
            reactions: Some(r.counts.clone()),
            ..Self::typing(room, user, "", false, at)
        }
    }

    /// This logged event with nothing left of its message's content, once the message was
    /// deleted: what a replay serves from then on (its reactions went with it).
    pub fn redacted(mut self) -> Self {
        self.message.clear();
        self.file = None;
        self.deleted = true;
        self.emoji = None;
        if self.reactions.is_some() {
            self.reactions = Some(Vec::new());
        }
        self
    }

    /// This logged event without the excerpt of the message it answers, once that message
    /// was deleted.
    pub fn without_excerpt(mut self) -> Self {
        if let Some(reply) = &mut self.reply_to {
            reply.excerpt = None;
        }
        self
    }

    /// Whether the event is about one message (its `id`): the log redacts it with the
    /// message.
    pub fn is_about_message(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Message
                | EventKind::MessageEdited
                | EventKind::MessageDeleted
                | EventKind::Reaction
        )
    }

    /// A message of a room of `kind`.
    pub fn message_in(m: &Message, kind: RoomKind) -> Self {
        Self {
            direct: kind == RoomKind::Direct,
            ..Self::message(m)
        }
    }

    /// `user`'s position of `kind` moved forward to `upto`.
    pub fn receipt(room: i64, user: i64, kind: ReceiptKind, upto: i64, at: &str) -> Self {
        Self {
            kind: match kind {
                ReceiptKind::Delivered => EventKind::Delivered,
                ReceiptKind::Read => EventKind::Read,
            },
            chat_id: room,
            id: None,
            message: String::new(),
            sender: String::new(),
            sender_id: None,
            user_id: Some(user),
            file: None,
            created_at: at.to_string(),
            upto: Some(upto),
            direct: false,
            request_id: None,
            last_seen: None,
            seq: None,
            edited_at: None,
            deleted: false,
            reply_to: None,
            online_count: None,
            emoji: None,
            reactions: None,
        }
    }

    /// A change to the room that its log keeps, with a `seq`, for replay: messages, joins,
    /// leaves and receipts (not signals, nor an operator's closing of sockets).
    pub fn is_logged(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Message
                | EventKind::MessageEdited
                | EventKind::MessageDeleted
                | EventKind::Reaction
                | EventKind::MemberJoined
                | EventKind::MemberLeft
                | EventKind::Delivered
                | EventKind::Read
        )
    }

    pub fn is_receipt(&self) -> bool {
        matches!(self.kind, EventKind::Delivered | EventKind::Read)
    }

    /// `user` (called `username`) started (`true`) or stopped typing in `room`.
    pub fn typing(room: i64, user: i64, username: &str, started: bool, at: &str) -> Self {
        Self {
            kind: if started {
                EventKind::TypingStarted
            } else {
                EventKind::TypingStopped
            },
            chat_id: room,
            id: None,
            message: String::new(),
            sender: username.to_string(),
            sender_id: None,
            user_id: Some(user),
            file: None,
            created_at: at.to_string(),
            upto: None,
            direct: false,
            request_id: None,
            last_seen: None,
            seq: None,
            edited_at: None,
            deleted: false,
            reply_to: None,
            online_count: None,
            emoji: None,
            reactions: None,
        }
    }

    /// `user` came online (`last_seen` none) or went offline in the eyes of `room`'s members.
    pub fn presence(
        room: i64,
        user: i64,
        online: bool,
        last_seen: Option<String>,
        at: &str,
    ) -> Self {
        Self {
            kind: if online {
                EventKind::PresenceOnline
            } else {
                EventKind::PresenceOffline
            },
            last_seen,
            ..Self::typing(room, user, "", false, at)
        }
    }

    /// `count` members of `room` are online, for a room too big to hear of each of them.
    pub fn online_count(room: i64, count: i64, at: &str) -> Self {
        Self {
            kind: EventKind::OnlineCount,
            user_id: None,
            online_count: Some(count),
            ..Self::typing(room, 0, "", false, at)
        }
    }

    /// An ephemeral signal (typing, presence): carried best-effort, never stored or replayed.
    pub fn is_signal(&self) -> bool {
        matches!(
            self.kind,
            EventKind::TypingStarted
                | EventKind::TypingStopped
                | EventKind::PresenceOnline
                | EventKind::PresenceOffline
                | EventKind::OnlineCount
        )
    }

    pub fn is_presence(&self) -> bool {
        matches!(
            self.kind,
            EventKind::PresenceOnline | EventKind::PresenceOffline
        )
    }

    /// A presence signal's frame; `redacted` leaves `last_seen` out (for a viewer who hides
    /// their own, as WhatsApp does).
    pub fn presence_frame(&self, redacted: bool) -> String {
        let online = self.kind == EventKind::PresenceOnline;
        json!({
            "data": {
                "purpose": "presence",
                "chat_id": self.chat_id,
                "user_id": self.user_id,
                "status": if online { "online" } else { "offline" },
                "last_seen": if redacted { None } else { self.last_seen.as_deref() },
            }
        })
        .to_string()
    }

    /// An operator's change that closes sockets: of `user` in `room`, or of the whole room.
    pub fn closing(kind: EventKind, room: i64, user: Option<i64>, at: &str) -> Self {
        Self {
            user_id: user,
            ..Self::notice(kind, room, 0, String::new(), at)
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
            upto: None,
            direct: false,
            request_id: None,
            last_seen: None,
            seq: None,
            edited_at: None,
            deleted: false,
            reply_to: None,
            online_count: None,
            emoji: None,
            reactions: None,
        }
    }

    /// This event as the outbox stores it: with the id of the request being served, if any.
    pub fn stamped(&self) -> std::borrow::Cow<'_, Self> {
        match super::request_id::RequestId::current() {
            Some(id) if self.request_id.is_none() => std::borrow::Cow::Owned(Self {
                request_id: Some(id.to_string()),
                ..self.clone()
            }),
            _ => std::borrow::Cow::Borrowed(self),
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

    /// The WebSocket frame: the original's `{"data": {...}}` plus ids and the file; a
    /// receipt's is `{"data": {"purpose": "receipt", ...}}`.
    pub fn frame_json(&self) -> String {
        self.frame(None)
    }

    /// The frame its sender's sockets get: a message as every member gets it, plus how far it
    /// got (`state`; a live message has reached no one yet).
    pub fn frame_for_sender(&self, state: MessageState) -> String {
        self.frame(Some(state))
    }

    fn frame(&self, state: Option<MessageState>) -> String {
        if self.is_presence() {
            return self.presence_frame(false);
        }
        if self.kind == EventKind::OnlineCount {
            return json!({
                "data": {
                    "purpose": "online_count",
                    "chat_id": self.chat_id,
                    "online_count": self.online_count,
                }
            })
            .to_string();
        }
        if self.is_signal() {
            let started = self.kind == EventKind::TypingStarted;
            return json!({
                "data": {
                    "purpose": "typing",
                    "chat_id": self.chat_id,
                    "user_id": self.user_id,
                    "username": self.sender,
                    "state": if started { "start" } else { "stop" },
                }
            })
            .to_string();
        }
        json!({ "data": self.frame_data(state) }).to_string()
    }

    /// A durable event's frame data (what `frame` wraps in `{"data": ...}`), also one entry
    /// of a page of the room's log.
    pub fn frame_data(&self, state: Option<MessageState>) -> Value {
        let mut data = match self.kind {
            _ if self.is_receipt() => json!({
                "purpose": "receipt",
                "event": self.kind,
                "chat_id": self.chat_id,
                "user_id": self.user_id,
                "upto": self.upto,
            }),
            EventKind::MessageEdited => json!({
                "purpose": "message_edited",
                "chat_id": self.chat_id,
                "id": self.id,
                "message": self.message,
                "sender_id": self.sender_id,
                "edited_at": self.edited_at,
            }),
            EventKind::MessageDeleted => json!({
                "purpose": "message_deleted",
                "chat_id": self.chat_id,
                "id": self.id,
                "sender": self.sender,
                "sender_id": self.sender_id,
                "created_at": self.created_at,
            }),
            EventKind::Reaction => json!({
                "purpose": "reaction",
                "chat_id": self.chat_id,
                "message_id": self.id,
                "user_id": self.user_id,
                "emoji": self.emoji,
                "reactions": self.reactions.as_deref().unwrap_or_default(),
                "created_at": self.created_at,
            }),
            _ => self.message_data(),
        };
        if let Value::Object(fields) = &mut data {
            if let Some(seq) = self.seq {
                fields.insert("seq".into(), seq.into());
            }
            if self.deleted {
                fields.insert("deleted".into(), true.into());
            }
            if let (EventKind::Message, Some(edited)) = (self.kind, &self.edited_at) {
                fields.insert("edited_at".into(), edited.as_str().into());
            }
            if let (EventKind::Message, Some(reply)) = (self.kind, &self.reply_to) {
                fields.insert("reply_to".into(), json!(reply));
            }
            if let Some(state) = state.filter(|_| self.kind == EventKind::Message) {
                fields.insert("delivered_count".into(), state.delivered_count.into());
                fields.insert("read_count".into(), state.read_count.into());
                if let Some(status) = state.status {
                    fields.insert("status".into(), status.into());
                }
            }
        }
        data
    }

    fn message_data(&self) -> Value {
        json!({
            "purpose": "new_chat_message",
            "event": self.kind,
            "message": self.message,
            "sender": self.sender,
            "id": self.id,
            "chat_id": self.chat_id,
            "sender_id": self.sender_id,
            "file": self.file,
            "created_at": self.created_at,
        })
    }

    /// A live message's state for its sender: delivered to and read by no one yet.
    pub fn fresh_state(&self) -> MessageState {
        MessageState {
            delivered_count: 0,
            read_count: 0,
            status: self.direct.then_some("sent"),
        }
    }
}
