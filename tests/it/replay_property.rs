//! The replay property: for random interleavings of sends, edits and deletes, a socket that
//! joins late with `?after_seq=k` (any `k`), starting from the state the live socket had at
//! `k`, ends in the live socket's state, and both agree with the history.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::Value;

use crate::helpers::{spawn, TestNode, TestUser, WsClient};

#[derive(Debug, Clone)]
enum Op {
    Send(String),
    /// Edit the n-th message sent so far (modulo their number).
    Edit(usize, String),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => "[a-z]{1,12}".prop_map(Op::Send),
        2 => (any::<usize>(), "[a-z]{1,12}").prop_map(|(n, text)| Op::Edit(n, text)),
        1 => any::<usize>().prop_map(Op::Delete),
    ]
}

/// A room as a client holds it: message id to its content, `None` once deleted.
type State = BTreeMap<i64, Option<String>>;

/// Applies one frame's `data` to `state`.
fn apply(state: &mut State, data: &Value) {
    let Some(id) = data["id"].as_i64() else {
        return;
    };
    let deleted = data["deleted"] == true;
    match data["purpose"].as_str() {
        Some("new_chat_message") | Some("message_edited") => {
            let content = data["message"].as_str().unwrap_or_default().to_string();
            state.insert(id, (!deleted).then_some(content));
        }
        Some("message_deleted") => {
            state.insert(id, None);
        }
        _ => {}
    }
}

fn state_of<'a>(frames: impl IntoIterator<Item = &'a (i64, Value)>) -> State {
    let mut state = State::new();
    for (_, data) in frames {
        apply(&mut state, data);
    }
    state
}

/// Frames with a position, in arrival order, until `last` has arrived.
async fn positioned(ws: &mut WsClient, last: i64) -> Vec<(i64, Value)> {
    let mut seen: Vec<(i64, Value)> = Vec::new();
    while seen.last().map(|(seq, _)| *seq) < Some(last) {
        let frame = ws.next_frame().await;
        if let Some(seq) = frame["data"]["seq"].as_i64() {
            seen.push((seq, frame["data"].clone()));
        }
    }
    seen
}

async fn run(node: &TestNode, alice: &TestUser, ops: &[Op], k_pick: usize) -> Result<(), String> {
    let room = node.create_room(alice, "prop", &[]).await;
    let mut live = node.ws(room, alice).await;
    live.next_purpose("receipts").await;
    let mut sent = Vec::new();
    for op in ops {
        match op {
            Op::Send(text) => sent.push(node.api.send(&alice.access, room, text).await.unwrap().id),
            Op::Edit(n, text) if !sent.is_empty() => {
                let id = sent[n % sent.len()];
                // A deleted message is gone: 404, and nothing changes.
                let _ = node.api.edit(&alice.access, room, id, text).await;
            }
            Op::Delete(n) if !sent.is_empty() => {
                let id = sent[n % sent.len()];
                let _ = node.api.delete_message(&alice.access, room, id).await;
            }
            _ => {}
        }
    }
    let marker = node.api.send(&alice.access, room, "end").await.unwrap().id;
    let log = node
        .api
        .events(&alice.access, room, 0, Some(500))
        .await
        .unwrap();
    let last = log.last_seq;
    assert!(log.events.iter().any(|e| e["id"] == marker));
    let frames = positioned(&mut live, last).await;
    let seqs: Vec<i64> = frames.iter().map(|(seq, _)| *seq).collect();
    if seqs != (1..=last).collect::<Vec<_>>() {
        return Err(format!("live positions {seqs:?}"));
    }
    let k = (k_pick % (last as usize + 1)) as i64;
    let url = format!("{}&after_seq={k}", node.ws_url(room, &alice.access));
    let mut late = WsClient {
        socket: chatnode_client::Socket::connect(&url, None).await.unwrap(),
    };
    let replay = if k == last {
        Vec::new()
    } else {
        positioned(&mut late, last).await
    };
    let replayed: Vec<i64> = replay.iter().map(|(seq, _)| *seq).collect();
    if replayed != (k + 1..=last).collect::<Vec<_>>() {
        return Err(format!("after_seq={k}: replayed positions {replayed:?}"));
    }
    let mut converged = state_of(frames.iter().filter(|(seq, _)| *seq <= k));
    for (_, data) in &replay {
        apply(&mut converged, data);
    }
    let final_live = state_of(&frames);
    if converged != final_live {
        return Err(format!("after_seq={k}: {converged:?} != {final_live:?}"));
    }
    let history: State = node
        .history(alice, room, "?limit=200")
        .await
        .iter()
        .map(|m| {
            let id = m["id"].as_i64().unwrap();
            (
                id,
                (m["deleted"] != true).then(|| m["content"].as_str().unwrap().to_string()),
            )
        })
        .collect();
    if history != final_live {
        return Err(format!("history {history:?} != live {final_live:?}"));
    }
    Ok(())
}

#[test]
fn a_late_socket_with_after_seq_converges_to_the_live_sockets_state() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (node, alice) = runtime.block_on(async {
        let node = spawn().await;
        let alice = node.register("alice").await;
        (node, alice)
    });
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (prop::collection::vec(op(), 1..16), any::<usize>());
    runner
        .run(&strategy, |(ops, k)| {
            runtime
                .block_on(run(&node, &alice, &ops, k))
                .map_err(TestCaseError::fail)
        })
        .unwrap();
    runtime.block_on(node.stop());
}
