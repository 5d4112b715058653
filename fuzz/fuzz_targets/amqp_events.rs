//! What arrives from the broker: a room event's JSON body (any AMQP client may publish on
//! the exchange) and the first bytes of an AMQP 1.0 connection (the broker's `open` frame,
//! read for its version). Decoding never panics; an event survives encode/decode unchanged
//! and becomes a WebSocket frame carrying the same fields.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use chatnode::domain::events::{EventKind, RoomEvent};
use chatnode::domain::ReactionCount;
use chatnode::transport::amqp::v10::broker_version;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

#[derive(Arbitrary, Debug)]
struct Event {
    kind: u8,
    chat_id: i64,
    id: Option<i64>,
    message: String,
    sender: String,
    sender_id: Option<i64>,
    user_id: Option<i64>,
    file: Option<String>,
    created_at: String,
    upto: Option<i64>,
    direct: bool,
    request_id: Option<String>,
    last_seen: Option<String>,
    seq: Option<i64>,
    edited_at: Option<String>,
    deleted: bool,
    online_count: Option<i64>,
    emoji: Option<String>,
    reactions: Option<Vec<(String, i64)>>,
}

// The first byte picks what the rest is: a message body as anyone may publish it (seeds are
// plain JSON), an event as this node builds it, or the bytes a broker sends first on an
// AMQP 1.0 connection.
fuzz_target!(|data: &[u8]| {
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(event) = RoomEvent::decode(rest) {
                round_trips(&event);
            }
        }
        1 => {
            let Ok(e) = Event::arbitrary_take_rest(Unstructured::new(rest)) else {
                return;
            };
            let kinds = [
                EventKind::Message,
                EventKind::MessageEdited,
                EventKind::MessageDeleted,
                EventKind::Reaction,
                EventKind::MemberJoined,
                EventKind::MemberLeft,
                EventKind::Delivered,
                EventKind::Read,
                EventKind::TypingStarted,
                EventKind::TypingStopped,
                EventKind::PresenceOnline,
                EventKind::PresenceOffline,
                EventKind::OnlineCount,
                EventKind::MemberDisabled,
                EventKind::MemberSignedOut,
                EventKind::RoomDeleted,
            ];
            round_trips(&RoomEvent {
                kind: kinds[usize::from(e.kind) % kinds.len()],
                chat_id: e.chat_id,
                id: e.id,
                message: e.message,
                sender: e.sender,
                sender_id: e.sender_id,
                user_id: e.user_id,
                file: e.file,
                created_at: e.created_at,
                upto: e.upto,
                direct: e.direct,
                request_id: e.request_id,
                last_seen: e.last_seen,
                seq: e.seq,
                edited_at: e.edited_at,
                deleted: e.deleted,
                reply_to: None,
                online_count: e.online_count,
                emoji: e.emoji,
                reactions: e.reactions.map(|counts| {
                    counts
                        .into_iter()
                        .map(|(emoji, count)| ReactionCount { emoji, count })
                        .collect()
                }),
            });
        }
        _ => {
            let _ = broker_version(rest);
        }
    }
});

fn round_trips(event: &RoomEvent) {
    let decoded = RoomEvent::decode(&event.encode()).expect("an encoded event decodes");
    assert_eq!(&decoded, event);
    let frame: Value = serde_json::from_str(&event.frame_json()).expect("the frame is JSON");
    let data = &frame["data"];
    assert_eq!(data["chat_id"], event.chat_id);
    if event.is_presence() {
        let online = event.kind == EventKind::PresenceOnline;
        assert_eq!(data["purpose"], "presence");
        assert_eq!(data["user_id"], json!(event.user_id));
        assert_eq!(data["status"], if online { "online" } else { "offline" });
        assert_eq!(data["last_seen"], json!(event.last_seen));
        return;
    }
    if event.kind == EventKind::OnlineCount {
        assert_eq!(data["purpose"], "online_count");
        assert_eq!(data["online_count"], json!(event.online_count));
        return;
    }
    if event.is_signal() {
        let state = if event.kind == EventKind::TypingStarted {
            "start"
        } else {
            "stop"
        };
        assert_eq!(data["purpose"], "typing");
        assert_eq!(data["user_id"], json!(event.user_id));
        assert_eq!(data["username"], event.sender.as_str());
        assert_eq!(data["state"], state);
        return;
    }
    assert_eq!(data["seq"], json!(event.seq));
    assert_eq!(
        data["deleted"],
        if event.deleted {
            json!(true)
        } else {
            Value::Null
        }
    );
    if event.kind == EventKind::Reaction {
        assert_eq!(data["purpose"], "reaction");
        assert_eq!(data["message_id"], json!(event.id));
        assert_eq!(data["user_id"], json!(event.user_id));
        assert_eq!(data["emoji"], json!(event.emoji));
        assert_eq!(data["reactions"], json!(event.reactions.clone().unwrap_or_default()));
        return;
    }
    if matches!(
        event.kind,
        EventKind::MessageEdited | EventKind::MessageDeleted
    ) {
        let edited = event.kind == EventKind::MessageEdited;
        let purpose = if edited {
            "message_edited"
        } else {
            "message_deleted"
        };
        assert_eq!(data["purpose"], purpose);
        assert_eq!(data["id"], json!(event.id));
        if edited {
            assert_eq!(data["message"], event.message.as_str());
            assert_eq!(data["edited_at"], json!(event.edited_at));
        }
        return;
    }
    assert_eq!(data["event"], json!(event.kind));
    if event.is_receipt() {
        assert_eq!(data["purpose"], "receipt");
        assert_eq!(data["user_id"], json!(event.user_id));
        assert_eq!(data["upto"], json!(event.upto));
        return;
    }
    assert_eq!(data["purpose"], "new_chat_message");
    assert_eq!(data["message"], event.message.as_str());
    assert_eq!(data["sender"], event.sender.as_str());
    assert_eq!(data["id"], json!(event.id));
    assert_eq!(data["sender_id"], json!(event.sender_id));
    assert_eq!(data["file"], json!(event.file));
    assert_eq!(data["created_at"], event.created_at.as_str());
}
