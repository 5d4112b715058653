//! A WebSocket client's text frame: parsed into a request, or answered with an error frame
//! (and the socket stays open). Checked against an independent reading of the grammar in
//! the README: `{"purpose": "send_chat_message", "message": <text>}` or
//! `{"purpose": "catch_up", "since": <id >= 0>}` or `{"purpose": "mark_read", "upto": <id >= 0>}`
//! or `{"purpose": "typing"}` / `{"purpose": "typing_stop"}` or `{"purpose": "react", "id":
//! <id > 0>, "emoji": <text or null>}`.
#![no_main]

use chatnode::domain::values::{Content, MAX_CONTENT_CHARS};
use chatnode::http::ws::{ClientRequest, Start};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // tungstenite hands over only valid UTF-8 as a text frame.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match (ClientRequest::parse(text), expected(text)) {
        (Ok(request), Some(expected)) => assert_eq!(request, expected),
        (Err(answer), None) => {
            let answer: Value = serde_json::from_str(answer.to_text().expect("a text frame"))
                .expect("the error frame is JSON");
            assert_eq!(answer["success"], false, "{answer}");
            let detail = answer["errors"]["detail"].as_str().expect("a detail");
            assert!(!detail.is_empty());
        }
        (got, expected) => panic!("{text:?}: parsed as {got:?}, expected {expected:?}"),
    }
});

fn expected(text: &str) -> Option<ClientRequest> {
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    match frame.get("purpose")?.as_str()? {
        "send_chat_message" => {
            let message = frame.get("message")?.as_str()?;
            let fits = !message.trim().is_empty() && message.chars().count() <= MAX_CONTENT_CHARS;
            // Text of only invisible characters is blank too (Content's rule, which the
            // json_bodies target checks against is_blank).
            // A null reply_to is an absent one; any other must be an integer.
            let reply_to = match frame.get("reply_to").filter(|v| !v.is_null()) {
                None => None,
                Some(id) => Some(id.as_i64()?),
            };
            fits.then(|| Content::parse(message.to_string(), false).ok())?
                .map(|content| ClientRequest::Send { content, reply_to })
        }
        "catch_up" => {
            // A null field is an absent one; exactly one of the two, a non-negative integer.
            let field = |name| frame.get(name).filter(|v: &&Value| !v.is_null());
            match (field("since"), field("after_seq")) {
                (Some(since), None) => since
                    .as_i64()
                    .filter(|&n| n >= 0)
                    .map(|n| ClientRequest::CatchUp(Start::Since(n))),
                (None, Some(seq)) => seq
                    .as_i64()
                    .filter(|&n| n >= 0)
                    .map(|n| ClientRequest::CatchUp(Start::AfterSeq(n))),
                _ => None,
            }
        }
        "edit_message" => {
            let id = frame.get("id")?.as_i64().filter(|&id| id > 0)?;
            let content = frame.get("message")?.as_str()?.to_string();
            Some(ClientRequest::Edit { id, content })
        }
        "delete_message" => {
            let id = frame.get("id")?.as_i64().filter(|&id| id > 0)?;
            Some(ClientRequest::Delete(id))
        }
        "react" => {
            let id = frame.get("id")?.as_i64().filter(|&id| id > 0)?;
            // A null or absent emoji takes the reaction back; any other must be text.
            let emoji = match frame.get("emoji").filter(|v| !v.is_null()) {
                None => None,
                Some(emoji) => Some(emoji.as_str()?.to_string()),
            };
            Some(ClientRequest::React { id, emoji })
        }
        "typing" => Some(ClientRequest::Typing(true)),
        "typing_stop" => Some(ClientRequest::Typing(false)),
        "mark_read" => {
            let upto = frame.get("upto")?.as_i64()?;
            (upto >= 0).then_some(ClientRequest::MarkRead(upto))
        }
        _ => None,
    }
}
