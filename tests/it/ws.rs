use std::time::Duration;

use chatnode::auth::Claims;
use chatnode_client::{SocketOptions, StatusCode};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{eventually, is_background, spawn, spawn_with, stalled_ws, JWT_SECRET, WAIT};

#[tokio::test]
async fn bad_handshakes_are_refused_before_upgrading() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let outsider = node.register("outsider").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let expired = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            token_type: "access".into(),
            exp: 1_000,
            iat: 0,
            jti: "old".into(),
            user_id: alice.id,
        },
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let base = format!("ws://{}/ws/chat", node.address);
    let cases = [
        (format!("{base}/{room}/"), 401, "no_auth_error"),
        (
            format!("{base}/{room}/?token=nonsense"),
            401,
            "Token is invalid",
        ),
        (
            format!("{base}/{room}/?token={expired}"),
            401,
            "Token has expired",
        ),
        (
            format!("{base}/{room}/?token={}", alice.refresh),
            401,
            "Token has wrong type: an access token is required",
        ),
        (
            format!("{base}/9999/?token={}", alice.access),
            404,
            "Chatroom not found",
        ),
        (
            format!("{base}/abc/?token={}", alice.access),
            404,
            "Chatroom not found",
        ),
        (
            format!("{base}/{room}/?token={}", outsider.access),
            403,
            "User not in chatroom",
        ),
    ];
    for (url, status, detail) in cases {
        let (got, body) = node.refused_ws(&url).await;
        assert_eq!(got, status, "{url}");
        assert_eq!(body["success"], false, "{url}");
        assert_eq!(body["errors"]["detail"], detail, "{url}");
    }
    let (status, body) = node
        .get(&format!("/ws/chat/{room}/"), Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED, "{body}");
    assert_eq!(node.socket_count().await, 0);
}

#[tokio::test]
async fn authorization_header_works_for_the_handshake() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let options = SocketOptions {
        token_in_header: true,
        ..SocketOptions::default()
    };
    let socket = node.api.socket_with(room, &alice.access, &options).await;
    let _socket = socket.expect("the handshake with an Authorization header is accepted");
    node.wait_for_sockets(1).await;
}

#[tokio::test]
async fn every_member_socket_receives_rest_and_websocket_sends() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "r", &[&bob]).await;
    let other_room = node.create_room(&alice, "elsewhere", &[&bob]).await;
    let mut alice_ws = node.ws(room, &alice).await;
    let mut bob_ws = node.ws(room, &bob).await;
    let mut bob_elsewhere = node.ws(other_room, &bob).await;

    let stored = node.send_message(&alice, room, "over REST").await;
    for socket in [&mut alice_ws, &mut bob_ws] {
        let data = socket.next_data().await;
        assert_eq!(data["purpose"], "new_chat_message");
        assert_eq!(data["event"], "message");
        assert_eq!(data["message"], "over REST");
        assert_eq!(data["sender"], alice.username.as_str());
        assert_eq!(data["sender_id"], alice.id);
        assert_eq!(data["chat_id"], room);
        assert_eq!(data["id"], stored["id"]);
        assert_eq!(data["created_at"], stored["created_at"]);
        assert_eq!(data["file"], json!(null));
    }

    bob_ws
        .send_json(json!({"purpose": "send_chat_message", "message": "over the socket"}))
        .await;
    for socket in [&mut alice_ws, &mut bob_ws] {
        let data = socket.next_data().await;
        assert_eq!(data["message"], "over the socket");
        assert_eq!(data["sender"], bob.username.as_str());
    }
    let history = node.history(&alice, room, "").await;
    assert_eq!(history.len(), 2, "the socket send was stored");
    assert_eq!(history[1]["sender"], bob.id);
    bob_elsewhere
        .expect_silence(Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn malformed_frames_get_an_error_frame_and_the_socket_stays_open() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let mut socket = node.ws(room, &alice).await;
    for (frame, detail_starts) in [
        ("not json", "Frame is not valid JSON"),
        ("[1,2]", "A frame must be a JSON object"),
        (r#"{"purpose": "dance"}"#, "Unknown purpose: dance"),
        (r#"{"message": "hi"}"#, "Missing \"purpose\""),
        (
            r#"{"purpose": "send_chat_message", "message": 5}"#,
            "\"message\" must be a string",
        ),
        (
            r#"{"purpose": "send_chat_message", "message": "  "}"#,
            "Message content may not be blank",
        ),
    ] {
        socket.send_text(frame).await;
        let answer = socket.next_json().await;
        assert_eq!(answer["success"], false, "{frame}");
        let detail = answer["errors"]["detail"].as_str().unwrap();
        assert!(detail.starts_with(detail_starts), "{frame}: {detail}");
    }
    socket
        .stream()
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(socket.next_json().await["success"], false);
    socket
        .send_json(json!({"purpose": "send_chat_message", "message": "still here"}))
        .await;
    assert_eq!(socket.next_data().await["message"], "still here");
    assert_eq!(node.history(&alice, room, "").await.len(), 1);
}

#[tokio::test]
async fn join_and_leave_are_announced_and_leaving_stops_the_feed_at_once() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let mut alice_ws = node.ws(room, &alice).await;

    let (status, _) = node
        .post(
            &format!("/api/v1/chat/chatrooms/{room}/enter/"),
            Some(&bob.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let joined = alice_ws.next_data().await;
    assert_eq!(
        joined["message"],
        format!("{} just joined the Chatroom", bob.username)
    );
    assert_eq!(joined["sender"], "WhatsApp MessengerBot");
    assert_eq!(joined["event"], "member_joined");

    let mut bob_ws = node.ws(room, &bob).await;
    let (status, _) = node
        .post(
            &format!("/api/v1/chat/chatrooms/{room}/leave/"),
            Some(&bob.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (code, reason) = bob_ws.expect_close().await;
    assert_eq!(code, 1008);
    assert!(reason.contains("no longer a member"), "{reason}");
    let left = alice_ws.next_data().await;
    assert_eq!(
        left["message"],
        format!("{} has left the chatroom", bob.username)
    );
    assert_eq!(left["event"], "member_left");

    node.wait_for_sockets(1).await;
    node.send_message(&alice, room, "after bob left").await;
    assert_eq!(alice_ws.next_data().await["message"], "after bob left");
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_without_stalling_the_room() {
    // The queue is deep enough that the fast reader, sharing this test's one thread with
    // the node and the sender, never overflows while the scheduler runs something else;
    // the slow reader's backlog (the node's send buffer, up to 4 MiB on Linux, plus the
    // queue) is well under the 8 MB sent.
    let node = spawn_with(|c| c.ws_queue = 64).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "busy", &[&bob]).await;
    let mut fast = node.ws(room, &alice).await;
    let mut slow = stalled_ws(&node.ws_url(room, &bob.access)).await;
    node.wait_for_sockets(2).await;
    let big = "x".repeat(8000);
    let total = 1000;
    let client = node.api.clone();
    let send_url = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
    let token = alice.access.clone();
    let content = big.clone();
    let sender = tokio::spawn(async move {
        for _ in 0..total {
            let response = client
                .post(&send_url)
                .token(&token)
                .json(&json!({ "content": content }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status, StatusCode::CREATED);
        }
    });
    let fast_reader = async {
        for i in 0..total {
            let data = fast.next_data().await;
            assert_eq!(
                data["message"].as_str().unwrap().len(),
                big.len(),
                "message {i}"
            );
        }
    };
    // The slow client wakes up as soon as the node drops it (the fast socket remains) and
    // reads what was queued for it, then the close frame.
    let slow_reader = async {
        // The drop follows the overflow, which follows the sends: bounded by the whole
        // load rather than one wait.
        node.wait_for_sockets_within(1, WAIT * 6).await;
        let mut received = 0;
        loop {
            match tokio::time::timeout(WAIT, slow.next())
                .await
                .expect("slow client sees the end")
            {
                // Messages only: receipt frames are not what was sent.
                Some(Ok(Message::Text(text)))
                    if serde_json::from_str::<serde_json::Value>(&text)
                        .is_ok_and(|f| is_background(&f)) => {}
                Some(Ok(Message::Text(_))) => received += 1,
                Some(Ok(Message::Close(frame))) => break (frame, received),
                Some(Ok(_)) => {}
                other => panic!("unexpected end of the slow socket: {other:?}"),
            }
        }
    };
    let ((), (close, received)) = tokio::join!(fast_reader, slow_reader);
    sender.await.unwrap();
    let close = close.expect("a close frame with a reason");
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.contains("overflow"), "{}", close.reason);
    assert!(
        received < total,
        "the slow reader was cut off ({received} frames)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_talks_but_never_reads_is_dropped_once_a_write_stalls() {
    // Pings every second: a write that makes no progress for 2 s ends the socket. The queue
    // is deep enough that it never overflows first.
    let node = spawn_with(|c| {
        c.ws_ping_secs = 1;
        c.ws_queue = 100_000;
    })
    .await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "r", &[&bob]).await;
    let mut stalled = stalled_ws(&node.ws_url(room, &bob.access)).await;
    node.wait_for_sockets(1).await;
    // Bob keeps proving he is alive (so the silence check never fires) and reads nothing.
    let talking = tokio::spawn(async move {
        for _ in 0..200 {
            if stalled
                .send(Message::Pong(Default::default()))
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stalled
    });
    // 8 MB: more than the node's send buffer and Bob's receive buffer hold.
    let content = "x".repeat(8000);
    for _ in 0..1000 {
        let (status, _) = node
            .send(
                node.api
                    .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
                    .json(&json!({ "content": content })),
                Some(&alice.access),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    node.wait_for_sockets(0).await;
    talking.abort();
}

#[tokio::test]
async fn silent_peers_are_dropped_and_live_ones_kept() {
    let node = spawn_with(|c| c.ws_ping_secs = 1).await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let mut live = node.ws(room, &alice).await;

    // A raw client that completes the handshake and then never reads or answers pings.
    let mut dead = tokio::net::TcpStream::connect(node.address).await.unwrap();
    let request = format!(
        "GET /ws/chat/{room}/?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        alice.access, node.address
    );
    dead.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    dead.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    node.wait_for_sockets(2).await;

    // Within a few ping intervals the silent peer is gone; the live one answers and stays.
    // The live socket is read meanwhile, so that it answers the pings (and counts them).
    let mut pings = 0;
    let reading = async {
        while let Some(frame) = live.stream().next().await {
            if let Ok(Message::Ping(_)) = frame {
                pings += 1;
            }
        }
    };
    let dropped = eventually(WAIT, "the silent peer is dropped", || async {
        (node.socket_count().await == 1).then_some(())
    });
    tokio::select! {
        () = dropped => {}
        () = reading => panic!("the live socket ended"),
    }
    node.send_message(&alice, room, "still alive").await;
    assert_eq!(live.next_data().await["message"], "still alive");
    assert!(pings >= 1, "the server pings");
}
