use chatnode_client::StatusCode;
use serde_json::json;

use crate::helpers::spawn;

#[tokio::test]
async fn send_stores_and_returns_the_message() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let (status, body) = node
        .post(
            &format!("/api/v1/chat/chatrooms/{room}/messages/send"),
            Some(&alice.access),
            json!({"content": "hello"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let message = &body["data"]["detail"];
    assert_eq!(message["content"], "hello");
    assert_eq!(message["sender"], alice.id);
    assert_eq!(message["chatroom"], room);
    assert_eq!(message["attachment"], json!(null));
    assert!(message["id"].is_i64() && message["created_at"].is_string());
    assert_eq!(node.history(&alice, room, "").await, vec![message.clone()]);
}

#[tokio::test]
async fn blank_content_is_rejected_and_not_stored() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let send = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
    for body in [
        json!({"content": ""}),
        json!({"content": "  \n\t"}),
        json!({}),
        json!({"content": 3}),
    ] {
        let (status, answer) = node.post(&send, Some(&alice.access), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["success"], false);
    }
    let too_long = "x".repeat(10_001);
    let (status, _) = node
        .post(&send, Some(&alice.access), json!({"content": too_long}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(node.history(&alice, room, "").await.is_empty());
}

#[tokio::test]
async fn only_members_read_and_write_a_room() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let mallory = node.register("mallory").await;
    let room = node.create_room(&alice, "private", &[]).await;
    node.send_message(&alice, room, "secret").await;

    let (status, body) = node
        .get(
            &format!("/api/v1/chat/chatrooms/{room}/messages/"),
            Some(&mallory.access),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"]["detail"], "User not in chatroom");
    let (status, _) = node
        .post(
            &format!("/api/v1/chat/chatrooms/{room}/messages/send/"),
            Some(&mallory.access),
            json!({"content": "let me in"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(node.history(&alice, room, "").await.len(), 1);
}

#[tokio::test]
async fn unknown_rooms_are_404_for_history_and_send() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let (status, body) = node
        .get("/api/v1/chat/chatrooms/77/messages/", Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"]["detail"], "Chatroom not found");
    for room in ["77", "seventy"] {
        let (status, body) = node
            .post(
                &format!("/api/v1/chat/chatrooms/{room}/messages/send/"),
                Some(&alice.access),
                json!({"content": "hi"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["errors"]["error"], "Chatroom not found");
    }
}

#[tokio::test]
async fn history_is_oldest_first_and_pageable() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let other = node.create_room(&alice, "other", &[]).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(
            node.send_message(&alice, room, &format!("m{i}")).await["id"]
                .as_i64()
                .unwrap(),
        );
        if i % 10 == 0 {
            node.send_message(&alice, other, "noise").await;
        }
    }
    let contents = |page: &[serde_json::Value]| -> Vec<String> {
        page.iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    let default = node.history(&alice, room, "").await;
    assert_eq!(default.len(), 50, "default page size");
    assert_eq!(
        default.first().unwrap()["content"],
        "m10",
        "the newest page, oldest first"
    );
    assert_eq!(default.last().unwrap()["content"], "m59");

    let older = node
        .history(&alice, room, &format!("?before={}&limit=5", ids[10]))
        .await;
    assert_eq!(contents(&older), ["m5", "m6", "m7", "m8", "m9"]);
    let newer = node
        .history(&alice, room, &format!("?after={}&limit=3", ids[57]))
        .await;
    assert_eq!(contents(&newer), ["m58", "m59"]);
    let window = node
        .history(
            &alice,
            room,
            &format!("?after={}&before={}", ids[2], ids[6]),
        )
        .await;
    assert_eq!(contents(&window), ["m3", "m4", "m5"]);
    let capped = node.history(&alice, room, "?limit=100000").await;
    assert_eq!(capped.len(), 60, "limit is capped, never an error");

    for bad in ["?limit=0", "?limit=-3", "?limit=ten", "?before=x"] {
        let (status, body) = node
            .get(
                &format!("/api/v1/chat/chatrooms/{room}/messages/{bad}"),
                Some(&alice.access),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}
