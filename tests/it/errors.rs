use chatnode_client::{Method, Socket, StatusCode};
use serde_json::{json, Value};

use crate::bounds::{occupy_slot, wait_until_busy};
use crate::helpers::{spawn, spawn_with, TestNode};

async fn raw_post(
    node: &TestNode,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let request = node
        .api
        .post(path)
        .header("content-type", "application/json")
        .body(body);
    node.send(request, token).await
}

#[tokio::test]
async fn malformed_bodies_get_clear_400s_and_change_nothing() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let create = "/api/v1/chat/chatrooms/create/";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "Malformed JSON"),
        (b"".to_vec(), "Request body is empty"),
        (br#"{"name": ["a"]}"#.to_vec(), "Invalid JSON body"),
        (
            br#"{"name": "ok", "members": "all"}"#.to_vec(),
            "Invalid JSON body",
        ),
        (
            vec![b'{', b'"', b'n', 0xff, 0xfe, b'"', b':', b'1', b'}'],
            "Malformed JSON",
        ),
    ];
    for (body, prefix) in cases {
        let (status, answer) = raw_post(&node, create, Some(&alice.access), body.clone()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(answer["success"], false);
        let detail = answer["errors"]["detail"].as_str().unwrap();
        assert!(detail.starts_with(prefix), "{detail}");
    }
    let (status, answer) = raw_post(&node, "/api/v1/auth/register/", None, b"[]".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (_, rooms) = node
        .get("/api/v1/chat/chatrooms/", Some(&alice.access))
        .await;
    assert_eq!(rooms["data"]["chatrooms"], json!([]));
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let huge = json!({"name": "x".repeat(100 * 1024)})
        .to_string()
        .into_bytes();
    let (status, body) = raw_post(
        &node,
        "/api/v1/chat/chatrooms/create/",
        Some(&alice.access),
        huge,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    let node = spawn().await;
    let (status, body) = node.get("/api/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"success": false, "errors": {"detail": "Not found: no such route"}})
    );

    let (status, body) = node
        .send(
            node.api.request(Method::DELETE, "/api/v1/auth/login/"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["success"], false);
    let (status, _) = node.get("/api/v1/auth/register/", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

fn assert_secure(what: &str, headers: &chatnode_client::header::HeaderMap) {
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
}

#[tokio::test]
async fn every_kind_of_response_carries_security_headers() {
    let node = spawn_with(|c| {
        c.max_inflight_requests = 1;
        c.max_connections = 1;
        c.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let preflight = || {
        node.api
            .request(Method::OPTIONS, "/api/v1/auth/login/")
            .header("access-control-request-method", "POST")
    };
    let cases = [
        ("200", node.api.get("/healthz"), 200),
        (
            "4xx from recover",
            node.api.get("/api/v1/chat/chatrooms/"),
            401,
        ),
        ("unknown path", node.api.get("/nothing/here"), 404),
        (
            "allowed preflight",
            preflight().header("origin", "https://app.example.com"),
            204,
        ),
        (
            "refused preflight",
            preflight().header("origin", "https://x.example"),
            403,
        ),
    ];
    for (what, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status.as_u16(), status, "{what}");
        assert_secure(what, &response.headers);
    }

    // WebSocket refusals: 401, and 503 once the only connection slot is taken.
    let refusal = |url: String| async move {
        match Socket::connect(&url, None).await {
            Err(chatnode_client::Error::Refused(refusal)) => refusal,
            other => panic!("expected a refused upgrade, got {other:?}"),
        }
    };
    let refused = refusal(node.ws_url(room, "not-a-token")).await;
    assert_eq!(refused.status, 401);
    assert_secure("refused upgrade", &refused.headers);
    let _socket = node.ws(room, &alice).await;
    let refused = refusal(node.ws_url(room, &alice.access)).await;
    assert_eq!(refused.status, 503);
    assert_secure("503 upgrade", &refused.headers);

    // A 503 of a shed request, while the only in-flight slot is held.
    let held = occupy_slot(&node).await;
    wait_until_busy(&node, true).await;
    let response = node.api.get("/api/v1/schema").send().await.unwrap();
    assert_eq!(response.status, 503);
    assert_secure("503", &response.headers);
    drop(held);
}
