//! Editing a message and deleting it for everyone, over REST and over the socket: who may,
//! until when, what the room sees (`message_edited`, `message_deleted` with their `seq`),
//! and that nothing of a deleted message is served again (history, media, the log).

use std::time::Duration;

use chatnode_client::{Attachment, Socket, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn, spawn_with, TestNode, TestUser, WsClient};

const PIXEL: &[u8] = include_bytes!("../../fixtures/pixel.png");

fn message_path(room: i64, id: i64) -> String {
    format!("/api/v1/chat/chatrooms/{room}/messages/{id}/")
}

async fn patch(
    node: &TestNode,
    user: &TestUser,
    room: i64,
    id: i64,
    body: Value,
) -> (StatusCode, Value) {
    let request = node
        .api
        .request(chatnode_client::Method::PATCH, &message_path(room, id))
        .json(&body);
    node.send(request, Some(&user.access)).await
}

async fn delete(node: &TestNode, user: &TestUser, room: i64, id: i64) -> (StatusCode, Value) {
    let request = node
        .api
        .request(chatnode_client::Method::DELETE, &message_path(room, id));
    node.send(request, Some(&user.access)).await
}

async fn send(node: &TestNode, user: &TestUser, room: i64, text: &str) -> i64 {
    node.send_message(user, room, text).await["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn the_sender_edits_within_the_window_and_the_room_sees_it() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let room = node.create_room(&alice, "edits", &[&bob]).await;
    let mut bob_ws = node.ws(room, &bob).await;
    let id = send(&node, &alice, room, "helo").await;
    assert_eq!(bob_ws.next_data().await["id"], id);

    let (status, body) = patch(&node, &alice, room, id, json!({"content": "hello"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let edited = &body["data"]["message"];
    assert_eq!(
        (edited["id"].as_i64(), edited["content"].as_str()),
        (Some(id), Some("hello"))
    );
    let edited_at = edited["edited_at"].as_str().expect("edited_at is set");
    let frame = bob_ws.next_purpose("message_edited").await;
    assert_eq!(frame["id"], id);
    assert_eq!(frame["message"], "hello");
    assert_eq!(frame["edited_at"], edited_at);
    assert!(frame["seq"].as_i64().is_some(), "{frame}");
    let history = node.history(&bob, room, "").await;
    assert_eq!(
        (
            history[0]["content"].as_str(),
            history[0]["edited_at"].as_str()
        ),
        (Some("hello"), Some(edited_at))
    );

    // Over the socket too, with the same rules.
    bob_ws
        .send_json(json!({"purpose": "edit_message", "id": id, "message": "mine now"}))
        .await;
    let refused = bob_ws.next_json().await;
    assert_eq!(
        refused["errors"]["detail"],
        "Only its sender can change this message"
    );
    let mut alice_ws = node.ws(room, &alice).await;
    alice_ws
        .send_json(json!({"purpose": "edit_message", "id": id, "message": "hello!"}))
        .await;
    assert_eq!(
        bob_ws.next_purpose("message_edited").await["message"],
        "hello!"
    );
    // The editor's own sockets get the edit too.
    assert_eq!(alice_ws.next_purpose("message_edited").await["id"], id);
    for bad in [
        json!({"purpose": "edit_message", "id": "x", "message": "a"}),
        json!({"purpose": "edit_message", "id": id}),
        json!({"purpose": "delete_message", "id": 0}),
    ] {
        alice_ws.send_json(bad.clone()).await;
        assert_eq!(alice_ws.next_json().await["success"], false, "{bad}");
    }

    for (user, target, body, want) in [
        (&bob, id, json!({"content": "x"}), StatusCode::FORBIDDEN),
        (&carol, id, json!({"content": "x"}), StatusCode::FORBIDDEN),
        (
            &alice,
            id,
            json!({"content": "   "}),
            StatusCode::BAD_REQUEST,
        ),
        (&alice, id, json!({"nothing": 1}), StatusCode::BAD_REQUEST),
        (
            &alice,
            id + 99,
            json!({"content": "x"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, body) = patch(&node, user, room, target, body).await;
        assert_eq!(status, want, "{body}");
        assert_eq!(body["success"], false, "{body}");
    }
}

#[tokio::test]
async fn past_the_window_the_sender_can_neither_edit_nor_delete_but_the_admin_deletes() {
    let node = spawn_with(|config| {
        config.edit_window_secs = 0;
        config.delete_window_secs = 0;
    })
    .await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "late", &[&bob]).await;
    let id = send(&node, &bob, room, "too late").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = patch(&node, &bob, room, id, json!({"content": "x"})).await;
    assert_eq!(
        (status, &body["errors"]["detail"]),
        (
            StatusCode::FORBIDDEN,
            &json!("This message is too old to be changed")
        )
    );
    assert_eq!(delete(&node, &bob, room, id).await.0, StatusCode::FORBIDDEN);
    let (status, body) = delete(&node, &alice, room, id).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the room's admin deletes at any time: {body}"
    );
}

#[tokio::test]
async fn a_deleted_message_leaves_a_tombstone_and_nothing_else_anywhere() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "gone", &[&bob]).await;
    let mut bob_ws = node.ws(room, &bob).await;
    let pixel = Attachment {
        file_name: "secret.png".into(),
        bytes: PIXEL.to_vec(),
    };
    let sent = node
        .api
        .send_attachment(&bob.access, room, "my secret", pixel)
        .await
        .unwrap();
    let url = sent.attachment.clone().expect("a signed URL");
    assert_eq!(
        node.api.get(&url).send().await.unwrap().status,
        StatusCode::OK
    );
    let files = || {
        std::fs::read_dir(node.data_dir.path().join("media"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count()
    };
    assert_eq!(files(), 1);
    bob_ws.next_data().await;
    send(&node, &alice, room, "still here").await;

    let mallory = node.register("mallory").await;
    let enter = format!("/api/v1/chat/chatrooms/{room}/enter/");
    node.post(&enter, Some(&mallory.access), json!({})).await;
    let (status, _) = delete(&node, &mallory, room, sent.id).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "neither the sender nor the admin"
    );
    let (status, body) = delete(&node, &bob, room, sent.id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tombstone =
        json!({"id": sent.id, "deleted": true, "sender": bob.id, "created_at": sent.created_at});
    assert_eq!(body["data"]["deleted"], tombstone);
    let frame = bob_ws.next_purpose("message_deleted").await;
    assert_eq!(
        (frame["id"].as_i64(), frame.get("message")),
        (Some(sent.id), None)
    );

    let history = node.history(&alice, room, "").await;
    assert_eq!(history[0], tombstone);
    assert_eq!(history[1]["content"], "still here");
    let newest = send(&node, &alice, room, "soon gone").await;
    assert_eq!(delete(&node, &alice, room, newest).await.0, StatusCode::OK);
    let (status, list) = node.get("/api/v1/chat/chatrooms/", Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let last = &list["data"]["chatrooms"][0]["last_message"];
    assert_eq!(
        (&last["id"], &last["deleted"], last.get("content")),
        (&json!(newest), &json!(true), None),
        "the chat list shows the newest message's tombstone: {last}"
    );
    assert_eq!(
        node.api.get(&url).send().await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(files(), 0, "the file is removed from disk");
    assert_eq!(
        delete(&node, &bob, room, sent.id).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        patch(&node, &bob, room, sent.id, json!({"content": "x"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // A replay serves the tombstone only, in the same positions.
    let log = node.api.events(&alice.access, room, 0, None).await.unwrap();
    let text = serde_json::to_string(&log.events).unwrap();
    assert!(
        !text.contains("my secret") && !text.contains(".png"),
        "{text}"
    );
    let replayed = log
        .events
        .iter()
        .find(|e| e["id"] == sent.id && e["purpose"] == "new_chat_message")
        .unwrap();
    assert_eq!(
        (replayed["deleted"].as_bool(), replayed["message"].as_str()),
        (Some(true), Some(""))
    );
    let url = format!("{}&after_seq=0", node.ws_url(room, &alice.access));
    let mut late = WsClient {
        socket: Socket::connect(&url, None).await.unwrap(),
    };
    let first = late.next_data().await;
    assert_eq!(
        (first["id"].as_i64(), first["deleted"].as_bool()),
        (Some(sent.id), Some(true))
    );
    let since = format!("{}&since=0", node.ws_url(room, &alice.access));
    let mut since_ws = WsClient {
        socket: Socket::connect(&since, None).await.unwrap(),
    };
    assert_eq!(
        since_ws.next_data().await["message"],
        "still here",
        "a catch-up skips it"
    );
}

#[tokio::test]
async fn a_reply_names_a_message_of_the_room_and_loses_its_excerpt_when_that_is_deleted() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "replies", &[&bob]).await;
    let other = node.create_room(&alice, "other", &[]).await;
    let mut bob_ws = node.ws(room, &bob).await;
    let long = "x".repeat(150);
    let first = send(&node, &alice, room, &long).await;
    bob_ws.next_data().await;
    let elsewhere = send(&node, &alice, other, "elsewhere").await;
    let sent = format!("/api/v1/chat/chatrooms/{room}/messages/send/");

    let (status, body) = node
        .post(
            &sent,
            Some(&bob.access),
            json!({"content": "yes!", "reply_to": first}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let excerpt = "x".repeat(100);
    let reference = json!({"id": first, "sender": alice.id, "excerpt": excerpt});
    assert_eq!(body["data"]["detail"]["reply_to"], reference);
    assert_eq!(bob_ws.next_data().await["reply_to"], reference);
    bob_ws
        .send_json(json!({"purpose": "send_chat_message", "message": "again", "reply_to": first}))
        .await;
    assert_eq!(bob_ws.next_data().await["reply_to"], reference);
    for (reply_to, why) in [
        (json!(elsewhere), "another room's"),
        (json!(first + 99), "unknown"),
        (json!("first"), "not an id"),
    ] {
        let (status, body) = node
            .post(
                &sent,
                Some(&bob.access),
                json!({"content": "no", "reply_to": reply_to}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
    }
    bob_ws
        .send_json(json!({"purpose": "send_chat_message", "message": "no", "reply_to": elsewhere}))
        .await;
    assert_eq!(bob_ws.next_json().await["success"], false);

    assert_eq!(delete(&node, &alice, room, first).await.0, StatusCode::OK);
    let (status, _) = node
        .post(
            &sent,
            Some(&bob.access),
            json!({"content": "no", "reply_to": first}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a deleted message cannot be answered"
    );
    let gone = json!({"id": first, "sender": alice.id, "excerpt": null});
    let history = node.history(&bob, room, "").await;
    assert_eq!(
        (&history[1]["reply_to"], &history[2]["reply_to"]),
        (&gone, &gone)
    );
    let log = node.api.events(&bob.access, room, 0, None).await.unwrap();
    let text = serde_json::to_string(&log.events).unwrap();
    assert!(!text.contains("xxxxx"), "the log keeps no excerpt: {text}");
}
