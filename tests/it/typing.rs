//! Typing notices: a socket's `typing` / `typing_stop` frames reach the room's other sockets,
//! on this node and on the others, without the store; a start nobody refreshes expires on
//! the receiving node; a message from a typist ends their typing; the frames are rate limited.

use chatnode::config::TransportKind;
use serde_json::{json, Value};

use crate::broker::brokers;
use crate::cluster::Cluster;
use crate::helpers::{spawn, spawn_with, TestNode, TestUser, WsClient, WAIT};

/// The `typing` frame a socket gets for `user` (`state`: "start" or "stop").
fn typing_frame(room: i64, user: &TestUser, state: &str) -> Value {
    json!({
        "purpose": "typing",
        "chat_id": room,
        "user_id": user.id,
        "username": user.username,
        "state": state,
    })
}

/// Alice types on `typist`'s node, bob watches on `watcher`'s: start, stop, a start ended by
/// her message, and a start that expires.
async fn typing_reaches_the_other_sockets(typist: &TestNode, watcher: &TestNode, label: &str) {
    let alice = typist.register("alice").await;
    let bob = watcher.register("bob").await;
    let room = typist.create_room(&alice, "typing", &[&bob]).await;
    let mut alice_ws = typist.ws(room, &alice).await;
    let mut bob_ws = watcher.ws(room, &bob).await;
    // A socket's first frame comes once its room is bound on its node: signals, which are
    // never replayed, reach it from then on.
    for socket in [&mut alice_ws, &mut bob_ws] {
        socket.next_purpose("receipts").await;
    }

    alice_ws.send_json(json!({"purpose": "typing"})).await;
    let start = bob_ws.next_purpose("typing").await;
    assert_eq!(start, typing_frame(room, &alice, "start"), "{label}");
    alice_ws.send_json(json!({"purpose": "typing_stop"})).await;
    let stop = bob_ws.next_purpose("typing").await;
    assert_eq!(stop, typing_frame(room, &alice, "stop"), "{label}");

    // Sending ends typing: the stop comes before the message, on every node.
    alice_ws.send_json(json!({"purpose": "typing"})).await;
    assert_eq!(bob_ws.next_purpose("typing").await["state"], "start");
    alice_ws
        .send_json(json!({"purpose": "send_chat_message", "message": "done typing"}))
        .await;
    assert_eq!(
        bob_ws.next_data().await,
        typing_frame(room, &alice, "stop"),
        "{label}"
    );
    assert_eq!(
        bob_ws.next_data().await["message"],
        "done typing",
        "{label}"
    );
    // The typist's own socket got none of her typing frames: her message is next.
    assert_eq!(
        alice_ws.next_data().await["message"],
        "done typing",
        "{label}"
    );

    // A start nobody refreshes or stops ends by itself on the watcher's node (6 s).
    alice_ws.send_json(json!({"purpose": "typing"})).await;
    assert_eq!(bob_ws.next_purpose("typing").await["state"], "start");
    let expired = bob_ws.next_purpose_within("typing", WAIT).await;
    assert_eq!(expired, Some(typing_frame(room, &alice, "stop")), "{label}");

    // Nothing of it was stored: the history holds the message alone.
    let history = typist.history(&alice, room, "").await;
    let contents: Vec<&Value> = history.iter().map(|m| &m["content"]).collect();
    assert_eq!(contents, [&json!("done typing")], "{label}");
}

#[tokio::test]
async fn typing_reaches_the_rooms_other_sockets_and_expires() {
    let node = spawn().await;
    typing_reaches_the_other_sockets(&node, &node, "memory").await;
}

async fn typing_across_nodes(transport: TransportKind) {
    for broker in brokers().await {
        let cluster = Cluster::start(&broker, transport, 2).await;
        let label = format!("{transport:?} on {}", broker.label);
        typing_reaches_the_other_sockets(&cluster.nodes[0], &cluster.nodes[1], &label).await;
        cluster.stop(&broker).await;
    }
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp091_typing_reaches_the_other_node_and_expires_there() {
    typing_across_nodes(TransportKind::Amqp091).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp10_typing_reaches_the_other_node_and_expires_there() {
    typing_across_nodes(TransportKind::Amqp10).await;
}

#[tokio::test]
async fn typing_frames_over_the_per_user_rate_get_an_error_frame_and_the_socket_stays() {
    let node = spawn_with(|config| {
        config.limits.enabled = true;
        config.limits.typing = "2/min".parse().unwrap();
    })
    .await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "typing", &[&bob]).await;
    let mut alice_ws: WsClient = node.ws(room, &alice).await;
    let mut bob_ws = node.ws(room, &bob).await;
    bob_ws.next_purpose("receipts").await;
    for _ in 0..2 {
        alice_ws.send_json(json!({"purpose": "typing"})).await;
        assert_eq!(bob_ws.next_purpose("typing").await["state"], "start");
    }
    alice_ws.send_json(json!({"purpose": "typing"})).await;
    let refused = alice_ws.next_json().await;
    assert_eq!(refused["success"], false, "{refused}");
    let detail = refused["errors"]["detail"].as_str().unwrap();
    assert!(detail.contains("Too many typing notices"), "{refused}");
    // Still open: a message goes through, and bob saw no third start before it.
    alice_ws
        .send_json(json!({"purpose": "send_chat_message", "message": "still here"}))
        .await;
    let next = bob_ws.next_data().await;
    assert_eq!(next, typing_frame(room, &alice, "stop"));
    assert_eq!(bob_ws.next_data().await["message"], "still here");
}
