//! Resource bounds and load shedding: every bound answers with a clear 4xx, a close code or
//! a 503 with `Retry-After`, and a node pushed past its caps recovers by itself.

use chatnode_client::header::HeaderMap;
use chatnode_client::{Client, Request, Socket, StatusCode};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{eventually, spawn, spawn_with, TestNode, WAIT};

const BUSY: &str = "The server is busy; try again shortly";

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn json_nested_deeper_than_32_levels_is_a_clear_400() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let create = "/api/v1/chat/chatrooms/create/";
    // 200 levels is past serde_json's own recursion limit too: the answer is the same.
    for depth in [32, 200] {
        let body = format!(r#"{{"name": "r", "members": {}}}"#, nested(depth));
        let request = node
            .api
            .post(create)
            .header("content-type", "application/json")
            .body(body);
        let (status, answer) = node.send(request, Some(&alice.access)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(
            answer["errors"]["detail"],
            "JSON is nested too deeply: at most 32 levels of arrays and objects"
        );
    }
    // Brackets inside strings are text, and 32 levels are accepted.
    let (status, answer) = node
        .post(
            "/api/v1/chat/chatrooms/create/",
            Some(&alice.access),
            json!({"name": "[".repeat(100)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let body = format!(r#"{{"refresh": "x", "extra": {}}}"#, nested(31));
    let request = node
        .api
        .post("/api/v1/auth/refresh/")
        .header("content-type", "application/json")
        .body(body);
    let (status, answer) = node.send(request, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "parsed: {answer}");

    // Login and register read their body by hand; the same bound applies.
    let request = node
        .api
        .post("/api/v1/auth/login/")
        .header("content-type", "application/json")
        .body(nested(1000));
    let (status, answer) = node.send(request, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["errors"]["detail"]
        .as_str()
        .unwrap()
        .starts_with("JSON is nested too deeply"));

    // A deep WebSocket frame gets an error frame; the socket stays open.
    let room = node.create_room(&alice, "deep", &[]).await;
    let mut socket = node.ws(room, &alice).await;
    socket.send_text(&nested(40)).await;
    let answer = socket.next_json().await;
    assert!(answer["errors"]["detail"]
        .as_str()
        .unwrap()
        .starts_with("JSON is nested too deeply"));
    socket
        .send_json(json!({"purpose": "send_chat_message", "message": "still open"}))
        .await;
    assert_eq!(socket.next_data().await["message"], "still open");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_with_413() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    // No Content-Length: the limit is enforced while the body streams in.
    let chunks = (0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024]));
    let request = node
        .api
        .post("/api/v1/chat/chatrooms/create/")
        .header("content-type", "application/json")
        .body(chatnode_client::Body::wrap_stream(
            futures_util::stream::iter(chunks),
        ));
    let (status, body) = node.send(request, Some(&alice.access)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        json!({"success": false, "errors": {"detail": "Request body is larger than 65536 bytes"}})
    );
}

#[tokio::test]
async fn message_content_and_room_names_are_bounded_in_characters() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let create = "/api/v1/chat/chatrooms/create/";
    let (status, _) = node
        .post(
            create,
            Some(&alice.access),
            json!({"name": "é".repeat(255)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = node
        .post(
            create,
            Some(&alice.access),
            json!({"name": "n".repeat(256)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"]["detail"],
        "The chatroom name may have at most 255 characters"
    );

    let room = node.create_room(&alice, "r", &[]).await;
    let send = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
    // Characters, not bytes: 10,000 two-byte characters fit.
    node.send_message(&alice, room, &"é".repeat(10_000)).await;
    let (status, body) = node
        .post(
            &send,
            Some(&alice.access),
            json!({"content": "x".repeat(10_001)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"]["detail"],
        "Message content may have at most 10000 characters"
    );

    let mut socket = node.ws(room, &alice).await;
    socket
        .send_json(json!({"purpose": "send_chat_message", "message": "x".repeat(10_001)}))
        .await;
    assert_eq!(
        socket.next_json().await["errors"]["detail"],
        "Message content may have at most 10000 characters"
    );
    assert_eq!(node.history(&alice, room, "").await.len(), 1);
}

#[tokio::test]
async fn websocket_frames_and_messages_over_64_kib_close_with_1009() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;

    let mut single = node.ws(room, &alice).await;
    single.send_text(&"x".repeat(64 * 1024 + 1)).await;
    let (code, reason) = single.expect_close().await;
    assert_eq!((code, reason.as_str()), (1009, "message too big"));

    // Three frames of 30 KiB: each is within the frame bound, the message is not.
    let mut fragmented = node.ws(room, &alice).await;
    let part = vec![b'x'; 30 * 1024];
    for (i, opcode) in [
        OpCode::Data(Data::Text),
        OpCode::Data(Data::Continue),
        OpCode::Data(Data::Continue),
    ]
    .into_iter()
    .enumerate()
    {
        let header = FrameHeader {
            is_final: i == 2,
            opcode,
            ..FrameHeader::default()
        };
        let frame = Frame::from_payload(header, part.clone().into());
        // The node may close before the last part arrives.
        if fragmented
            .stream()
            .send(Message::Frame(frame))
            .await
            .is_err()
        {
            break;
        }
    }
    let (code, _) = fragmented.expect_close().await;
    assert_eq!(code, 1009);
    node.wait_for_sockets(0).await;
    assert!(node.history(&alice, room, "").await.is_empty());
}

/// Holds one in-flight slot of `node`: a login whose body never finishes arriving.
pub async fn occupy_slot(node: &TestNode) -> TcpStream {
    let mut tcp = TcpStream::connect(node.address).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/login/ HTTP/1.1\r\nHost: {}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"email\":",
        node.address
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// Waits until a cheap request is shed (`busy`) or served (`!busy`).
pub async fn wait_until_busy(node: &TestNode, busy: bool) {
    let what = format!("the node becomes {}", if busy { "busy" } else { "free" });
    eventually(WAIT, &what, || async {
        let (status, _) = node.get("/api/v1/chat/chatrooms/", None).await;
        ((status == StatusCode::SERVICE_UNAVAILABLE) == busy).then_some(())
    })
    .await
}

fn assert_shed(status: StatusCode, headers: &HeaderMap, body: &Value) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(body["success"], false, "{body}");
    assert!(body["errors"]["detail"].is_string(), "{body}");
}

/// The status, headers and JSON body of a request.
async fn call(request: Request) -> (StatusCode, HeaderMap, Value) {
    let answer = request.send().await.expect("request is answered");
    let body = serde_json::from_slice(&answer.bytes)
        .unwrap_or_else(|_| panic!("answer is not JSON ({}): {}", answer.status, answer.text()));
    (answer.status, answer.headers, body)
}

#[tokio::test]
async fn an_overloaded_node_sheds_with_503_and_recovers_by_itself() {
    let node = spawn_with(|c| {
        c.max_inflight_requests = 2;
        c.max_connections = 1;
        c.max_queued_writes = 2;
    })
    .await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "busy", &[]).await;
    let send = format!("/api/v1/chat/chatrooms/{room}/messages/send/");

    // Sockets: one is open, the next upgrade is refused with 503 until it closes.
    let socket = node.ws(room, &alice).await;
    let refused = Socket::connect(&node.ws_url(room, &alice.access), None).await;
    match refused {
        Err(chatnode_client::Error::Refused(refusal)) => {
            assert_eq!(refusal.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(refusal.retry_after, Some(1));
            assert_eq!(
                refusal.errors["detail"],
                "Too many open connections; try again shortly"
            );
        }
        other => panic!("expected a 503 refusal, got {other:?}"),
    }
    drop(socket);
    node.wait_for_sockets(0).await;
    node.ws(room, &alice).await;

    // Requests: with both in-flight slots held, everything but health checks is shed.
    let held = [occupy_slot(&node).await, occupy_slot(&node).await];
    wait_until_busy(&node, true).await;
    let mut flood = Vec::new();
    for i in 0..30 {
        let request = match i % 5 {
            0 => node
                .api
                .post(&send)
                .token(&alice.access)
                .json(&json!({"content": "shed"})),
            1 => node
                .api
                .get(&format!("/api/v1/chat/chatrooms/{room}/messages/"))
                .token(&alice.access),
            2 => node
                .api
                .post("/api/v1/auth/login/")
                .json(&json!({"email": alice.email, "password": "whatever-it-is"})),
            3 => node.api.get("/api/v1/nothing-here"),
            _ => node.api.get("/api/v1/schema"),
        };
        flood.push(tokio::spawn(call(request)));
    }
    for answer in flood {
        let (status, headers, body) = answer.await.unwrap();
        assert_shed(status, &headers, &body);
        assert_eq!(body["errors"]["detail"], BUSY);
    }
    for health in ["/healthz", "/readyz"] {
        let (status, _) = node.get(health, None).await;
        assert_eq!(status, StatusCode::OK, "{health} is never shed");
    }

    // The held requests end; the node serves again without intervention.
    drop(held);
    wait_until_busy(&node, false).await;
    let mut flood = Vec::new();
    for _ in 0..40 {
        let request = node
            .api
            .post(&send)
            .token(&alice.access)
            .json(&json!({"content": "flood"}));
        flood.push(tokio::spawn(call(request)));
    }
    let mut stored = 0;
    for answer in flood {
        let (status, headers, body) = answer.await.unwrap();
        if status == StatusCode::CREATED {
            stored += 1;
        } else {
            assert_shed(status, &headers, &body);
        }
    }
    for i in 0..5 {
        node.send_message(&alice, room, &format!("after {i}")).await;
    }
    // Exactly the acknowledged messages were stored; the shed ones changed nothing.
    assert_eq!(
        node.history(&alice, room, "?limit=200").await.len(),
        stored + 5
    );
}

#[tokio::test]
async fn http_connections_over_the_cap_get_503_and_places_free_when_they_close() {
    let node = spawn_with(|config| config.max_http_connections = 2).await;
    // Two idle connections take both places (the node accepts in arrival order).
    let first = TcpStream::connect(node.address).await.unwrap();
    let _second = TcpStream::connect(node.address).await.unwrap();
    let fresh = || {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Client::with_http(node.api.base_url(), http)
    };
    let healthz = "/healthz";
    let refused = fresh().get(healthz).send().await.unwrap();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["x-content-type-options"], "nosniff");
    let body: Value = refused.json();
    assert_eq!(body["success"], false);
    assert!(
        body["errors"]["detail"]
            .as_str()
            .unwrap()
            .contains("too many connections"),
        "{body}"
    );

    drop(first);
    eventually(WAIT, "a closed connection frees its place", || async {
        let status = fresh().get(healthz).send().await.unwrap().status;
        if status == StatusCode::OK {
            return Some(());
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        None
    })
    .await;
    node.stop().await;
}
