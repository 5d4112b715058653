//! CORS: only configured origins may read answers from a browser; preflights are answered;
//! clients that send no `Origin` see no difference.

use chatnode_client::header::HeaderMap;
use chatnode_client::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn, spawn_with, TestNode};

const ALLOWED: &str = "https://app.example.com";
const OTHER: &str = "https://evil.example.net";

async fn answer(request: Request) -> (StatusCode, HeaderMap, String) {
    let answer = request.send().await.expect("request is answered");
    let text = answer.text();
    (answer.status, answer.headers, text)
}

fn preflight(node: &TestNode, origin: &str) -> Request {
    node.api
        .request(Method::OPTIONS, "/api/v1/chat/chatrooms/create/")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
}

fn assert_refused_preflight(status: StatusCode, headers: &HeaderMap, body: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get("access-control-allow-origin").is_none());
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        json!({"success": false, "errors": {"detail": "CORS: this origin is not allowed"}})
    );
}

#[tokio::test]
async fn configured_origins_may_call_the_api_and_others_may_not_read_it() {
    let node =
        spawn_with(|c| c.cors_origins = vec![ALLOWED.into(), "https://b.example".into()]).await;
    let user = node.register("cora").await;

    let (status, headers, body) = answer(preflight(&node, ALLOWED)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    // A page's script may read the request id, to quote it in a bug report.
    let exposed = headers["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    for name in ["authorization", "content-type", "x-request-id"] {
        assert!(allowed_headers.contains(name), "{allowed_headers}");
    }
    assert_eq!(headers["access-control-max-age"], "600");
    assert_eq!(headers["vary"], "origin");

    let (status, headers, body) = answer(preflight(&node, OTHER)).await;
    assert_refused_preflight(status, &headers, &body);

    // The actual calls: the allowed origin may read answers, errors included.
    let create = node
        .api
        .post("/api/v1/chat/chatrooms/create/")
        .header("origin", ALLOWED)
        .token(&user.access)
        .json(&json!({"name": "from the browser"}));
    let (status, headers, _) = answer(create).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let (status, headers, _) = answer(
        node.api
            .get("/api/v1/chat/chatrooms/")
            .header("origin", "https://b.example"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["access-control-allow-origin"], "https://b.example");

    // Another origin is served (CORS is the browser's check) but gets no grant.
    let (status, headers, _) = answer(
        node.api
            .get("/api/v1/chat/chatrooms/")
            .header("origin", OTHER)
            .token(&user.access),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("access-control-allow-origin").is_none());
    assert_eq!(headers["vary"], "origin");

    // No Origin: a plain client, as before.
    let (status, headers, _) =
        answer(node.api.get("/api/v1/chat/chatrooms/").token(&user.access)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("access-control-allow-origin").is_none());

    // OPTIONS that is not a preflight is just a method the route does not have.
    let (status, _, _) = answer(
        node.api
            .request(Method::OPTIONS, "/api/v1/chat/chatrooms/")
            .header("origin", ALLOWED),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn without_configured_origins_no_origin_is_granted() {
    let node = spawn().await;
    let (status, headers, body) = answer(preflight(&node, ALLOWED)).await;
    assert_refused_preflight(status, &headers, &body);
    let (status, headers, _) = answer(node.api.get("/healthz").header("origin", ALLOWED)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("access-control-allow-origin").is_none());
    assert!(headers.get("vary").is_none());
}
