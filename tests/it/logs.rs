//! What the real binary logs: never a secret, even at the most verbose level, and a lost
//! log pipe costs nothing but the log.

use chatnode_client::{Event, Launch, NewAccount, NodeProcess, SocketOptions, StatusCode};

use crate::helpers::WAIT;

const SECRET: &str = "log-test-signing-secret-4f1c9a";
const PASSWORD: &str = "log-test-passphrase-77";

/// `chatnode serve` with JSON logs at `rust_log`, the secret on its command line.
fn serve(data_dir: &std::path::Path, rust_log: &str) -> Launch {
    Launch::new(env!("CARGO_BIN_EXE_chatnode"))
        .args(["--jwt-secret", SECRET, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", rust_log)
}

fn account(email: &str) -> NewAccount {
    NewAccount {
        email: email.into(),
        phone_number: "+14155552671".into(),
        password: PASSWORD.into(),
        first_name: "L".into(),
        last_name: "G".into(),
    }
}

#[tokio::test]
async fn passwords_tokens_and_the_jwt_secret_never_appear_in_the_logs() {
    let data_dir = tempfile::tempdir().unwrap();
    // Every line of a trace-level run is kept and read.
    let launch = serve(data_dir.path(), "trace").keep_log_lines(usize::MAX);
    let mut node = launch.start().await.expect("the node starts");
    let client = node.client().clone();

    let registered = client.register(&account("log@example.com")).await.unwrap();
    let logged_in = client.login("log@example.com", PASSWORD).await.unwrap();
    let wrong = client
        .login("log@example.com", &format!("{PASSWORD}-wrong"))
        .await;
    assert!(wrong.unwrap_err().api().is_some());
    let access = logged_in.credentials.access.clone();
    let refresh = logged_in.credentials.refresh.clone();
    let fresh = client.refresh(&refresh).await.unwrap();
    let room = client.create_room(&fresh, "logged", &[]).await.unwrap().id;

    // The socket carries its token in the query string; refused ones too.
    let mut socket = client.socket(room, &access).await.unwrap();
    socket.send_message("hello logs").await.unwrap();
    // The echo, past the receipt frames the node also writes.
    let echoed = loop {
        match socket.event_within(WAIT).await.unwrap() {
            Some(Event::Receipt(_) | Event::Positions(_)) => continue,
            other => break other,
        }
    };
    assert!(matches!(echoed, Some(Event::Message(_))), "{echoed:?}");
    let in_header = SocketOptions {
        token_in_header: true,
        ..SocketOptions::default()
    };
    let refused = client.socket_with(room + 1, &fresh, &in_header).await;
    assert!(refused.is_err());
    let unknown = client
        .get(&format!("/api/v1/nothing-here?token={refresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    client.logout(&fresh, &refresh).await.unwrap();
    drop(socket);
    node.terminate(WAIT)
        .await
        .expect("the node exits on SIGTERM");

    let log = node.log().join("\n");
    assert!(
        log.contains("\"path\":\"/api/v1/auth/login/\""),
        "requests are logged: {log}"
    );
    let registered_access = registered.access();
    let mut secrets = vec![SECRET.to_string(), PASSWORD.to_string()];
    for token in [registered_access, &access, &refresh, &fresh] {
        secrets.push(token.to_string());
        // The signature alone is as good as the token to whoever can pair it with a payload.
        secrets.push(token.rsplit('.').next().unwrap().to_string());
    }
    for secret in secrets {
        assert!(
            !log.contains(&secret),
            "the log contains a secret ({secret}):\n{log}"
        );
    }
}

#[tokio::test]
async fn a_node_whose_log_pipes_are_gone_keeps_serving_and_stops_on_sigterm() {
    let data_dir = tempfile::tempdir().unwrap();
    // Reads up to the address, then closes the pipes: every later log line has no reader.
    let launch = serve(data_dir.path(), "info").close_pipes_after_start();
    let mut node = launch.start().await.expect("the node starts");
    for _ in 0..3 {
        let health = node.client().get("/healthz").send().await;
        let health = health.expect("answered although its log is gone");
        assert_eq!(health.status, StatusCode::OK);
    }
    let registered = node.client().register(&account("quiet@example.com")).await;
    registered.expect("registered although its log is gone");
    node.terminate(WAIT)
        .await
        .expect("the node exits on SIGTERM");
}

#[tokio::test]
async fn a_launched_node_keeps_only_its_newest_log_lines() {
    const KEPT: usize = 5;
    let data_dir = tempfile::tempdir().unwrap();
    let launch = serve(data_dir.path(), "info").keep_log_lines(KEPT);
    let mut node = launch.start().await.expect("the node starts");
    // Each request is an access-log line: far more lines than are kept.
    for _ in 0..(4 * KEPT) {
        let health = node.client().get("/healthz").send().await.unwrap();
        assert_eq!(health.status, StatusCode::OK);
    }
    node.terminate(WAIT)
        .await
        .expect("the node exits on SIGTERM");
    let log = node.log();
    assert_eq!(log.len(), KEPT, "{log:#?}");
    // The newest are kept: the last line is the goodbye, which no request line follows.
    let last = log.last().unwrap();
    assert!(last.contains("chatnode stopped"), "{log:#?}");
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_the_requests_log_lines_carry_it_too() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut node = serve(data_dir.path(), "info").start().await.unwrap();
    let client = node.client().clone();
    let traced = client
        .post("/api/v1/auth/register/")
        .header("x-request-id", "trace-me-42")
        .json(&serde_json::json!({"email": "not an email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status, StatusCode::BAD_REQUEST);
    assert_eq!(traced.header("x-request-id"), Some("trace-me-42"));
    // An id that is not sane (spaces, too long) is replaced, and a missing one made.
    let long = "x".repeat(129);
    for sent in [Some("has spaces"), Some(long.as_str()), None] {
        let mut request = client.get("/livez");
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let answer = request.send().await.unwrap();
        let id = answer.header("x-request-id").expect("an id").to_string();
        assert_eq!(id.len(), 32, "{sent:?} -> {id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    node.terminate(WAIT)
        .await
        .expect("the node exits on SIGTERM");
    let log = node.log();
    let line = log
        .iter()
        .find(|line| line.contains("/api/v1/auth/register/"))
        .expect("the request is logged");
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["span"]["request_id"], "trace-me-42", "{line}");
}

/// Sends on the first node with a request id and reads the message on a socket of the last
/// (the same node when there is one); the id is in the first node's request line and in
/// the last node's hand-over line.
async fn follow_one_send(nodes: &mut [NodeProcess], label: &str) {
    let sender = nodes[0].client().clone();
    let watcher = nodes[nodes.len() - 1].client().clone();
    let alice = sender
        .register(&account("follow@example.com"))
        .await
        .unwrap();
    let room = sender
        .create_room(alice.access(), "followed", &[])
        .await
        .unwrap()
        .id;
    let mut socket = watcher.socket(room, alice.access()).await.unwrap();
    // The socket's first frame comes once its room is bound: the message then arrives live
    // (through the hub), not in the socket's opening replay.
    let first = socket.event_within(WAIT).await.unwrap();
    assert!(
        matches!(first, Some(Event::Positions(_))),
        "{label}: {first:?}"
    );
    let sent = sender
        .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
        .token(alice.access())
        .header("x-request-id", "follow-me-7")
        .json(&serde_json::json!({"content": "follow me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status, StatusCode::CREATED, "{label}: {}", sent.text());
    let arrived = loop {
        match socket.event_within(WAIT).await.unwrap() {
            Some(Event::Receipt(_) | Event::Positions(_)) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(arrived, Some(Event::Message(_))),
        "{label}: {arrived:?}"
    );
    drop(socket);
    for node in nodes.iter_mut() {
        node.terminate(WAIT)
            .await
            .expect("the node exits on SIGTERM");
    }
    let lines = |node: &NodeProcess| -> Vec<serde_json::Value> {
        let parse = |line: &String| serde_json::from_str(line).ok();
        node.log().iter().filter_map(parse).collect()
    };
    let requested = lines(&nodes[0]).into_iter().any(|line| {
        let path = line["path"].as_str().unwrap_or_default();
        line["span"]["request_id"] == "follow-me-7" && path.ends_with("/send/")
    });
    assert!(
        requested,
        "{label}: no request line with the id on the sender's node"
    );
    let handed = lines(&nodes[nodes.len() - 1])
        .into_iter()
        .find(|line| line["request_id"] == "follow-me-7");
    let handed = handed.unwrap_or_else(|| panic!("{label}: the watcher's node never logged it"));
    assert_eq!(handed["room"], room, "{label}: {handed}");
}

#[tokio::test]
async fn one_send_can_be_followed_by_its_request_id_to_the_sockets() {
    let data_dir = tempfile::tempdir().unwrap();
    let launch = serve(data_dir.path(), "info,chatnode::hub=debug");
    let node = launch.start().await.unwrap();
    follow_one_send(&mut [node], "memory").await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp091_one_send_can_be_followed_by_its_request_id_from_node_to_node() {
    for broker in crate::broker::brokers().await {
        let shared = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", shared.path().join("shared.db").display());
        let exchange = format!("chatnode-it-{}", uuid::Uuid::new_v4().simple());
        let (mut nodes, mut dirs) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let data_dir = tempfile::tempdir().unwrap();
            let launch = serve(data_dir.path(), "info,chatnode::hub=debug").args([
                "--database-url",
                &database,
                "--transport",
                "amqp091",
                "--broker-url",
                &broker.url,
                "--exchange",
                &exchange,
            ]);
            nodes.push(launch.start().await.expect("the node starts"));
            dirs.push(data_dir);
        }
        follow_one_send(&mut nodes, &format!("amqp091 on {}", broker.label)).await;
        broker.delete_exchange(&exchange).await;
    }
}
