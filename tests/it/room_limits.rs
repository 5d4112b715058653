//! Room creation cannot be used to grow other users' room lists at will: a per-user rate
//! (429 with `Retry-After`, off with `--rate-limits off`) and at most 100 member ids per
//! request (a 400 naming `members`). Rates are hours long wherever a refusal is asserted.

use chatnode_client::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_with, TestNode, TestUser};

const CREATE: &str = "/api/v1/chat/chatrooms/create/";

async fn create(node: &TestNode, user: &TestUser, body: Value) -> (StatusCode, Option<u64>, Value) {
    let response = node
        .api
        .post(CREATE)
        .token(&user.access)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status;
    let retry_after = response
        .headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry_after, response.json())
}

async fn room_count(node: &TestNode, user: &TestUser) -> usize {
    let (_, body) = node
        .get("/api/v1/chat/chatrooms/", Some(&user.access))
        .await;
    body["data"]["chatrooms"].as_array().unwrap().len()
}

async fn node_with(enabled: bool) -> TestNode {
    spawn_with(|config| {
        let limits = &mut config.limits;
        limits.enabled = enabled;
        let generous = "1000/h".parse().unwrap();
        limits.register_ip = generous;
        limits.register_email = generous;
        limits.room_create = "2/h".parse().unwrap();
    })
    .await
}

#[tokio::test]
async fn room_creation_over_the_per_user_limit_gets_429_and_other_users_do_not() {
    let node = node_with(true).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    for i in 0..2 {
        let body = json!({ "name": format!("r{i}"), "members": [bob.id] });
        let (status, _, body) = create(&node, &alice, body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, retry_after, body) =
        create(&node, &alice, json!({ "name": "r3", "members": [bob.id] })).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["success"], false);
    let detail = body["errors"]["detail"].as_str().unwrap();
    assert!(detail.contains("Too many chatrooms created"), "{detail}");
    assert!(retry_after.unwrap() >= 1);
    assert_eq!(
        room_count(&node, &bob).await,
        2,
        "the refused room was not created"
    );
    // The limit is per user: bob still creates.
    let (status, _, body) = create(&node, &bob, json!({ "name": "mine" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    node.stop().await;
}

#[tokio::test]
async fn with_rate_limits_off_room_creation_is_not_limited() {
    let node = node_with(false).await;
    let alice = node.register("alice").await;
    for i in 0..5 {
        let (status, _, body) = create(&node, &alice, json!({ "name": format!("r{i}") })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    node.stop().await;
}

#[tokio::test]
async fn more_than_100_member_ids_in_one_request_is_a_400_naming_members() {
    let node = node_with(true).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let too_many: Vec<i64> = (0..101).map(|i| bob.id + i * 1000).collect();
    let (status, _, body) =
        create(&node, &alice, json!({ "name": "big", "members": too_many })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["errors"]["validations"]["members"].as_str().unwrap();
    assert!(message.contains("At most 100 members"), "{message}");
    assert_eq!(room_count(&node, &alice).await, 0);
    // Refused requests do not use up the rate: two rooms (the limit) still go through.
    for i in 0..2 {
        let (status, _, body) = create(
            &node,
            &alice,
            json!({ "name": format!("r{i}"), "members": [bob.id] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    node.stop().await;
}
