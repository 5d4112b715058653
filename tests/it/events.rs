//! The room event log through the real interface: every change has a per-room `seq`,
//! `GET .../events/` pages it, a socket opened with `?after_seq=` (or sent a `catch_up` with
//! `after_seq`) replays every change after it and goes live with no gap and no duplicate, on
//! one node and across two over each broker protocol; a position the retention pruned is
//! answered with a `reset` frame (REST: 410), never with a silent gap.

use std::time::Duration;

use chatnode::config::TransportKind;
use chatnode_client::{Socket, StatusCode};
use serde_json::{json, Value};

use crate::broker::brokers;
use crate::cluster::Cluster;
use crate::helpers::{eventually, spawn, spawn_with, TestNode, TestUser, WsClient, WAIT};

fn events_path(room: i64, query: &str) -> String {
    format!("/api/v1/chat/chatrooms/{room}/events/{query}")
}

/// The positions of the frames that carry one, as they arrive, until `last` has arrived
/// (each frame within [`WAIT`]).
async fn seqs_until(ws: &mut WsClient, last: i64) -> Vec<(i64, Value)> {
    let mut seen: Vec<(i64, Value)> = Vec::new();
    while seen.last().map(|(seq, _)| *seq) < Some(last) {
        let frame = ws.next_frame().await;
        if let Some(seq) = frame["data"]["seq"].as_i64() {
            seen.push((seq, frame["data"].clone()));
        }
    }
    seen
}

fn positions(seen: &[(i64, Value)]) -> Vec<i64> {
    seen.iter().map(|(seq, _)| *seq).collect()
}

/// The position of message `id` in the room's log, read through the API.
async fn seq_of(node: &TestNode, user: &TestUser, room: i64, id: i64) -> i64 {
    let page = node
        .api
        .events(&user.access, room, 0, Some(500))
        .await
        .unwrap();
    page.events
        .iter()
        .find(|e| e["purpose"] == "new_chat_message" && e["id"] == id)
        .and_then(|e| e["seq"].as_i64())
        .unwrap_or_else(|| panic!("message {id} is in the log"))
}

async fn send(node: &TestNode, user: &TestUser, room: i64, text: &str) -> i64 {
    node.send_message(user, room, text).await["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn the_events_endpoint_pages_every_change_in_order() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "log", &[]).await;
    let enter = format!("/api/v1/chat/chatrooms/{room}/enter/");
    assert_eq!(
        node.post(&enter, Some(&bob.access), json!({})).await.0,
        StatusCode::OK
    );
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        ids.push(send(&node, &alice, room, text).await);
    }
    let read = format!("/api/v1/chat/chatrooms/{room}/read/");
    let (status, _) = node
        .post(&read, Some(&bob.access), json!({"upto": ids[2]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let page = eventually(WAIT, "the read receipt is logged", || async {
        let page = node.api.events(&alice.access, room, 0, None).await.unwrap();
        (page.last_seq == 5).then_some(page)
    })
    .await;
    let seqs: Vec<i64> = page
        .events
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(page.events[0]["event"], "member_joined");
    let joined = format!("{} just joined the Chatroom", bob.username);
    assert_eq!(page.events[0]["message"], joined.as_str());
    let message_ids: Vec<&Value> = page.events[1..4].iter().map(|e| &e["id"]).collect();
    assert_eq!(
        message_ids,
        [&json!(ids[0]), &json!(ids[1]), &json!(ids[2])]
    );
    assert_eq!(page.events[1]["message"], "one");
    assert_eq!(
        page.events[4],
        json!({"purpose": "receipt", "event": "read", "chat_id": room, "user_id": bob.id,
               "upto": ids[2], "seq": 5})
    );
    assert!(!page.has_more);

    // Paged with `limit`, the pages add up to the whole log.
    let mut paged = Vec::new();
    let mut after = 0;
    for _ in 0..5 {
        let part = node
            .api
            .events(&bob.access, room, after, Some(2))
            .await
            .unwrap();
        paged.extend(part.events.iter().map(|e| e["seq"].as_i64().unwrap()));
        after = *paged.last().unwrap();
        if !part.has_more {
            break;
        }
    }
    assert_eq!(paged, seqs);
}

#[tokio::test]
async fn bad_log_requests_are_named_and_strangers_read_nothing() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let carol = node.register("carol").await;
    let room = node.create_room(&alice, "log", &[]).await;
    for text in ["one", "two", "three", "four", "five"] {
        send(&node, &alice, room, text).await;
    }
    for (query, status) in [
        ("?after_seq=-1", StatusCode::BAD_REQUEST),
        ("?after_seq=soon", StatusCode::BAD_REQUEST),
        ("?limit=0", StatusCode::BAD_REQUEST),
        ("?after_seq=6", StatusCode::BAD_REQUEST),
    ] {
        let (got, body) = node
            .get(&events_path(room, query), Some(&alice.access))
            .await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(body["errors"]["detail"].is_string(), "{query}: {body}");
    }
    let (status, _) = node.get(&events_path(room, ""), Some(&carol.access)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a stranger reads no log");
    let (status, _) = node
        .get(&events_path(room + 99, ""), Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = node.get(&events_path(room, ""), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_socket_with_after_seq_replays_every_change_then_goes_live_without_gap_or_duplicate() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "replay", &[&bob]).await;
    // More than one replay page.
    for i in 0..250 {
        send(&node, &alice, room, &format!("m{i}")).await;
    }
    // Sends keep committing while the socket opens and replays.
    let (api, access) = (node.api.clone(), alice.access.clone());
    let sender = tokio::spawn(async move {
        for i in 0..30 {
            api.send(&access, room, &format!("during {i}"))
                .await
                .unwrap();
        }
    });
    let url = format!("{}&after_seq=5", node.ws_url(room, &bob.access));
    let mut bob_ws = WsClient {
        socket: Socket::connect(&url, None).await.unwrap(),
    };
    sender.await.unwrap();
    let last = send(&node, &alice, room, "last").await;
    let last_seq = seq_of(&node, &alice, room, last).await;
    let seen = positions(&seqs_until(&mut bob_ws, last_seq).await);
    assert_eq!(
        seen,
        (6..=last_seq).collect::<Vec<_>>(),
        "every change once, in order"
    );
    bob_ws.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_catch_up_frame_with_after_seq_replays_from_that_position() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let mut socket = node.ws(room, &alice).await;
    for text in ["a", "b", "c"] {
        send(&node, &alice, room, text).await;
    }
    assert_eq!(positions(&seqs_until(&mut socket, 3).await), [1, 2, 3]);
    socket
        .send_json(json!({"purpose": "catch_up", "after_seq": 1}))
        .await;
    let replayed = seqs_until(&mut socket, 3).await;
    assert_eq!(positions(&replayed), [2, 3]);
    assert_eq!(replayed[0].1["message"], "b");
    for bad in [
        json!({"purpose": "catch_up", "after_seq": "yesterday"}),
        json!({"purpose": "catch_up", "after_seq": -2}),
        json!({"purpose": "catch_up", "after_seq": 1, "since": 1}),
        json!({"purpose": "catch_up"}),
    ] {
        socket.send_json(bad.clone()).await;
        let answer = socket.next_json().await;
        assert_eq!(answer["success"], false, "{bad}: {answer}");
    }
    socket.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_position_the_retention_pruned_is_answered_with_a_reset_never_a_gap() {
    let node = spawn_with(|config| config.event_retention_secs = 1).await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "short", &[]).await;
    for text in ["old", "older"] {
        send(&node, &alice, room, text).await;
    }
    let path = events_path(room, "?after_seq=0");
    let body = eventually(Duration::from_secs(15), "the log is pruned", || async {
        let (status, body) = node.get(&path, Some(&alice.access)).await;
        (status == StatusCode::GONE).then_some(body)
    })
    .await;
    assert_eq!(body["success"], false);
    assert!(body["errors"]["detail"]
        .as_str()
        .unwrap()
        .contains("reload the history"));
    // History keeps the messages; the log goes on from where it was.
    assert_eq!(node.history(&alice, room, "").await.len(), 2);
    let (status, body) = node
        .get(&events_path(room, "?after_seq=2"), Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let url = format!("{}&after_seq=0", node.ws_url(room, &alice.access));
    let mut socket = WsClient {
        socket: Socket::connect(&url, None).await.unwrap(),
    };
    let reset = socket.next_purpose("reset").await;
    assert_eq!(reset["chat_id"], room);
    assert!(
        reset["reason"].as_str().unwrap().contains("no longer kept"),
        "{reset}"
    );
    let live = send(&node, &alice, room, "new").await;
    let frame = socket.next_data().await;
    assert_eq!(
        (frame["id"].as_i64(), frame["seq"].as_i64()),
        (Some(live), Some(3))
    );

    let ahead = format!("{}&after_seq=99", node.ws_url(room, &alice.access));
    let mut socket = WsClient {
        socket: Socket::connect(&ahead, None).await.unwrap(),
    };
    let reset = socket.next_purpose("reset").await;
    assert!(
        reset["reason"]
            .as_str()
            .unwrap()
            .contains("newest position is 3"),
        "{reset}"
    );
    for query in ["&after_seq=-1", "&after_seq=1&since=1"] {
        let url = format!("{}{query}", node.ws_url(room, &alice.access));
        let (status, body) = node.refused_ws(&url).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
}

/// Alice on `a` and bob on `b` send at once, then edit and delete; bob's live socket on `b`
/// sees every change once, in `seq` order from 1; a late socket on `a` with `after_seq=0`
/// replays the same log.
async fn one_log_across_nodes(a: &TestNode, b: &TestNode, label: &str) {
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = a.create_room(&alice, "shared", &[&bob]).await;
    let mut live = b.ws(room, &bob).await;
    live.next_purpose("receipts").await;
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let (node, user) = if i % 2 == 0 { (a, &alice) } else { (b, &bob) };
            let (api, access) = (node.api.clone(), user.access.clone());
            tokio::spawn(async move { api.send(&access, room, &format!("n{i}")).await.unwrap() })
        })
        .collect();
    let mut sent = Vec::new();
    for send in sends {
        sent.push(send.await.unwrap());
    }
    // An edit on one node and a delete on the other are changes of the same log.
    a.api
        .edit(&alice.access, room, sent[0].id, "edited")
        .await
        .unwrap();
    b.api
        .delete_message(&bob.access, room, sent[1].id)
        .await
        .unwrap();
    // So are reactions to one message made on both nodes: the second counts the first.
    a.api
        .react(&alice.access, room, sent[2].id, "👍")
        .await
        .unwrap();
    let counted = b
        .api
        .react(&bob.access, room, sent[2].id, "👍")
        .await
        .unwrap();
    assert_eq!(
        counted
            .reactions
            .iter()
            .map(|r| (r.emoji.as_str(), r.count))
            .collect::<Vec<_>>(),
        [("👍", 2)],
        "{label}"
    );
    let last = send(a, &alice, room, "last").await;
    let last_seq = seq_of(b, &bob, room, last).await;
    let seen = seqs_until(&mut live, last_seq).await;
    let purposes: Vec<&Value> = seen.iter().map(|(_, data)| &data["purpose"]).collect();
    let reaction = seen
        .iter()
        .rev()
        .find(|(_, data)| data["purpose"] == "reaction")
        .map(|(_, data)| data["reactions"].clone());
    assert_eq!(
        reaction,
        Some(json!([{"emoji": "👍", "count": 2}])),
        "{label}: the other node's socket has the counts"
    );
    for change in ["message_edited", "message_deleted", "reaction"] {
        assert!(
            purposes.contains(&&json!(change)),
            "{label}: {change} in {purposes:?}"
        );
    }
    assert_eq!(
        positions(&seen),
        (1..=last_seq).collect::<Vec<_>>(),
        "{label}"
    );

    let url = format!("{}&after_seq=0", a.ws_url(room, &alice.access));
    let mut late = WsClient {
        socket: Socket::connect(&url, None).await.unwrap(),
    };
    let replayed = seqs_until(&mut late, last_seq).await;
    let shape = |seen: &[(i64, Value)]| -> Vec<(i64, Value, Value)> {
        let (seen, _) = seen.split_at(last_seq as usize);
        seen.iter()
            .map(|(seq, data)| (*seq, data["purpose"].clone(), data["id"].clone()))
            .collect()
    };
    assert_eq!(
        shape(&replayed),
        shape(&seen),
        "{label}: the replay is the live feed"
    );
}

async fn log_across_nodes(transport: TransportKind) {
    for broker in brokers().await {
        let cluster = Cluster::start(&broker, transport, 2).await;
        let label = format!("{transport:?} on {}", broker.label);
        one_log_across_nodes(&cluster.nodes[0], &cluster.nodes[1], &label).await;
        cluster.stop(&broker).await;
    }
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp091_one_room_log_across_two_nodes() {
    log_across_nodes(TransportKind::Amqp091).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp10_one_room_log_across_two_nodes() {
    log_across_nodes(TransportKind::Amqp10).await;
}
