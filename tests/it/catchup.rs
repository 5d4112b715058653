//! Catching up over the socket: `?since=` on connect and `catch_up` frames later.

use std::time::Duration;

use chatnode_client::Socket;
use serde_json::json;

use crate::helpers::{spawn, WsClient};

async fn message_ids(socket: &mut WsClient, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let data = socket.next_data().await;
        assert_eq!(data["event"], "message");
        ids.push(data["id"].as_i64().unwrap());
    }
    ids
}

#[tokio::test]
async fn since_replays_the_missed_messages_then_goes_live_without_duplicates() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "r", &[&bob]).await;
    let mut ids = Vec::new();
    for i in 0..250 {
        ids.push(
            node.send_message(&alice, room, &format!("m{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // More than one catch-up page, starting after the 5th message.
    let url = format!("{}&since={}", node.ws_url(room, &bob.access), ids[4]);
    let socket = Socket::connect(&url, None).await.unwrap();
    let mut bob_ws = WsClient { socket };
    let replayed = message_ids(&mut bob_ws, 245).await;
    assert_eq!(replayed, ids[5..]);
    let live = node.send_message(&alice, room, "live").await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(message_ids(&mut bob_ws, 1).await, vec![live]);
    bob_ws.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_catch_up_frame_replays_from_any_id() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let mut socket = node.ws(room, &alice).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            node.send_message(&alice, room, &format!("m{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(message_ids(&mut socket, 3).await, ids);
    socket
        .send_json(json!({"purpose": "catch_up", "since": ids[0]}))
        .await;
    assert_eq!(message_ids(&mut socket, 2).await, ids[1..]);
    socket
        .send_json(json!({"purpose": "catch_up", "since": "yesterday"}))
        .await;
    let answer = socket.next_json().await;
    assert_eq!(answer["success"], false);
    socket.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn without_since_a_socket_starts_at_the_present() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    node.send_message(&alice, room, "old").await;
    let mut socket = node.ws(room, &alice).await;
    socket.expect_silence(Duration::from_millis(300)).await;
    let new = node.send_message(&alice, room, "new").await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(message_ids(&mut socket, 1).await, vec![new]);
}
