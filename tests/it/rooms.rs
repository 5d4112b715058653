use chatnode_client::StatusCode;
use serde_json::json;

use crate::helpers::{spawn, spawn_with};

#[tokio::test]
async fn create_and_list_rooms_with_members() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let (status, body) = node
        .post(
            "/api/v1/chat/chatrooms/create/",
            Some(&alice.access),
            json!({"name": "  Weekend  ", "members": [bob.id, bob.id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let room = &body["data"]["chatroom"];
    assert_eq!(room["name"], "Weekend");
    assert_eq!(room["admin"], alice.id);
    assert_eq!(
        room["members"],
        json!([{"id": alice.id, "username": alice.username}, {"id": bob.id, "username": bob.username}])
    );
    assert!(room["created_at"].is_string() && room["updated_at"].is_string());

    let (status, body) = node.get("/api/v1/chat/chatrooms/", Some(&bob.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["chatrooms"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"]["chatrooms"][0]["id"], room["id"]);
    let (_, body) = node
        .get("/api/v1/chat/chatrooms", Some(&carol.access))
        .await;
    assert_eq!(
        body["data"]["chatrooms"],
        json!([]),
        "only the caller's rooms are listed"
    );
}

#[tokio::test]
async fn room_creation_with_unknown_members_creates_nothing() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let (status, body) = node
        .post(
            "/api/v1/chat/chatrooms/create/",
            Some(&alice.access),
            json!({"name": "ghosts", "members": [424242]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"]["validations"]["members"]
        .as_str()
        .unwrap()
        .contains("424242"));
    let (_, body) = node
        .get("/api/v1/chat/chatrooms/", Some(&alice.access))
        .await;
    assert_eq!(body["data"]["chatrooms"], json!([]));
    // Ids are not burnt either way: the next room is the first one.
    let room = node.create_room(&alice, "real", &[]).await;
    assert_eq!(room, 1);

    for bad in [
        json!({"name": "   "}),
        json!({"name": "x".repeat(256)}),
        json!({"members": []}),
        json!({"name": 5}),
    ] {
        let (status, _) = node
            .post(
                "/api/v1/chat/chatrooms/create/",
                Some(&alice.access),
                bad.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn enter_and_leave_follow_the_contract() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "Lobby", &[]).await;
    let enter = format!("/api/v1/chat/chatrooms/{room}/enter/");
    let leave = format!("/api/v1/chat/chatrooms/{room}/leave/");

    let (status, body) = node.post(&leave, Some(&bob.access), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"]["detail"], "User not in chatroom");

    let (status, body) = node.post(&enter, Some(&bob.access), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["detail"],
        "You have successfully joined the chatroom: Lobby"
    );
    let (status, _) = node.post(&enter, Some(&bob.access), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "already a member");

    let (status, body) = node.post(&leave, Some(&bob.access), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["detail"],
        format!("{} have left the chatroom", bob.username)
    );
    let (_, body) = node.get("/api/v1/chat/chatrooms/", Some(&bob.access)).await;
    assert_eq!(body["data"]["chatrooms"], json!([]));

    for path in [
        "/api/v1/chat/chatrooms/999/enter/",
        "/api/v1/chat/chatrooms/999/leave/",
        "/api/v1/chat/chatrooms/abc/enter/",
        "/api/v1/chat/chatrooms/-1/leave",
    ] {
        let (status, body) = node.post(path, Some(&bob.access), json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["errors"]["detail"], "Chatroom not found");
    }
}

#[tokio::test]
async fn the_member_cap_is_enforced() {
    let node = spawn_with(|c| c.max_room_members = 3).await;
    let owner = node.register("owner").await;
    let mut others = Vec::new();
    for i in 0..3 {
        others.push(node.register(&format!("user{i}")).await);
    }
    let room = node.create_room(&owner, "small", &[&others[0]]).await;
    let enter = format!("/api/v1/chat/chatrooms/{room}/enter/");
    let (status, _) = node.post(&enter, Some(&others[1].access), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = node.post(&enter, Some(&others[2].access), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, body) = node
        .get("/api/v1/chat/chatrooms/", Some(&owner.access))
        .await;
    assert_eq!(
        body["data"]["chatrooms"][0]["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let ids: Vec<i64> = others.iter().map(|u| u.id).collect();
    let (status, _) = node
        .post(
            "/api/v1/chat/chatrooms/create/",
            Some(&owner.access),
            json!({"name": "too big", "members": ids}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn concurrent_joins_never_exceed_the_cap() {
    let node = spawn_with(|c| c.max_room_members = 5).await;
    let owner = node.register("owner").await;
    let room = node.create_room(&owner, "race", &[]).await;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(node.register(&format!("racer{i}")).await);
    }
    let enter = format!("/api/v1/chat/chatrooms/{room}/enter/");
    let attempts = users
        .iter()
        .map(|u| node.post(&enter, Some(&u.access), json!({})));
    let results = futures_util::future::join_all(attempts).await;
    let joined = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::FORBIDDEN)
        .count();
    assert_eq!((joined, refused), (4, 8));
}
