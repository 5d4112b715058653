//! Reactions over REST and over the socket: one emoji per member per message, replaced by
//! the next and taken back with `DELETE`; the room sees each change as a `reaction` frame
//! with its `seq`, the log and an `after_seq` socket replay it, history shows the counts,
//! a message deleted for everyone loses them, and a block in a direct conversation stops them.

use chatnode_client::{Reaction, Socket, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn, TestNode, TestUser, WsClient};

const THUMBS: &str = "\u{1F44D}";
const HEART: &str = "\u{2764}\u{FE0F}";

fn reaction_path(room: i64, id: i64) -> String {
    format!("/api/v1/chat/chatrooms/{room}/messages/{id}/reaction/")
}

async fn put(node: &TestNode, user: &TestUser, room: i64, id: i64, body: Value) -> StatusCode {
    let request = node
        .api
        .request(chatnode_client::Method::PUT, &reaction_path(room, id))
        .json(&body);
    let (status, body) = node.send(request, Some(&user.access)).await;
    assert_eq!(body["success"], status == StatusCode::OK, "{body}");
    status
}

async fn send(node: &TestNode, user: &TestUser, room: i64, text: &str) -> i64 {
    node.send_message(user, room, text).await["id"]
        .as_i64()
        .unwrap()
}

fn counts(pairs: &[(&str, i64)]) -> Vec<Reaction> {
    pairs
        .iter()
        .map(|(emoji, count)| Reaction {
            emoji: emoji.to_string(),
            count: *count,
        })
        .collect()
}

#[tokio::test]
async fn members_react_replace_and_remove_and_the_room_sees_each_change_with_its_seq() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "reactions", &[&bob]).await;
    let id = send(&node, &alice, room, "lunch?").await;
    let mut alice_ws = node.ws(room, &alice).await;

    let answer = node.api.react(&bob.access, room, id, THUMBS).await.unwrap();
    assert_eq!(
        (answer.message_id, answer.my_reaction.as_deref()),
        (id, Some(THUMBS))
    );
    assert_eq!(answer.reactions, counts(&[(THUMBS, 1)]));
    let frame = alice_ws.next_purpose("reaction").await;
    assert_eq!(
        (&frame["message_id"], &frame["user_id"], &frame["emoji"]),
        (&json!(id), &json!(bob.id), &json!(THUMBS))
    );
    assert_eq!(frame["reactions"], json!([{"emoji": THUMBS, "count": 1}]));
    let first_seq = frame["seq"].as_i64().expect("a reaction has its seq");

    let answer = node
        .api
        .react(&alice.access, room, id, THUMBS)
        .await
        .unwrap();
    assert_eq!(answer.reactions, counts(&[(THUMBS, 2)]));
    // Bob's second reaction replaces his first.
    let answer = node.api.react(&bob.access, room, id, HEART).await.unwrap();
    assert_eq!(answer.reactions, counts(&[(HEART, 1), (THUMBS, 1)]));
    assert_eq!(answer.my_reaction.as_deref(), Some(HEART));
    alice_ws.next_purpose("reaction").await;
    let replaced = alice_ws.next_purpose("reaction").await;
    assert_eq!(replaced["emoji"], HEART);
    assert!(replaced["seq"].as_i64().unwrap() > first_seq, "{replaced}");
    // History has the counts, and each reader's own reaction.
    for (reader, mine) in [(&alice, THUMBS), (&bob, HEART)] {
        let history = node.api.history(&reader.access, room, Default::default());
        let message = history.await.unwrap().remove(0);
        assert_eq!(message.reactions, counts(&[(HEART, 1), (THUMBS, 1)]));
        assert_eq!(
            message.my_reaction.as_deref(),
            Some(mine),
            "{}",
            reader.username
        );
    }

    let answer = node.api.unreact(&bob.access, room, id).await.unwrap();
    assert_eq!(
        (answer.reactions, answer.my_reaction),
        (counts(&[(THUMBS, 1)]), None)
    );
    let removed = alice_ws.next_purpose("reaction").await;
    assert_eq!(
        (&removed["emoji"], &removed["user_id"]),
        (&Value::Null, &json!(bob.id))
    );
    // Taking back a reaction one does not have changes nothing and tells no one.
    let again = node.api.unreact(&bob.access, room, id).await.unwrap();
    assert_eq!(again.reactions, counts(&[(THUMBS, 1)]));
    let next = send(&node, &alice, room, "silence before this").await;
    assert_eq!(alice_ws.next_data().await["id"], next);
}

#[tokio::test]
async fn a_react_frame_does_what_rest_does_and_bad_ones_are_refused() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "frames", &[&bob]).await;
    let id = send(&node, &alice, room, "react to me").await;
    let mut alice_ws = node.ws(room, &alice).await;
    let mut bob_ws = node.ws(room, &bob).await;

    bob_ws
        .send_json(json!({"purpose": "react", "id": id, "emoji": THUMBS}))
        .await;
    for ws in [&mut alice_ws, &mut bob_ws] {
        let frame = ws.next_purpose("reaction").await;
        assert_eq!(
            (&frame["emoji"], &frame["user_id"]),
            (&json!(THUMBS), &json!(bob.id))
        );
        assert!(frame["seq"].as_i64().is_some(), "{frame}");
    }
    bob_ws
        .send_json(json!({"purpose": "react", "id": id, "emoji": null}))
        .await;
    let removed = alice_ws.next_purpose("reaction").await;
    bob_ws.next_purpose("reaction").await;
    assert_eq!(
        (&removed["emoji"], &removed["reactions"]),
        (&Value::Null, &json!([]))
    );
    for bad in [
        json!({"purpose": "react", "id": id, "emoji": "a"}),
        json!({"purpose": "react", "id": id, "emoji": 5}),
        json!({"purpose": "react", "id": "x", "emoji": THUMBS}),
        json!({"purpose": "react", "id": id + 99, "emoji": THUMBS}),
    ] {
        bob_ws.send_json(bad.clone()).await;
        assert_eq!(bob_ws.next_json().await["success"], false, "{bad}");
    }
}

#[tokio::test]
async fn non_members_unknown_messages_and_anything_but_one_emoji_are_refused() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let carol = node.register("carol").await;
    let room = node.create_room(&alice, "refusals", &[]).await;
    let other = node.create_room(&alice, "other", &[]).await;
    let id = send(&node, &alice, room, "hi").await;
    let elsewhere = send(&node, &alice, other, "elsewhere").await;
    let thumbs = json!({"emoji": THUMBS});
    let (forbidden, missing) = (StatusCode::FORBIDDEN, StatusCode::NOT_FOUND);
    for (user, room, id, want) in [
        (&carol, room, id, forbidden),
        (&alice, room, id + 99, missing),
        (&alice, room, elsewhere, missing),
        (&alice, 999, id, missing),
    ] {
        assert_eq!(put(&node, user, room, id, thumbs.clone()).await, want);
    }
    let long = format!("{THUMBS}{}", "\u{FE0F}".repeat(10));
    for emoji in ["a", "ab", "", "\u{1F44D}\u{1F44D}", &long] {
        let body = json!({"emoji": emoji});
        let status = put(&node, &alice, room, id, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{emoji:?}");
    }
    let status = put(&node, &alice, room, id, json!({"nothing": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let request = node
        .api
        .request(chatnode_client::Method::DELETE, &reaction_path(room, id));
    let (status, body) = node.send(request, Some(&carol.access)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let zwj = "\u{1F469}\u{200D}\u{1F4BB}";
    let answer = node.api.react(&alice.access, room, id, zwj).await.unwrap();
    assert_eq!(answer.reactions.len(), 1, "a ZWJ sequence is one emoji");
}

#[tokio::test]
async fn the_log_and_a_socket_with_after_seq_replay_reactions() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "replay", &[&bob]).await;
    let id = send(&node, &alice, room, "replay me").await;
    let before = node.api.events(&alice.access, room, 0, None).await.unwrap();
    node.api.react(&bob.access, room, id, THUMBS).await.unwrap();

    let log = node
        .api
        .events(&alice.access, room, before.last_seq, None)
        .await
        .unwrap();
    assert_eq!(log.events.len(), 1, "{:?}", log.events);
    let logged = &log.events[0];
    assert_eq!(
        (&logged["purpose"], &logged["message_id"], &logged["emoji"]),
        (&json!("reaction"), &json!(id), &json!(THUMBS))
    );
    assert_eq!(logged["seq"], log.last_seq);
    let url = format!(
        "{}&after_seq={}",
        node.ws_url(room, &alice.access),
        before.last_seq
    );
    let mut late = WsClient {
        socket: Socket::connect(&url, None).await.unwrap(),
    };
    let replayed = late.next_purpose("reaction").await;
    assert_eq!(&replayed, logged);
}

#[tokio::test]
async fn a_message_deleted_for_everyone_loses_its_reactions_and_takes_no_more() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "gone", &[&bob]).await;
    let id = send(&node, &alice, room, "soon gone").await;
    node.api.react(&bob.access, room, id, THUMBS).await.unwrap();
    node.api
        .delete_message(&alice.access, room, id)
        .await
        .unwrap();

    assert_eq!(
        put(&node, &bob, room, id, json!({"emoji": HEART})).await,
        StatusCode::NOT_FOUND
    );
    let request = node
        .api
        .request(chatnode_client::Method::DELETE, &reaction_path(room, id));
    assert_eq!(
        node.send(request, Some(&bob.access)).await.0,
        StatusCode::NOT_FOUND
    );
    let history = node.history(&alice, room, "").await;
    assert_eq!(history[0]["deleted"], true);
    assert!(history[0].get("reactions").is_none(), "{}", history[0]);
    // The log keeps that there was a reaction, not which.
    let log = node.api.events(&alice.access, room, 0, None).await.unwrap();
    let logged = log
        .events
        .iter()
        .find(|e| e["purpose"] == "reaction")
        .unwrap();
    assert_eq!(
        (&logged["emoji"], &logged["reactions"], &logged["deleted"]),
        (&Value::Null, &json!([]), &json!(true))
    );
}

#[tokio::test]
async fn a_block_in_a_direct_conversation_stops_reactions_but_not_taking_one_back() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let (status, body) = node
        .post(
            "/api/v1/chat/direct/",
            Some(&alice.access),
            json!({"user_id": bob.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let room = body["data"]["chatroom"]["id"].as_i64().unwrap();
    let id = send(&node, &alice, room, "hi bob").await;
    node.api.react(&bob.access, room, id, THUMBS).await.unwrap();
    let blocking = format!("/api/v1/users/{}/block/", bob.id);
    let (status, body) = node.post(&blocking, Some(&alice.access), json!({})).await;
    assert!(status.is_success(), "{body}");

    assert_eq!(
        put(&node, &bob, room, id, json!({"emoji": HEART})).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put(&node, &alice, room, id, json!({"emoji": HEART})).await,
        StatusCode::FORBIDDEN
    );
    let taken_back = node.api.unreact(&bob.access, room, id).await.unwrap();
    assert!(taken_back.reactions.is_empty());
}
