//! The replay property: for random interleavings of sends, edits, deletes and two members'
//! reactions, a socket that joins late with `?after_seq=k` (any `k`), starting from the state
//! the live socket had at `k`, ends in the live socket's state, and both agree with the
//! history (contents, tombstones and reaction counts).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::helpers::{spawn, TestNode, TestUser, WsClient};

#[derive(Debug, Clone)]
enum Op {
    Send(String),
    /// Edit the n-th message sent so far (modulo their number).
    Edit(usize, String),
    Delete(usize),
    /// Alice (`false`) or Bob reacts to the n-th message with one of `EMOJI`, or (`None`)
    /// takes their reaction back.
    React(usize, bool, Option<usize>),
}

const EMOJI: [&str; 3] = ["👍", "❤️", "😂"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => "[a-z]{1,12}".prop_map(Op::Send),
        2 => (any::<usize>(), "[a-z]{1,12}").prop_map(|(n, text)| Op::Edit(n, text)),
        1 => any::<usize>().prop_map(Op::Delete),
        3 => (any::<usize>(), any::<bool>(), prop::option::weighted(0.8, 0..EMOJI.len()))
            .prop_map(|(n, bob, emoji)| Op::React(n, bob, emoji)),
    ]
}

/// A room as a client holds it: message id to its content (`None` once deleted) and its
/// reaction counts.
type State = BTreeMap<i64, (Option<String>, Value)>;

/// Applies one frame's `data` to `state`.
fn apply(state: &mut State, data: &Value) {
    let Some(id) = data["id"].as_i64().or(data["message_id"].as_i64()) else {
        return;
    };
    let deleted = data["deleted"] == true;
    let entry = state.entry(id).or_insert((None, json!([])));
    match data["purpose"].as_str() {
        Some("new_chat_message") | Some("message_edited") => {
            let content = data["message"].as_str().unwrap_or_default().to_string();
            entry.0 = (!deleted).then_some(content);
        }
        Some("message_deleted") => *entry = (None, json!([])),
        Some("reaction") => entry.1 = data["reactions"].clone(),
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

async fn run(node: &TestNode, people: &[TestUser; 2], ops: &[Op], k: usize) -> Result<(), String> {
    let [alice, bob] = people;
    let room = node.create_room(alice, "prop", &[bob]).await;
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
            Op::React(n, by_bob, emoji) if !sent.is_empty() => {
                let (id, who) = (sent[n % sent.len()], if *by_bob { bob } else { alice });
                // As with edits, a deleted message answers 404 and nothing changes.
                let _ = match emoji {
                    Some(e) => node.api.react(&who.access, room, id, EMOJI[*e]).await,
                    None => node.api.unreact(&who.access, room, id).await,
                };
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
    let k = (k % (last as usize + 1)) as i64;
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
            let content =
                (m["deleted"] != true).then(|| m["content"].as_str().unwrap().to_string());
            let reactions = m.get("reactions").cloned().unwrap_or(json!([]));
            (id, (content, reactions))
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
    let (node, people) = runtime.block_on(async {
        let node = spawn().await;
        let people = [node.register("alice").await, node.register("bob").await];
        (node, people)
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
                .block_on(run(&node, &people, &ops, k))
                .map_err(TestCaseError::fail)
        })
        .unwrap();
    runtime.block_on(node.stop());
}
