//! The frames a client sends over its socket, and the error frame that answers a bad one.

use serde::Deserialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::domain::values::Content;
use crate::http::{check_json_depth, failure};

pub(super) fn error_frame(detail: impl Into<String>) -> Frame {
    let detail: String = detail.into();
    Frame::Text(failure(json!({ "detail": detail })).to_string().into())
}

/// Where a replay starts: after a message id (`since`: new messages only) or after a
/// position in the room's event log (`after_seq`: every change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Since(i64),
    AfterSeq(i64),
}

impl Start {
    /// The start a client asked for with `since` or `after_seq` (at most one of them); `None`
    /// for neither.
    pub fn parse(since: Option<i64>, after_seq: Option<i64>) -> Result<Option<Self>, String> {
        match (since, after_seq) {
            (Some(_), Some(_)) => Err("Give \"since\" or \"after_seq\", not both".into()),
            (Some(since), None) if since >= 0 => Ok(Some(Self::Since(since))),
            (None, Some(seq)) if seq >= 0 => Ok(Some(Self::AfterSeq(seq))),
            (None, None) => Ok(None),
            _ => Err("\"since\" and \"after_seq\" must be non-negative integers".into()),
        }
    }
}

/// The message an edit or delete frame names: a positive integer `id`.
fn message_id(frame: &ClientFrame) -> Result<i64, Frame> {
    frame
        .id
        .as_ref()
        .and_then(Value::as_i64)
        .filter(|id| *id > 0)
        .ok_or_else(|| error_frame("\"id\" must be a message id (a positive integer)"))
}

/// A `catch_up` frame's start: exactly one of `since` and `after_seq`, each an integer.
fn catch_up(frame: &ClientFrame) -> Result<Start, Frame> {
    let number = |field: &Option<Value>, name: &str| match field {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| error_frame(format!("\"{name}\" must be a non-negative integer"))),
    };
    let since = number(&frame.since, "since")?;
    let after_seq = number(&frame.after_seq, "after_seq")?;
    match Start::parse(since, after_seq).map_err(error_frame)? {
        Some(start) => Ok(start),
        None => Err(error_frame(
            "\"since\" (a message id) or \"after_seq\" (a position in the room's log) is required",
        )),
    }
}

/// What a client may ask over its socket.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// `{"purpose": "send_chat_message", "message": "...", "reply_to"?: <message id>}`
    Send {
        content: Content,
        reply_to: Option<i64>,
    },
    /// `{"purpose": "catch_up", "since": <message id>}` or `{"purpose": "catch_up",
    /// "after_seq": <seq>}`
    CatchUp(Start),
    /// `{"purpose": "mark_read", "upto": <message id>}`
    MarkRead(i64),
    /// `{"purpose": "edit_message", "id": <message id>, "message": "..."}`
    Edit { id: i64, content: String },
    /// `{"purpose": "delete_message", "id": <message id>}`
    Delete(i64),
    /// `{"purpose": "react", "id": <message id>, "emoji": "..."}`; `"emoji": null` (or none)
    /// takes the reaction back. The emoji is validated where REST's is.
    React { id: i64, emoji: Option<String> },
    /// `{"purpose": "typing"}` (repeated every 3 s while the user types) and
    /// `{"purpose": "typing_stop"}`: `Typing(true)` and `Typing(false)`.
    Typing(bool),
}

#[derive(Deserialize)]
struct ClientFrame {
    purpose: Option<Value>,
    message: Option<Value>,
    since: Option<Value>,
    after_seq: Option<Value>,
    id: Option<Value>,
    reply_to: Option<Value>,
    upto: Option<Value>,
    emoji: Option<Value>,
}

impl ClientRequest {
    /// The request, or the error frame to answer it with.
    pub fn parse(text: &str) -> Result<Self, Frame> {
        check_json_depth(text.as_bytes())
            .map_err(|e| error_frame(e.errors()["detail"].as_str().unwrap_or_default()))?;
        let frame: ClientFrame = match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => serde_json::from_value(value)
                .map_err(|e| error_frame(format!("Invalid frame: {e}")))?,
            Ok(_) => return Err(error_frame("A frame must be a JSON object")),
            Err(e) => return Err(error_frame(format!("Frame is not valid JSON: {e}"))),
        };
        match frame.purpose.as_ref().and_then(Value::as_str) {
            Some("send_chat_message") => {
                let reply_to = match &frame.reply_to {
                    None => None,
                    Some(id) => Some(id.as_i64().ok_or_else(|| {
                        error_frame("\"reply_to\" must be a message id (an integer)")
                    })?),
                };
                match frame.message {
                    Some(Value::String(content)) => Content::parse(content, false)
                        .map(|content| Self::Send { content, reply_to })
                        .map_err(|e| error_frame(e.to_string())),
                    _ => Err(error_frame("\"message\" must be a string")),
                }
            }
            Some("catch_up") => catch_up(&frame).map(Self::CatchUp),
            Some("mark_read") => match frame.upto.as_ref().and_then(Value::as_i64) {
                Some(upto) if upto >= 0 => Ok(Self::MarkRead(upto)),
                _ => Err(error_frame(
                    "\"upto\" must be a message id (a non-negative integer)",
                )),
            },
            Some("edit_message") => match (message_id(&frame)?, frame.message) {
                (id, Some(Value::String(content))) => Ok(Self::Edit { id, content }),
                _ => Err(error_frame("\"message\" must be a string")),
            },
            Some("delete_message") => message_id(&frame).map(Self::Delete),
            Some("react") => match (message_id(&frame)?, frame.emoji) {
                (id, Some(Value::String(emoji))) => Ok(Self::React {
                    id,
                    emoji: Some(emoji),
                }),
                (id, None) => Ok(Self::React { id, emoji: None }),
                _ => Err(error_frame("\"emoji\" must be a string or null")),
            },
            Some("typing") => Ok(Self::Typing(true)),
            Some("typing_stop") => Ok(Self::Typing(false)),
            Some(other) => Err(error_frame(format!("Unknown purpose: {other}"))),
            None => Err(error_frame(
                "Missing \"purpose\": expected \"send_chat_message\", \"catch_up\", \"mark_read\", \"edit_message\", \"delete_message\", \"react\", \"typing\" or \"typing_stop\"",
            )),
        }
    }
}
