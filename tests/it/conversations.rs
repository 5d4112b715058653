//! Issue 12 through the real interface: finding people, direct conversations, blocking, the
//! paged chat list with unread counts, read and delivery receipts (coalesced), the state of
//! one's own messages, and the receipts frame a socket starts with.

use std::collections::BTreeSet;
use std::time::Duration;

use chatnode_client::{Socket, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::helpers::{eventually_ok, spawn, TestNode, TestUser, WsClient, WAIT};

// ---- the API, one call each ----------------------------------------------------------

/// The user object every new endpoint answers with (`register` names a user `name Tester`).
fn person(user: &TestUser) -> Value {
    let first_name = user.email.split('@').next().unwrap();
    json!({
        "id": user.id, "username": user.username,
        "first_name": first_name, "last_name": "Tester",
    })
}

fn id(value: &Value) -> i64 {
    value["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {value}"))
}

/// A position in a frame or an answer; "nothing yet" may be 0 or null.
fn position(value: &Value) -> i64 {
    if value.is_null() {
        0
    } else {
        value
            .as_i64()
            .unwrap_or_else(|| panic!("not a position: {value}"))
    }
}

fn member_ids(room: &Value) -> BTreeSet<i64> {
    room["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {room}"))
        .iter()
        .map(id)
        .collect()
}

fn has_no_peer(room: &Value) -> bool {
    matches!(room.get("peer"), None | Some(Value::Null))
}

async fn lookup(node: &TestNode, user: &TestUser, query: &[(&str, &str)]) -> (StatusCode, Value) {
    let request = node.api.get("/api/v1/users/lookup/").query(&query);
    node.send(request, Some(&user.access)).await
}

async fn direct(node: &TestNode, user: &TestUser, peer: i64) -> (StatusCode, Value) {
    node.post(
        "/api/v1/chat/direct/",
        Some(&user.access),
        json!({ "user_id": peer }),
    )
    .await
}

/// Opens (or finds) the direct room of `user` with `peer`; returns the room object.
async fn open_direct(node: &TestNode, user: &TestUser, peer: &TestUser) -> Value {
    let (status, body) = direct(node, user, peer.id).await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "direct: {status} {body}"
    );
    body["data"]["chatroom"].clone()
}

async fn block(node: &TestNode, user: &TestUser, other: i64, verb: &str) -> (StatusCode, Value) {
    node.post(
        &format!("/api/v1/users/{other}/{verb}/"),
        Some(&user.access),
        json!({}),
    )
    .await
}

async fn blocked_list(node: &TestNode, user: &TestUser) -> Value {
    let (status, body) = node.get("/api/v1/users/blocked/", Some(&user.access)).await;
    assert_eq!(status, StatusCode::OK, "blocked list: {body}");
    body["data"]["users"].clone()
}

async fn list_page(
    node: &TestNode,
    user: &TestUser,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> (StatusCode, Value) {
    let mut query = Vec::new();
    if let Some(limit) = limit {
        query.push(("limit", limit));
    }
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor));
    }
    let request = node.api.get("/api/v1/chat/chatrooms/").query(&query);
    node.send(request, Some(&user.access)).await
}

/// The caller's whole chat list, following `next` with pages of `limit`.
async fn whole_list(node: &TestNode, user: &TestUser, limit: &str) -> Vec<Value> {
    let mut rooms = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let (status, body) = list_page(node, user, Some(limit), cursor.as_deref()).await;
        assert_eq!(status, StatusCode::OK, "chat list: {body}");
        rooms.extend(
            body["data"]["chatrooms"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        match body["data"]["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => {
                assert!(body["data"]["next"].is_null(), "{body}");
                return rooms;
            }
        }
    }
    panic!("the chat list never ended");
}

/// The caller's chat-list entry of `room`.
async fn list_entry(node: &TestNode, user: &TestUser, room: i64) -> Value {
    whole_list(node, user, "200")
        .await
        .into_iter()
        .find(|r| id(r) == room)
        .unwrap_or_else(|| panic!("room {room} is not in {}'s chat list", user.username))
}

async fn members_page(
    node: &TestNode,
    user: &TestUser,
    room: i64,
    query: &[(&str, &str)],
) -> (StatusCode, Value) {
    let request = node
        .api
        .get(&format!("/api/v1/chat/chatrooms/{room}/members/"))
        .query(&query);
    node.send(request, Some(&user.access)).await
}

async fn mark_read(node: &TestNode, user: &TestUser, room: i64, upto: i64) -> (StatusCode, Value) {
    node.post(
        &format!("/api/v1/chat/chatrooms/{room}/read/"),
        Some(&user.access),
        json!({ "upto": upto }),
    )
    .await
}

async fn receipts(
    node: &TestNode,
    user: &TestUser,
    room: i64,
    message: i64,
) -> (StatusCode, Value) {
    node.get(
        &format!("/api/v1/chat/chatrooms/{room}/messages/{message}/receipts/"),
        Some(&user.access),
    )
    .await
}

async fn send(node: &TestNode, user: &TestUser, room: i64, content: &str) -> i64 {
    id(&node.send_message(user, room, content).await)
}

async fn send_status(node: &TestNode, user: &TestUser, room: i64, content: &str) -> StatusCode {
    node.post(
        &format!("/api/v1/chat/chatrooms/{room}/messages/send/"),
        Some(&user.access),
        json!({ "content": content }),
    )
    .await
    .0
}

/// `message` as it appears in `user`'s history of `room`.
async fn in_history(node: &TestNode, user: &TestUser, room: i64, message: i64) -> Value {
    node.history(user, room, "?limit=200")
        .await
        .into_iter()
        .find(|m| id(m) == message)
        .unwrap_or_else(|| panic!("message {message} is not in the history"))
}

/// Every receipt frame `socket` gets for `window` (other frames are dropped).
async fn receipts_for(socket: &mut WsClient, window: Duration) -> Vec<Value> {
    let deadline = Instant::now() + window;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match socket.next_purpose_within("receipt", left).await {
            Some(data) => seen.push(data),
            None => return seen,
        }
    }
}

// ---- 1. finding people -------------------------------------------------------------------

#[tokio::test]
async fn lookup_finds_one_user_by_email_or_by_phone_in_any_format() {
    let node = spawn().await;
    let alice = node.register_with_phone("alice", "+14155552671").await;
    let bob = node.register_with_phone("bob", "+442071838750").await;
    let carol = node.register_with_phone("carol", "+33142685300").await;

    let found = [
        (("email", "alice@example.com"), &alice),
        (("email", "ALICE@Example.COM"), &alice),
        (("email", "bob@example.com"), &bob),
        (("phone", "+14155552671"), &alice),
        (("phone", "+1 415-555-2671"), &alice),
        (("phone", "+1 (415) 555-2671"), &alice),
        (("phone", "+442071838750"), &bob),
        (("phone", "+44 20 7183 8750"), &bob),
    ];
    for (query, user) in found {
        let (status, body) = lookup(&node, &carol, &[query]).await;
        assert_eq!(status, StatusCode::OK, "{query:?}: {body}");
        assert_eq!(body["success"], true, "{query:?}: {body}");
        assert_eq!(body["data"], json!({ "user": person(user) }), "{query:?}");
    }

    // Exact matches only: no prefix, no other number.
    for query in [
        ("email", "nobody@example.com"),
        ("email", "alice"),
        ("email", "alice@example"),
        ("phone", "+4930901820"),
        ("phone", "+1 415-555-2672"),
    ] {
        let (status, body) = lookup(&node, &carol, &[query]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{query:?}: {body}");
        assert_eq!(body["success"], false, "{query:?}");
        assert_eq!(body["errors"]["detail"], "No such user", "{query:?}");
    }

    let bad: [&[(&str, &str)]; 4] = [
        &[],
        &[("email", "alice@example.com"), ("phone", "+14155552671")],
        &[("phone", "not a phone")],
        &[("phone", "12345")],
    ];
    for query in bad {
        let (status, body) = lookup(&node, &carol, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {body}");
        assert_eq!(body["success"], false, "{query:?}");
    }

    let (status, _) = node
        .get("/api/v1/users/lookup/?email=alice%40example.com", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn lookups_over_the_per_user_limit_get_429_with_retry_after() {
    let node = crate::helpers::spawn_with(|config| {
        let limits = &mut config.limits;
        limits.enabled = true;
        let generous: chatnode::limits::Rate = "1000/h".parse().unwrap();
        limits.register_ip = generous;
        limits.register_email = generous;
        limits.login_ip = generous;
        limits.login_email = generous;
        limits.lookup = "3/h".parse().unwrap();
    })
    .await;
    let alice = node.register("alice").await;
    let carol = node.register("carol").await;
    let dave = node.register("dave").await;
    let query = [("email", "alice@example.com")];
    for (i, query) in [query, [("email", "nobody@example.com")], query]
        .iter()
        .enumerate()
    {
        let (status, body) = lookup(&node, &carol, query).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "lookup {i}: {status} {body}"
        );
    }
    let response = node
        .api
        .get("/api/v1/users/lookup/")
        .query(&query)
        .token(&carol.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    let body: Value = response.json();
    assert_eq!(body["success"], false, "{body}");
    assert!(body["errors"]["detail"].is_string(), "{body}");
    // Per user: another one still looks up.
    let (status, body) = lookup(&node, &dave, &query).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["user"], person(&alice));
}

// ---- 2. direct conversations ---------------------------------------------------------------

#[tokio::test]
async fn a_direct_conversation_opened_from_both_sides_at_once_is_one_room() {
    let node = spawn().await;
    for pair in 0..3 {
        let left = node.register(&format!("left{pair}")).await;
        let right = node.register(&format!("right{pair}")).await;
        let (from_left, from_right) = tokio::join!(
            direct(&node, &left, right.id),
            direct(&node, &right, left.id)
        );
        let mut statuses = [from_left.0.as_u16(), from_right.0.as_u16()];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 201],
            "one creates, the other finds: {} / {}",
            from_left.1,
            from_right.1
        );
        let room = id(&from_left.1["data"]["chatroom"]);
        assert_eq!(id(&from_right.1["data"]["chatroom"]), room, "one room");
        for (answer, peer) in [(&from_left.1, &right), (&from_right.1, &left)] {
            let chatroom = &answer["data"]["chatroom"];
            assert_eq!(chatroom["kind"], "direct", "{chatroom}");
            assert_eq!(chatroom["member_count"], 2, "{chatroom}");
            assert_eq!(chatroom["peer"], person(peer), "{chatroom}");
            assert_eq!(member_ids(chatroom), BTreeSet::from([left.id, right.id]));
        }

        // Ever after: 200 and the same room, from either side.
        for (user, peer) in [(&left, &right), (&right, &left)] {
            let (status, body) = direct(&node, user, peer.id).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(id(&body["data"]["chatroom"]), room);
            assert_eq!(body["data"]["chatroom"]["peer"], person(peer));
        }

        // Each chat list holds it once, with the other person as its peer.
        for (user, peer) in [(&left, &right), (&right, &left)] {
            let rooms = whole_list(&node, user, "200").await;
            assert_eq!(rooms.len(), 1, "{rooms:?}");
            assert_eq!(id(&rooms[0]), room);
            assert_eq!(rooms[0]["kind"], "direct");
            assert_eq!(rooms[0]["member_count"], 2);
            assert_eq!(rooms[0]["peer"], person(peer));
        }
    }

    // Groups say so, and carry no peer.
    let owner = node.register("owner").await;
    let guest = node.register("guest").await;
    let (status, body) = node
        .post(
            "/api/v1/chat/chatrooms/create/",
            Some(&owner.access),
            json!({"name": "group", "members": [guest.id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let group = &body["data"]["chatroom"];
    assert_eq!(group["kind"], "group", "{group}");
    assert_eq!(group["member_count"], 2, "{group}");
    assert!(has_no_peer(group), "{group}");
    let listed = list_entry(&node, &guest, id(group)).await;
    assert_eq!(listed["kind"], "group");
    assert!(has_no_peer(&listed), "{listed}");
}

#[tokio::test]
async fn a_direct_room_refuses_outsiders_and_cannot_be_entered_or_left() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;

    let (status, body) = direct(&node, &alice, alice.id).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "yourself: {body}");
    let (status, body) = direct(&node, &alice, 424242).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "unknown user: {body}");
    let (status, _) = node
        .post("/api/v1/chat/direct/", None, json!({"user_id": bob.id}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = direct(&node, &alice, bob.id).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let room = id(&body["data"]["chatroom"]);
    let message = send(&node, &alice, room, "just us").await;

    // Outsiders do not enter; members cannot leave (nor enter, below).
    let (status, body) = node
        .post(
            &format!("/api/v1/chat/chatrooms/{room}/enter/"),
            Some(&carol.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an outsider enters: {body}");
    for user in [&alice, &bob] {
        let (status, body) = node
            .post(
                &format!("/api/v1/chat/chatrooms/{room}/leave/"),
                Some(&user.access),
                json!({}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{} leaves: {body}",
            user.username
        );
    }

    // The outsider reads, writes and watches nothing.
    let (status, body) = node
        .get(
            &format!("/api/v1/chat/chatrooms/{room}/messages/"),
            Some(&carol.access),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "history: {body}");
    assert_eq!(
        send_status(&node, &carol, room, "let me in").await,
        StatusCode::FORBIDDEN
    );
    let (status, body) = node.refused_ws(&node.ws_url(room, &carol.access)).await;
    assert_eq!(status, 403, "socket: {body}");
    let (status, body) = members_page(&node, &carol, room, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members: {body}");
    let (status, body) = mark_read(&node, &carol, room, message).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "read: {body}");
    let (status, body) = receipts(&node, &carol, room, message).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "receipts: {body}");

    // Still exactly its two members, and their messages.
    let entry = list_entry(&node, &alice, room).await;
    assert_eq!(entry["member_count"], 2, "{entry}");
    assert_eq!(member_ids(&entry), BTreeSet::from([alice.id, bob.id]));
    let history = node.history(&bob, room, "").await;
    assert_eq!(history.iter().map(id).collect::<Vec<_>>(), vec![message]);

    // "enter by anyone -> 403": a member too (not the group answer "already joined").
    for user in [&alice, &bob] {
        let (status, body) = node
            .post(
                &format!("/api/v1/chat/chatrooms/{room}/enter/"),
                Some(&user.access),
                json!({}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{} enters: {body}",
            user.username
        );
    }
}

// ---- 3. blocking ---------------------------------------------------------------------------

#[tokio::test]
async fn blocking_holds_in_both_directions_and_shared_groups_still_work() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let conversation = open_direct(&node, &alice, &bob).await;
    let room = id(&conversation);
    let before = send(&node, &bob, room, "before the block").await;
    let group = node.create_room(&carol, "shared", &[&alice, &bob]).await;
    let mut alice_direct = node.ws(room, &alice).await;
    let mut bob_direct = node.ws(room, &bob).await;
    let mut alice_group = node.ws(group, &alice).await;

    let (status, body) = block(&node, &alice, alice.id, "block").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "yourself: {body}");
    for verb in ["block", "unblock"] {
        let (status, body) = block(&node, &alice, 424242, verb).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{verb} unknown: {body}");
    }
    assert_eq!(blocked_list(&node, &alice).await, json!([]));
    for _ in 0..2 {
        let (status, body) = block(&node, &alice, bob.id, "block").await;
        assert_eq!(status, StatusCode::OK, "block (idempotent): {body}");
        assert_eq!(body["data"], json!({ "blocked": person(&bob) }));
    }
    assert_eq!(blocked_list(&node, &alice).await, json!([person(&bob)]));
    assert_eq!(
        blocked_list(&node, &bob).await,
        json!([]),
        "a block is one user's"
    );
    let (status, _) = node.get("/api/v1/users/blocked/", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // No direct conversation, either way.
    let (status, body) = direct(&node, &bob, alice.id).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the blocked opens: {body}");
    let (status, body) = direct(&node, &alice, bob.id).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the blocker opens: {body}");

    // No sending into their direct room, either way, over REST or the socket.
    assert_eq!(
        send_status(&node, &bob, room, "REST from the blocked").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send_status(&node, &alice, room, "REST from the blocker").await,
        StatusCode::FORBIDDEN
    );
    for (socket, who) in [(&mut bob_direct, "blocked"), (&mut alice_direct, "blocker")] {
        socket
            .send_json(
                json!({"purpose": "send_chat_message", "message": format!("ws from the {who}")}),
            )
            .await;
        let answer = socket.next_json().await;
        assert_eq!(answer["success"], false, "ws send by the {who}: {answer}");
    }
    let history = node.history(&alice, room, "").await;
    assert_eq!(
        history.iter().map(id).collect::<Vec<_>>(),
        vec![before],
        "nothing was stored"
    );

    // The blocked cannot add the blocker to a new room; others they can.
    for members in [json!([alice.id]), json!([carol.id, alice.id])] {
        let (status, body) = node
            .post(
                "/api/v1/chat/chatrooms/create/",
                Some(&bob.access),
                json!({"name": "with alice", "members": members}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{members}: {body}");
    }
    let rooms: BTreeSet<i64> = whole_list(&node, &bob, "200")
        .await
        .iter()
        .map(id)
        .collect();
    assert_eq!(rooms, BTreeSet::from([room, group]), "nothing was created");
    node.create_room(&bob, "with carol", &[&carol]).await;

    // The shared group works as before, both ways.
    let from_bob = send(&node, &bob, group, "group from bob").await;
    assert_eq!(id(&alice_group.next_data().await), from_bob);
    let from_alice = send(&node, &alice, group, "group from alice").await;
    assert_eq!(id(&alice_group.next_data().await), from_alice);

    // Unblocked, idempotently: the same conversation again.
    for _ in 0..2 {
        let (status, body) = block(&node, &alice, bob.id, "unblock").await;
        assert_eq!(status, StatusCode::OK, "unblock (idempotent): {body}");
        assert_eq!(body["data"], json!({ "unblocked": person(&bob) }));
    }
    assert_eq!(blocked_list(&node, &alice).await, json!([]));
    let (status, body) = direct(&node, &bob, alice.id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(id(&body["data"]["chatroom"]), room);
    let after = send(&node, &bob, room, "after the unblock").await;
    let got = alice_direct.next_data().await;
    assert_eq!(id(&got), after, "{got}");
}

// ---- 4. the chat list ----------------------------------------------------------------------

#[tokio::test]
async fn the_unread_count_follows_sends_and_reads() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let dave = node.register("dave").await;
    let room = node.create_room(&alice, "news", &[&bob]).await;

    let fresh = list_entry(&node, &bob, room).await;
    assert_eq!(fresh["unread_count"], 0, "{fresh}");
    assert!(fresh["last_message"].is_null(), "{fresh}");
    assert_eq!(position(&fresh["last_read_id"]), 0, "{fresh}");

    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(send(&node, &alice, room, &format!("news {i}")).await);
    }
    let entry = list_entry(&node, &bob, room).await;
    assert_eq!(entry["unread_count"], 3, "{entry}");
    assert_eq!(id(&entry["last_message"]), sent[2], "{entry}");
    assert_eq!(entry["last_message"]["content"], "news 2");
    assert_eq!(entry["last_message"]["sender"], alice.id);
    assert_eq!(entry["last_message"]["chatroom"], room);
    let entry = list_entry(&node, &alice, room).await;
    assert_eq!(
        entry["unread_count"], 0,
        "one's own messages are read: {entry}"
    );

    let reply = send(&node, &bob, room, "a reply").await;
    let entry = list_entry(&node, &alice, room).await;
    assert_eq!(entry["unread_count"], 1, "{entry}");
    assert_eq!(id(&entry["last_message"]), reply);
    assert_eq!(entry["last_message"]["content"], "a reply");
    let entry = list_entry(&node, &bob, room).await;
    assert_eq!(
        entry["unread_count"], 3,
        "bob's own reply does not count: {entry}"
    );
    assert_eq!(id(&entry["last_message"]), reply);

    let (status, body) = mark_read(&node, &bob, room, sent[1]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({"read": {"chat_id": room, "upto": sent[1], "unread_count": 1}})
    );
    let entry = list_entry(&node, &bob, room).await;
    assert_eq!(entry["unread_count"], 1, "{entry}");
    assert_eq!(entry["last_read_id"], sent[1], "{entry}");

    let (status, body) = mark_read(&node, &bob, room, reply).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["read"]["unread_count"], 0, "{body}");
    let entry = list_entry(&node, &bob, room).await;
    assert_eq!(entry["unread_count"], 0, "{entry}");
    assert_eq!(entry["last_read_id"], reply);

    // Join and leave notices are not messages.
    let enter = format!("/api/v1/chat/chatrooms/{room}/enter/");
    let leave = format!("/api/v1/chat/chatrooms/{room}/leave/");
    assert_eq!(
        node.post(&enter, Some(&dave.access), json!({})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        node.post(&leave, Some(&dave.access), json!({})).await.0,
        StatusCode::OK
    );
    let entry = list_entry(&node, &bob, room).await;
    assert_eq!(entry["unread_count"], 0, "{entry}");
    assert_eq!(id(&entry["last_message"]), reply, "{entry}");
    let entry = list_entry(&node, &alice, room).await;
    assert_eq!(entry["unread_count"], 1, "{entry}");
}

#[tokio::test]
async fn the_chat_list_is_ordered_by_activity_and_paged_with_a_cursor() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let mut rooms = Vec::new();
    for i in 0..4 {
        rooms.push(
            node.create_room(&alice, &format!("room {i}"), &[&bob])
                .await,
        );
    }
    rooms.push(id(&open_direct(&node, &alice, &bob).await));
    let ids = |list: &[Value]| list.iter().map(id).collect::<Vec<_>>();

    // Without messages: by creation, newest first.
    let newest_first: Vec<i64> = rooms.iter().rev().copied().collect();
    assert_eq!(ids(&whole_list(&node, &alice, "200").await), newest_first);

    // A message moves its room to the top, for every member.
    send(&node, &bob, rooms[1], "up").await;
    send(&node, &alice, rooms[3], "further up").await;
    let expected = vec![rooms[3], rooms[1], rooms[4], rooms[2], rooms[0]];
    for user in [&alice, &bob] {
        assert_eq!(ids(&whole_list(&node, user, "200").await), expected);
    }
    let (status, body) = list_page(&node, &alice, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(body["data"]["chatrooms"].as_array().unwrap()), expected);
    assert!(body["data"]["next"].is_null(), "{body}");

    // Pages of two: 2 + 2 + 1, the last without a cursor.
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (status, body) = list_page(&node, &alice, Some("2"), cursor.as_deref()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages.push(ids(body["data"]["chatrooms"].as_array().unwrap()));
        match body["data"]["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages.len() < 10, "the pages never end: {pages:?}");
    }
    assert_eq!(
        pages,
        vec![
            vec![rooms[3], rooms[1]],
            vec![rooms[4], rooms[2]],
            vec![rooms[0]]
        ]
    );

    for limit in ["0", "-1", "abc", ""] {
        let (status, body) = list_page(&node, &alice, Some(limit), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit {limit:?}: {body}");
    }
    for cursor in ["garbage", "!!!"] {
        let (status, body) = list_page(&node, &alice, Some("2"), Some(cursor)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "cursor {cursor:?}: {body}");
    }
    let (status, _) = node.get("/api/v1/chat/chatrooms/", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_limit_the_chat_list_gives_fifty_rooms_and_a_cursor() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let mut rooms = Vec::new();
    for i in 0..52 {
        rooms.push(node.create_room(&alice, &format!("room {i}"), &[]).await);
    }
    let (status, body) = list_page(&node, &alice, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first: Vec<i64> = body["data"]["chatrooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    let newest_first: Vec<i64> = rooms.iter().rev().copied().collect();
    assert_eq!(first, newest_first[..50]);
    let next = body["data"]["next"]
        .as_str()
        .unwrap_or_else(|| panic!("a cursor after the first page: {}", body["data"]["next"]));
    let (status, body) = list_page(&node, &alice, None, Some(next)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rest: Vec<i64> = body["data"]["chatrooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(rest, newest_first[50..]);
    assert!(body["data"]["next"].is_null(), "{body}");
}

#[tokio::test]
async fn the_chat_list_inlines_ten_members_and_the_members_endpoint_pages_them_all() {
    let node = spawn().await;
    let owner = node.register("owner").await;
    let outsider = node.register("outsider").await;
    let mut others = Vec::new();
    for i in 0..14 {
        others.push(node.register(&format!("member{i}")).await);
    }
    let refs: Vec<&TestUser> = others.iter().collect();
    let room = node.create_room(&owner, "crowd", &refs).await;
    let everyone: BTreeSet<i64> = others.iter().map(|u| u.id).chain([owner.id]).collect();

    let entry = list_entry(&node, &others[3], room).await;
    assert_eq!(entry["member_count"], 15, "{entry}");
    let inlined = member_ids(&entry);
    assert_eq!(
        entry["members"].as_array().unwrap().len(),
        10,
        "at most 10 inlined: {entry}"
    );
    assert!(inlined.is_subset(&everyone), "{inlined:?}");

    // Pages of four: 4 + 4 + 4 + 3, every member once, each as a user object.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut query = vec![("limit", "4")];
        if let Some(cursor) = cursor.as_deref() {
            query.push(("cursor", cursor));
        }
        let (status, body) = members_page(&node, &owner, room, &query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body["data"]["members"].as_array().unwrap();
        assert!(page.len() <= 4, "{body}");
        seen.extend(page.iter().cloned());
        match body["data"]["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => {
                cursor = None;
                break;
            }
        }
    }
    assert!(cursor.is_none(), "the member pages never ended");
    assert_eq!(seen.len(), 15, "{seen:?}");
    assert_eq!(seen.iter().map(id).collect::<BTreeSet<_>>(), everyone);
    for user in others.iter().chain([&owner]) {
        let listed = seen.iter().find(|m| id(m) == user.id).unwrap();
        assert_eq!(listed, &person(user));
    }
    let (status, body) = members_page(&node, &owner, room, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["members"].as_array().unwrap().len(), 15);
    assert!(body["data"]["next"].is_null(), "{body}");

    let (status, body) = members_page(&node, &outsider, room, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = members_page(&node, &owner, 999_999, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for query in [[("limit", "0")], [("limit", "x")], [("cursor", "garbage")]] {
        let (status, body) = members_page(&node, &owner, room, &query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {body}");
    }
}

// ---- 5. read receipts ----------------------------------------------------------------------

#[tokio::test]
async fn a_read_position_moves_forward_only_and_reaches_other_members_sockets() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let outsider = node.register("outsider").await;
    let room = node.create_room(&alice, "r", &[&bob]).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(send(&node, &alice, room, &format!("m{i}")).await);
    }
    let mut alice_ws = node.ws(room, &alice).await;

    let (status, body) = mark_read(&node, &bob, room, sent[1]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({"read": {"chat_id": room, "upto": sent[1], "unread_count": 1}})
    );
    let receipt = alice_ws.next_receipt("read", bob.id, sent[1]).await;
    assert!(
        receipt["seq"].as_i64().is_some_and(|seq| seq > 0),
        "{receipt}"
    );
    assert_eq!(
        receipt,
        json!({"purpose": "receipt", "event": "read", "chat_id": room, "user_id": bob.id, "upto": sent[1], "seq": receipt["seq"]})
    );

    // A lower position is a no-op, and no frame says otherwise.
    let (status, body) = mark_read(&node, &bob, room, sent[0]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["read"]["upto"], sent[1], "{body}");
    assert_eq!(body["data"]["read"]["unread_count"], 1, "{body}");
    let later = receipts_for(&mut alice_ws, Duration::from_millis(600)).await;
    assert!(
        later
            .iter()
            .all(|r| r["event"] != "read" || position(&r["upto"]) >= sent[1]),
        "a read position moved back: {later:?}"
    );
    assert_eq!(list_entry(&node, &bob, room).await["last_read_id"], sent[1]);

    // Past the newest message, or not a member.
    let (status, body) = mark_read(&node, &bob, room, sent[2] + 1000).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(list_entry(&node, &bob, room).await["last_read_id"], sent[1]);
    let (status, body) = mark_read(&node, &outsider, room, sent[0]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The socket frame does the same.
    let mut bob_ws = node.ws(room, &bob).await;
    let initial = bob_ws.next_purpose("receipts").await;
    let own = initial["positions"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["user_id"] == bob.id).cloned())
        .unwrap_or_else(|| panic!("bob's position: {initial}"));
    assert_eq!(own["read_upto"], sent[1], "{initial}");
    bob_ws
        .send_json(json!({"purpose": "mark_read", "upto": sent[2]}))
        .await;
    let receipt = alice_ws.next_receipt("read", bob.id, sent[2]).await;
    assert_eq!(receipt["upto"], sent[2], "{receipt}");
    assert_eq!(receipt["chat_id"], room, "{receipt}");
    let entry = eventually_ok(WAIT, "the socket's read shows in the list", || async {
        let entry = list_entry(&node, &bob, room).await;
        if entry["last_read_id"] == sent[2] {
            Ok(entry)
        } else {
            Err(entry.to_string())
        }
    })
    .await;
    assert_eq!(entry["unread_count"], 0, "{entry}");

    bob_ws
        .send_json(json!({"purpose": "mark_read", "upto": sent[0]}))
        .await;
    bob_ws
        .send_json(json!({"purpose": "mark_read", "upto": sent[2] + 1000}))
        .await;
    // (Whatever the node answers a good mark_read with, the error comes after it.)
    let answer = loop {
        let frame = bob_ws.next_json().await;
        if frame["success"] == false {
            break frame;
        }
        assert_ne!(frame["data"]["event"], "message", "{frame}");
    };
    assert!(answer["errors"]["detail"].is_string(), "too far: {answer}");
    let later = receipts_for(&mut alice_ws, Duration::from_millis(600)).await;
    assert!(
        later
            .iter()
            .all(|r| r["event"] != "read" || position(&r["upto"]) >= sent[2]),
        "a read position moved back: {later:?}"
    );
    assert_eq!(list_entry(&node, &bob, room).await["last_read_id"], sent[2]);

    // The socket stayed open.
    let live = send(&node, &alice, room, "still there?").await;
    let got = loop {
        let data = bob_ws.next_data().await;
        if data["event"] == "message" {
            break data;
        }
    };
    assert_eq!(id(&got), live, "{got}");
}

// ---- 6. delivery receipts ------------------------------------------------------------------

#[tokio::test]
async fn a_message_written_to_a_socket_or_in_a_history_page_is_delivered() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let room = node.create_room(&alice, "r", &[&bob, &carol]).await;
    let mut alice_ws = node.ws(room, &alice).await;
    let mut bob_ws = node.ws(room, &bob).await;

    let message = send(&node, &alice, room, "did you get it?").await;
    assert_eq!(id(&bob_ws.next_data().await), message);
    let receipt = alice_ws.next_receipt("delivered", bob.id, message).await;
    assert!(
        receipt["seq"].as_i64().is_some_and(|seq| seq > 0),
        "{receipt}"
    );
    assert_eq!(
        receipt,
        json!({"purpose": "receipt", "event": "delivered", "chat_id": room, "user_id": bob.id, "upto": message, "seq": receipt["seq"]})
    );
    // Bob's own socket hears of it too (every member's socket does).
    let own = bob_ws.next_receipt("delivered", bob.id, message).await;
    assert_eq!(own["upto"], message);

    // Carol has no socket: her history page delivers it.
    let page = node.history(&carol, room, "").await;
    assert_eq!(page.iter().map(id).collect::<Vec<_>>(), vec![message]);
    let receipt = alice_ws.next_receipt("delivered", carol.id, message).await;
    assert_eq!(receipt["upto"], message, "{receipt}");

    let state = eventually_ok(WAIT, "both deliveries counted", || async {
        let state = in_history(&node, &alice, room, message).await;
        if state["delivered_count"] == 2 {
            Ok(state)
        } else {
            Err(state.to_string())
        }
    })
    .await;
    assert_eq!(state["read_count"], 0, "{state}");
}

#[tokio::test]
async fn a_burst_of_messages_gets_far_fewer_receipt_frames_than_messages() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let readers: Vec<TestUser> = [
        node.register("bob").await,
        node.register("carol").await,
        node.register("dave").await,
    ]
    .into();
    let refs: Vec<&TestUser> = readers.iter().collect();
    let room = node.create_room(&alice, "busy", &refs).await;
    let mut sender = node.ws(room, &alice).await;
    let mut sockets = Vec::new();
    for reader in &readers {
        sockets.push(node.ws(room, reader).await);
    }
    let total = 200;
    for i in 0..total {
        sender
            .send_json(json!({"purpose": "send_chat_message", "message": format!("burst {i}")}))
            .await;
    }

    /// Reads `socket` until `total` messages arrived, then every frame for `tail`; returns
    /// the last message id and the receipt frames.
    async fn drain(socket: &mut WsClient, total: usize, tail: Duration) -> (i64, Vec<Value>) {
        let mut messages = 0;
        let mut last = 0;
        let mut receipts = Vec::new();
        while messages < total {
            let frame = socket.next_frame().await;
            let data = &frame["data"];
            if data["purpose"] == "receipt" {
                receipts.push(data.clone());
            } else if data["event"] == "message" {
                messages += 1;
                last = id(data);
            }
        }
        receipts.extend(receipts_for(socket, tail).await);
        (last, receipts)
    }
    // Every socket read at once, so none falls behind; then a second after the last message.
    let tail = Duration::from_secs(1);
    let mut all = vec![&mut sender];
    all.extend(sockets.iter_mut());
    let drained =
        futures_util::future::join_all(all.into_iter().map(|s| drain(s, total, tail))).await;
    let newest = drained[0].0;
    for (i, (last, receipts)) in drained.iter().enumerate() {
        println!(
            "socket {i}: {} receipt frames for {total} messages",
            receipts.len()
        );
        assert_eq!(*last, newest, "socket {i} got every message");
        assert!(
            receipts.len() < total,
            "socket {i}: {} receipt frames for {total} messages x {} readers",
            receipts.len(),
            readers.len()
        );
    }
    // Coalesced frames still carry the highest position: the sender sees every reader reach
    // the newest message (already, or in a frame still to come).
    let sender_receipts = drained[0].1.clone();
    for reader in &readers {
        let highest = sender_receipts
            .iter()
            .filter(|r| r["event"] == "delivered" && r["user_id"] == reader.id)
            .map(|r| position(&r["upto"]))
            .max();
        assert!(
            highest <= Some(newest),
            "{}'s delivered receipts: {sender_receipts:?}",
            reader.username
        );
        if highest != Some(newest) {
            let receipt = sender.next_receipt("delivered", reader.id, newest).await;
            assert_eq!(receipt["upto"], newest, "{receipt}");
        }
    }
    eventually_ok(WAIT, "every reader's delivery counted", || async {
        let state = in_history(&node, &alice, room, newest).await;
        if state["delivered_count"] == 3 {
            Ok(())
        } else {
            Err(state.to_string())
        }
    })
    .await;
}

// ---- 7. per-message state ------------------------------------------------------------------

#[tokio::test]
async fn own_messages_in_a_direct_room_go_from_sent_to_delivered_to_read() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let room = id(&open_direct(&node, &alice, &bob).await);
    let mut alice_ws = node.ws(room, &alice).await;

    // Bob has neither a socket nor fetched anything: sent.
    let message = send(&node, &alice, room, "tick").await;
    let live = alice_ws.next_data().await;
    assert_eq!(id(&live), message);
    assert_eq!(live["delivered_count"], 0, "own live frame: {live}");
    assert_eq!(live["read_count"], 0, "own live frame: {live}");
    assert_eq!(live["status"], "sent", "own live frame: {live}");
    let state = in_history(&node, &alice, room, message).await;
    assert_eq!(state["status"], "sent", "{state}");
    assert_eq!(state["delivered_count"], 0, "{state}");
    assert_eq!(state["read_count"], 0, "{state}");
    let (status, body) = receipts(&node, &alice, room, message).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({"receipts": [{"user_id": bob.id, "username": bob.username, "delivered_at": null, "read_at": null}]})
    );

    // Bob's history page delivers it; his copy carries no state.
    let theirs = in_history(&node, &bob, room, message).await;
    for key in ["delivered_count", "read_count", "status"] {
        assert!(
            theirs.get(key).is_none(),
            "{key} on another's message: {theirs}"
        );
    }
    let state = eventually_ok(WAIT, "the message shows as delivered", || async {
        let state = in_history(&node, &alice, room, message).await;
        if state["status"] == "delivered" {
            Ok(state)
        } else {
            Err(state.to_string())
        }
    })
    .await;
    assert_eq!(state["delivered_count"], 1, "{state}");
    assert_eq!(state["read_count"], 0, "{state}");
    let (_, body) = receipts(&node, &alice, room, message).await;
    let receipt = &body["data"]["receipts"][0];
    assert_eq!(receipt["user_id"], bob.id, "{body}");
    assert!(receipt["delivered_at"].is_string(), "{body}");
    assert!(receipt["read_at"].is_null(), "{body}");

    let (status, body) = mark_read(&node, &bob, room, message).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state = eventually_ok(WAIT, "the message shows as read", || async {
        let state = in_history(&node, &alice, room, message).await;
        if state["status"] == "read" {
            Ok(state)
        } else {
            Err(state.to_string())
        }
    })
    .await;
    assert_eq!(state["delivered_count"], 1, "{state}");
    assert_eq!(state["read_count"], 1, "{state}");
    let (_, body) = receipts(&node, &alice, room, message).await;
    let receipts_now = body["data"]["receipts"].as_array().unwrap();
    assert_eq!(receipts_now.len(), 1, "one per other member: {body}");
    assert!(receipts_now[0]["delivered_at"].is_string(), "{body}");
    assert!(receipts_now[0]["read_at"].is_string(), "{body}");

    // Bob's reply carries no state for alice; on bob's own socket it does.
    let mut bob_ws = node.ws(room, &bob).await;
    let reply = send(&node, &bob, room, "tock").await;
    let on_alice = alice_ws.next_data().await;
    assert_eq!(id(&on_alice), reply);
    for key in ["delivered_count", "read_count", "status"] {
        assert!(
            on_alice.get(key).is_none(),
            "{key} on another's live message: {on_alice}"
        );
    }
    let on_bob = bob_ws.next_data().await;
    assert_eq!(id(&on_bob), reply);
    assert!(
        on_bob["delivered_count"].is_u64(),
        "own live frame: {on_bob}"
    );
    assert!(on_bob["status"].is_string(), "own live frame: {on_bob}");
    let reply_for_alice = in_history(&node, &alice, room, reply).await;
    for key in ["delivered_count", "read_count", "status"] {
        assert!(
            reply_for_alice.get(key).is_none(),
            "{key}: {reply_for_alice}"
        );
    }

    // The receipts endpoint: members only, messages of that room only.
    let (status, body) = receipts(&node, &carol, room, message).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = receipts(&node, &alice, room, 999_999).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let elsewhere = node.create_room(&alice, "elsewhere", &[]).await;
    let other = send(&node, &alice, elsewhere, "not in the direct room").await;
    let (status, body) = receipts(&node, &alice, room, other).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn own_messages_in_a_group_count_deliveries_and_reads_without_a_status() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let room = node.create_room(&alice, "g", &[&bob, &carol]).await;
    let message = send(&node, &alice, room, "to the group").await;
    let state = in_history(&node, &alice, room, message).await;
    assert_eq!(
        (&state["delivered_count"], &state["read_count"]),
        (&json!(0), &json!(0)),
        "{state}"
    );
    assert!(
        state.get("status").is_none(),
        "no status in a group: {state}"
    );

    // A read delivers too.
    let (status, body) = mark_read(&node, &bob, room, message).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state = eventually_ok(WAIT, "bob's read counted", || async {
        let state = in_history(&node, &alice, room, message).await;
        if state["read_count"] == 1 {
            Ok(state)
        } else {
            Err(state.to_string())
        }
    })
    .await;
    assert_eq!(state["delivered_count"], 1, "a read is a delivery: {state}");
    assert!(state.get("status").is_none(), "{state}");

    let (status, body) = receipts(&node, &alice, room, message).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut listed = body["data"]["receipts"].as_array().unwrap().clone();
    listed.sort_by_key(|r| r["user_id"].as_i64());
    assert_eq!(listed.len(), 2, "one per other member: {body}");
    assert_eq!(listed[0]["user_id"], bob.id);
    assert_eq!(listed[0]["username"], bob.username.as_str());
    assert!(listed[0]["delivered_at"].is_string() && listed[0]["read_at"].is_string());
    assert_eq!(listed[1]["user_id"], carol.id);
    assert!(listed[1]["delivered_at"].is_null() && listed[1]["read_at"].is_null());
}

// ---- 8. catching up ------------------------------------------------------------------------

#[tokio::test]
async fn a_socket_first_gets_every_members_positions() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let room = node.create_room(&alice, "r", &[&bob, &carol]).await;
    let first = send(&node, &alice, room, "one").await;
    let second = send(&node, &alice, room, "two").await;
    // While alice is away: bob reads both, carol fetches them.
    let (status, body) = mark_read(&node, &bob, room, second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    node.history(&carol, room, "").await;
    eventually_ok(WAIT, "the positions are stored", || async {
        let (_, body) = receipts(&node, &alice, room, second).await;
        let all = body["data"]["receipts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let done = |user: &TestUser, read: bool| {
            all.iter().any(|r| {
                r["user_id"] == user.id
                    && r["delivered_at"].is_string()
                    && r["read_at"].is_string() == read
            })
        };
        if done(&bob, true) && done(&carol, false) {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;

    for since in [Some(0), None] {
        let mut url = node.ws_url(room, &alice.access);
        if let Some(since) = since {
            url.push_str(&format!("&since={since}"));
        }
        let socket = Socket::connect(&url, None).await.expect("connects");
        let mut socket = WsClient { socket };
        let frame = socket.next_frame().await;
        let data = &frame["data"];
        assert_eq!(
            data["purpose"], "receipts",
            "first frame (since {since:?}): {frame}"
        );
        assert_eq!(data["chat_id"], room, "{frame}");
        let positions = data["positions"].as_array().unwrap();
        assert_eq!(positions.len(), 3, "every member: {frame}");
        let of = |user: &TestUser| {
            positions
                .iter()
                .find(|p| p["user_id"] == user.id)
                .unwrap_or_else(|| panic!("no position of {}: {frame}", user.username))
        };
        assert_eq!(position(&of(&bob)["read_upto"]), second, "{frame}");
        assert_eq!(
            position(&of(&bob)["delivered_upto"]),
            second,
            "a read delivers: {frame}"
        );
        assert_eq!(position(&of(&carol)["delivered_upto"]), second, "{frame}");
        assert_eq!(position(&of(&carol)["read_upto"]), 0, "{frame}");
        of(&alice);
        if since.is_some() {
            // Then the replay.
            assert_eq!(id(&socket.next_data().await), first);
            assert_eq!(id(&socket.next_data().await), second);
        }
        drop(socket);
        node.wait_for_sockets(0).await;
    }
}
