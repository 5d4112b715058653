//! Property tests through a real node, where the interesting input is a sequence against
//! stored state rather than bytes a fuzzer could mutate (the parsers themselves are fuzzed
//! with cargo-fuzz, see `fuzz/`): history paging against a model of the room, and arbitrary
//! client frames over a real socket.

use chatnode_client::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::helpers::{spawn, WsClient};

const MESSAGES: usize = 30;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        // Failures are reported with the shrunk input; nothing is persisted in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// A paging bound: near the room's ids, or anywhere in i64.
fn bound(ids: &[i64]) -> impl Strategy<Value = Option<i64>> {
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    prop_oneof![
        Just(None),
        (first - 2..=last + 2).prop_map(Some),
        any::<i64>().prop_map(Some),
        Just(Some(i64::MIN)),
        Just(Some(i64::MAX)),
    ]
}

/// What `GET .../messages/` answers for these parameters, from the ids in the room.
fn expected(
    ids: &[i64],
    limit: Option<u32>,
    before: Option<i64>,
    after: Option<i64>,
) -> Option<Vec<i64>> {
    let limit = match limit {
        Some(0) => return None,
        Some(limit) => limit.min(200) as usize,
        None => 50,
    };
    let below = ids
        .iter()
        .copied()
        .filter(|id| before.is_none_or(|b| *id < b));
    Some(match after {
        Some(after) => below.filter(|id| *id > after).take(limit).collect(),
        None => {
            let below: Vec<i64> = below.collect();
            below[below.len().saturating_sub(limit)..].to_vec()
        }
    })
}

#[test]
fn history_pages_follow_the_model() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (node, alice, room, ids) = runtime.block_on(async {
        let node = spawn().await;
        let alice = node.register("alice").await;
        let room = node.create_room(&alice, "paging", &[]).await;
        let mut ids = Vec::new();
        for n in 0..MESSAGES {
            let message = node.send_message(&alice, room, &format!("m{n}")).await;
            ids.push(message["id"].as_i64().unwrap());
        }
        (node, alice, room, ids)
    });
    let limits = prop_oneof![
        Just(None),
        (0u32..=210).prop_map(Some),
        any::<u32>().prop_map(Some)
    ];
    let strategy = (limits, bound(&ids), bound(&ids));
    runner(128)
        .run(&strategy, |(limit, before, after)| {
            let mut query = Vec::new();
            if let Some(limit) = limit {
                query.push(format!("limit={limit}"));
            }
            if let Some(before) = before {
                query.push(format!("before={before}"));
            }
            if let Some(after) = after {
                query.push(format!("after={after}"));
            }
            let path = format!(
                "/api/v1/chat/chatrooms/{room}/messages/?{}",
                query.join("&")
            );
            let (status, body) = runtime.block_on(node.get(&path, Some(&alice.access)));
            match expected(&ids, limit, before, after) {
                None => prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{} {}", path, body),
                Some(want) => {
                    prop_assert_eq!(status, StatusCode::OK, "{} {}", path, body);
                    let got: Vec<i64> = body["data"]["detail"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m["id"].as_i64().unwrap())
                        .collect();
                    prop_assert_eq!(got, want, "{}", path);
                }
            }
            Ok(())
        })
        .unwrap();
    runtime.block_on(node.stop());
}

/// A client frame: well-formed sends and catch-ups, and everything that is not.
fn frame() -> impl Strategy<Value = String> {
    let text = any::<String>();
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
    ];
    let purpose = prop_oneof![
        Just(json!("send_chat_message")),
        Just(json!("catch_up")),
        value.clone(),
    ];
    prop_oneof![
        "[a-z ]{1,40}"
            .prop_map(|m| json!({"purpose": "send_chat_message", "message": m}).to_string()),
        (0i64..1000).prop_map(|since| json!({"purpose": "catch_up", "since": since}).to_string()),
        (purpose, value.clone(), value).prop_map(|(purpose, message, since)| {
            json!({"purpose": purpose, "message": message, "since": since}).to_string()
        }),
        text,
    ]
}

/// Reads frames until the message `marker` arrives; returns what came before it.
async fn frames_until(ws: &mut WsClient, marker: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let frame = ws.next_json().await;
        if frame["data"]["message"] == marker {
            return seen;
        }
        seen.push(frame);
    }
}

async fn socket_case(ws: &mut WsClient, case: usize, text: &str) -> Result<(), TestCaseError> {
    // The socket handles frames in order: once the marker sent after `text` comes back,
    // every answer to `text` has arrived.
    ws.send_text(text).await;
    let marker = format!("marker {case}");
    ws.send_json(json!({"purpose": "send_chat_message", "message": marker}))
        .await;
    let answers = frames_until(ws, &marker).await;
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let purpose = parsed.as_ref().and_then(|p| p["purpose"].as_str());
    let message = parsed.as_ref().and_then(|p| p["message"].as_str());
    let since = parsed.as_ref().and_then(|p| p["since"].as_i64());
    let errors = answers.iter().filter(|a| a["success"] == false).count();
    match (purpose, message, since) {
        (Some("send_chat_message"), Some(message), _) if !message.trim().is_empty() => {
            prop_assert_eq!(errors, 0, "{:?}: {:?}", text, answers);
            prop_assert!(
                answers.iter().any(|a| a["data"]["message"] == message),
                "{:?} was not broadcast: {:?}",
                text,
                answers
            );
        }
        (Some("catch_up"), _, Some(since)) if since >= 0 => {
            prop_assert_eq!(errors, 0, "{:?}: {:?}", text, answers);
            prop_assert!(answers
                .iter()
                .all(|a| a["data"]["id"].as_i64() > Some(since)));
        }
        _ => {
            prop_assert_eq!(answers.len(), 1, "{:?}: {:?}", text, answers);
            prop_assert_eq!(errors, 1, "{:?}: {:?}", text, answers);
            prop_assert!(answers[0]["errors"]["detail"].is_string());
        }
    }
    Ok(())
}

#[test]
fn every_client_frame_is_answered_and_the_socket_stays_open() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (node, alice, room) = runtime.block_on(async {
        let node = spawn().await;
        let alice = node.register("alice").await;
        let room = node.create_room(&alice, "frames", &[]).await;
        (node, alice, room)
    });
    // The runner takes a `Fn`: the socket and the case counter live in cells.
    let ws = std::cell::RefCell::new(runtime.block_on(node.ws(room, &alice)));
    let case = std::cell::Cell::new(0);
    runner(64)
        .run(&frame(), |text| {
            case.set(case.get() + 1);
            runtime.block_on(socket_case(&mut ws.borrow_mut(), case.get(), &text))
        })
        .unwrap();
    runtime.block_on(node.stop());
}
