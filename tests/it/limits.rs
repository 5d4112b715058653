//! Abuse limits over real HTTP and WebSocket: 429 with the envelope and `Retry-After`, keys per
//! client address (several loopback source addresses), per email and per user, and
//! `--rate-limits off`. Rates are hours long wherever a refusal is asserted, so the outcome
//! never depends on how fast the machine is.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use chatnode::Config;
use chatnode_client::{Client, Socket, StatusCode};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_with, TestNode, TestUser, PASSWORD};

/// A node with rate limits on, every one generous, then `adjust`ed.
async fn limited(adjust: impl FnOnce(&mut Config)) -> TestNode {
    spawn_with(|config| {
        let limits = &mut config.limits;
        limits.enabled = true;
        let generous = "1000/h".parse().unwrap();
        limits.login_ip = generous;
        limits.login_email = generous;
        limits.register_ip = generous;
        limits.register_email = generous;
        limits.send = generous;
        limits.ws_connect = generous;
        limits.sockets_per_user = 100;
        adjust(config);
    })
    .await
}

fn rate(text: &str) -> chatnode::limits::Rate {
    text.parse().unwrap()
}

struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    /// Asserts a 429 in the envelope whose detail mentions `detail`; returns Retry-After.
    fn assert_limited(&self, detail: &str) -> u64 {
        assert_eq!(self.status, StatusCode::TOO_MANY_REQUESTS, "{}", self.body);
        assert_eq!(self.body["success"], false);
        let text = self.body["errors"]["detail"].as_str().expect("a detail");
        assert!(
            text.contains(detail),
            "{text:?} does not mention {detail:?}"
        );
        let seconds = self.retry_after.expect("a Retry-After header");
        assert!(seconds >= 1);
        seconds
    }
}

/// POSTs JSON from 127.0.0.`host` (all of 127.0.0.0/8 is loopback on Linux).
async fn post_from(
    node: &TestNode,
    host: u8,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Answer {
    let http = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
        .build()
        .unwrap();
    let client = Client::with_http(node.api.base_url(), http);
    let request = client.post(path).json(&body).maybe_token(token);
    let answer = request.send().await.expect("request is answered");
    let retry_after = answer
        .header("retry-after")
        .map(|v| v.parse().expect("Retry-After is whole seconds"));
    let body = serde_json::from_slice(&answer.bytes).expect("a JSON answer");
    Answer {
        status: answer.status,
        retry_after,
        body,
    }
}

async fn login_from(node: &TestNode, host: u8, email: &str, password: &str) -> Answer {
    let body = json!({ "email": email, "password": password });
    post_from(node, host, "/api/v1/auth/login/", None, body).await
}

async fn register_from(node: &TestNode, host: u8, name: &str) -> Answer {
    let body = json!({
        "email": format!("{name}@example.com"), "phone_number": "+14155552671",
        "password": PASSWORD, "first_name": name, "last_name": "Tester",
    });
    post_from(node, host, "/api/v1/auth/register/", None, body).await
}

async fn send_rest(node: &TestNode, user: &TestUser, room: i64, content: &str) -> Answer {
    let path = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
    let body = json!({ "content": content });
    post_from(node, 1, &path, Some(&user.access), body).await
}

fn ws_send(content: &str) -> Value {
    json!({ "purpose": "send_chat_message", "message": content })
}

/// A refused handshake as an `Answer`.
async fn refused_ws(node: &TestNode, room: i64, user: &TestUser) -> Answer {
    match Socket::connect(&node.ws_url(room, &user.access), None).await {
        Ok(_) => panic!("the handshake was accepted"),
        Err(chatnode_client::Error::Refused(refusal)) => Answer {
            status: refusal.status,
            retry_after: refusal.retry_after,
            body: json!({ "success": false, "errors": refusal.errors }),
        },
        Err(other) => panic!("unexpected handshake error: {other}"),
    }
}

#[tokio::test]
async fn logins_over_the_per_address_limit_get_429_and_other_addresses_do_not() {
    let node = limited(|c| c.limits.login_ip = rate("3/h")).await;
    let alice = node.register("alice").await;
    for email in ["nobody@example.com", "other@example.com", &alice.email] {
        let answer = login_from(&node, 1, email, "wrong-password-42").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    }
    // Even the right password is refused: the address is out of attempts.
    let refused = login_from(&node, 1, &alice.email, PASSWORD).await;
    let wait = refused.assert_limited("login attempts from your address");
    // One attempt comes back every 20 minutes.
    assert!((1190..=1200).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        refused.body,
        json!({ "success": false, "errors": { "detail": refused.body["errors"]["detail"] } })
    );

    let elsewhere = login_from(&node, 2, &alice.email, PASSWORD).await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.body);
    node.stop().await;
}

#[tokio::test]
async fn logins_over_the_per_email_limit_get_429_from_any_address() {
    let node = limited(|c| c.limits.login_email = rate("2/h")).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    assert_eq!(
        login_from(&node, 1, &alice.email, "wrong-password-42")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&node, 2, "ALICE@example.com", "wrong-password-42")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A third address, the right password, the email spelled differently: still refused.
    let refused = login_from(&node, 3, " Alice@Example.com", PASSWORD).await;
    refused.assert_limited("login attempts for this email");

    let bob_login = login_from(&node, 3, &bob.email, PASSWORD).await;
    assert_eq!(bob_login.status, StatusCode::OK, "{}", bob_login.body);
    node.stop().await;
}

#[tokio::test]
async fn registrations_are_limited_per_address_and_per_email() {
    let node = limited(|c| {
        c.limits.register_ip = rate("2/h");
        c.limits.register_email = rate("2/h");
    })
    .await;
    assert_eq!(
        register_from(&node, 1, "a").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        register_from(&node, 1, "b").await.status,
        StatusCode::CREATED
    );
    register_from(&node, 1, "c")
        .await
        .assert_limited("registration attempts from your address");

    // The second attempt for a@ (another address) is the "taken" answer; the third is refused.
    let taken = register_from(&node, 2, "a").await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST, "{}", taken.body);
    register_from(&node, 3, "a")
        .await
        .assert_limited("registration attempts for this email");
    assert_eq!(
        register_from(&node, 3, "d").await.status,
        StatusCode::CREATED
    );
    node.stop().await;
}

#[tokio::test]
async fn rest_and_websocket_sends_share_one_budget_and_a_flooding_socket_is_closed() {
    let node = limited(|c| c.limits.send = rate("3/h")).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "limits", &[&bob]).await;
    for content in ["one", "two"] {
        assert_eq!(
            send_rest(&node, &alice, room, content).await.status,
            StatusCode::CREATED
        );
    }
    let mut socket = node.ws(room, &alice).await;
    socket.send_json(ws_send("three")).await;
    assert_eq!(socket.next_data().await["message"], "three");

    // The socket spent the last message of the budget: REST is refused too.
    let refused = send_rest(&node, &alice, room, "four").await;
    let wait = refused.assert_limited("Too many messages");
    assert!((1190..=1200).contains(&wait), "Retry-After {wait}");

    socket.send_json(ws_send("five")).await;
    let error = socket.next_json().await;
    assert_eq!(error["success"], false, "{error}");
    let detail = error["errors"]["detail"].as_str().unwrap();
    assert!(detail.contains("Too many messages"), "{detail}");
    let (code, reason) = socket.expect_close().await;
    assert_eq!(code, 1008);
    assert!(reason.contains("rate limit"), "{reason}");

    // The budget is alice's alone, and nothing refused was stored.
    assert_eq!(
        send_rest(&node, &bob, room, "bob's").await.status,
        StatusCode::CREATED
    );
    let stored: Vec<Value> = node
        .history(&alice, room, "")
        .await
        .into_iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(stored, ["one", "two", "three", "bob's"]);
    node.stop().await;
}

#[tokio::test]
async fn websocket_connection_attempts_over_the_limit_are_refused_before_the_upgrade() {
    let node = limited(|c| c.limits.ws_connect = rate("2/h")).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "limits", &[&bob]).await;
    for _ in 0..2 {
        let mut socket = node.ws(room, &alice).await;
        socket.stream().close(None).await.unwrap();
        // `ws` counts sockets from the node's current number: let this one go first.
        node.wait_for_sockets(0).await;
    }
    refused_ws(&node, room, &alice)
        .await
        .assert_limited("Too many WebSocket connection attempts");
    // Other users connect as before.
    node.ws(room, &bob).await;
    node.stop().await;
}

#[tokio::test]
async fn open_sockets_per_user_are_capped_and_a_closed_one_frees_its_place() {
    let node = limited(|c| c.limits.sockets_per_user = 2).await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "limits", &[]).await;
    let mut first = node.ws(room, &alice).await;
    let _second = node.ws(room, &alice).await;
    refused_ws(&node, room, &alice)
        .await
        .assert_limited("WebSockets open");

    first.stream().close(None).await.unwrap();
    node.wait_for_sockets(1).await;
    let mut third = node.ws(room, &alice).await;
    third.send_json(ws_send("still here")).await;
    assert_eq!(third.next_data().await["message"], "still here");
    node.stop().await;
}

#[tokio::test]
async fn after_waiting_retry_after_the_action_works_again() {
    let node = limited(|c| c.limits.send = rate("1/s")).await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "limits", &[]).await;
    // Send until refused: how fast the machine is only changes how many get through.
    let mut refused = None;
    for n in 0..50 {
        let answer = send_rest(&node, &alice, room, &format!("m{n}")).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(answer);
            break;
        }
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }
    let wait = refused
        .expect("a burst of sends is refused")
        .assert_limited("Too many messages");
    assert_eq!(wait, 1);
    // Retry-After is rounded up; the margin covers the two clocks only.
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(50)).await;
    let again = send_rest(&node, &alice, room, "after the wait").await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    node.stop().await;
}

#[tokio::test]
async fn with_rate_limits_off_the_same_bursts_all_succeed() {
    let node = limited(|c| {
        let limits = &mut c.limits;
        limits.enabled = false;
        let tiny = rate("1/h");
        limits.login_ip = tiny;
        limits.login_email = tiny;
        limits.register_ip = tiny;
        limits.register_email = tiny;
        limits.send = tiny;
        limits.ws_connect = tiny;
        limits.sockets_per_user = 1;
    })
    .await;
    for name in ["a", "b", "c"] {
        assert_eq!(
            register_from(&node, 1, name).await.status,
            StatusCode::CREATED
        );
    }
    let taken = register_from(&node, 1, "a").await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST, "{}", taken.body);
    for _ in 0..3 {
        let answer = login_from(&node, 1, "a@example.com", PASSWORD).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "unlimited", &[]).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(node.ws(room, &alice).await);
    }
    for n in 0..3 {
        let answer = send_rest(&node, &alice, room, &format!("rest {n}")).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }
    for n in 0..3 {
        sockets[0].send_json(ws_send(&format!("ws {n}"))).await;
    }
    for socket in &mut sockets {
        for expected in ["rest 0", "rest 1", "rest 2", "ws 0", "ws 1", "ws 2"] {
            assert_eq!(socket.next_data().await["message"], expected);
        }
    }
    node.stop().await;
}

#[tokio::test]
async fn a_websocket_text_frame_is_not_a_send_unless_it_asks_to_send() {
    // Malformed frames and catch-ups cost nothing: only sends spend the budget.
    let node = limited(|c| c.limits.send = rate("1/h")).await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "limits", &[]).await;
    let mut socket = node.ws(room, &alice).await;
    for _ in 0..3 {
        socket.send_text("not json").await;
        assert_eq!(socket.next_json().await["success"], false);
        socket
            .stream()
            .send(Message::Text(
                json!({"purpose": "catch_up", "since": 0})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
    }
    socket.send_json(ws_send("the one")).await;
    assert_eq!(socket.next_data().await["message"], "the one");
    node.stop().await;
}
