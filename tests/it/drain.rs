//! `chatnode admin node drain` against the real binary, as a rolling upgrade runs it: for
//! `--drain-grace` the node closes its sockets with 1012, refuses new ones with 503, fails
//! `/readyz` on its `drain` check and still serves REST; then it exits by itself. A second
//! signal ends the grace early.

use std::process::Output;

use chatnode_client::{Client, Launch, NewAccount, NodeProcess, Session, StatusCode};
use serde_json::Value;

use crate::helpers::{eventually, WsClient, PASSWORD, WAIT};

/// A real node started with `--drain-grace <grace>`, an account on it and one of its rooms.
async fn node_with_room(grace: &str) -> (tempfile::TempDir, NodeProcess, Session, i64) {
    let data_dir = tempfile::tempdir().unwrap();
    let node = Launch::new(env!("CARGO_BIN_EXE_chatnode"))
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--drain-grace", grace])
        .env("CHATNODE_JWT_SECRET", crate::helpers::JWT_SECRET)
        .start()
        .await
        .expect("the node starts");
    let account = NewAccount {
        email: "drain@example.com".into(),
        phone_number: "+14155552671".into(),
        password: PASSWORD.into(),
        first_name: "D".into(),
        last_name: "D".into(),
    };
    let me = node.client().register(&account).await.unwrap();
    let room = node.client().create_room(me.access(), "r", &[]).await;
    (data_dir, node, me, room.unwrap().id)
}

/// `chatnode admin node drain --pid <node> --json`: it returns once the node has exited.
async fn drain_command(pid: u32) -> Output {
    let pid = pid.to_string();
    let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatnode"))
        .args(["admin", "node", "drain", "--json", "--timeout", "20"])
        .args(["--pid", &pid])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT * 3, command)
        .await
        .expect("the drain command ends in time")
        .expect("the drain command runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["drained"], true, "{report}");
    output
}

/// Waits (boundedly) until `/readyz` reports the drain.
async fn until_draining(client: &Client) {
    eventually(WAIT, "/readyz reports the drain", || async {
        let readiness = client.readyz().await.ok()?;
        (!readiness.ready && readiness.report["drain"] == "draining").then_some(())
    })
    .await;
}

/// Reaps the exited node (SIGTERM to a zombie does nothing) and checks its exit status.
async fn reap(mut node: NodeProcess) {
    let exit = node.terminate(WAIT).await.expect("the node has exited");
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test]
async fn a_draining_node_fails_readiness_refuses_sockets_serves_rest_then_exits() {
    let (data_dir, node, me, room) = node_with_room("5").await;
    let client = node.client().clone();
    let mut socket = WsClient {
        socket: client.socket(room, me.access()).await.unwrap(),
    };
    eventually(WAIT, "the socket is registered", || async {
        (client.socket_count().await.ok() == Some(1)).then_some(())
    })
    .await;
    let drained = drain_command(node.pid());
    let window = async {
        assert_eq!(
            socket.expect_close().await,
            (1012, "service restart".into())
        );
        until_draining(&client).await;
        let verbose = client.get("/readyz?verbose").send().await.unwrap();
        assert_eq!(verbose.status, StatusCode::SERVICE_UNAVAILABLE);
        let text = verbose.text();
        assert!(text.contains("[-]drain failed: draining\n"), "{text}");
        assert!(text.ends_with("readyz check failed\n"), "{text}");
        let alive = client.get("/livez").send().await.unwrap();
        assert_eq!(alive.status, StatusCode::OK);
        let refused = match client.socket(room, me.access()).await {
            Err(chatnode_client::Error::Refused(refusal)) => refusal,
            other => panic!("a new socket is refused with 503, got {other:?}"),
        };
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.retry_after.is_some(), "{refused:?}");
        assert!(refused.detail().is_some_and(|d| d.contains("restarting")));
        // REST still answers, and what it stores is published before the node exits.
        let sent = client.send(me.access(), room, "during the drain").await;
        assert_eq!(sent.unwrap().content, "during the drain");
    };
    tokio::join!(drained, window);
    reap(node).await;
    let db = rusqlite::Connection::open(data_dir.path().join("chatnode.db")).unwrap();
    let left: i64 = db
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the relay published the outbox before the exit");
}

#[tokio::test]
async fn a_second_drain_signal_ends_the_grace_early() {
    let (_data_dir, node, _me, _room) = node_with_room("3600").await;
    let client = node.client().clone();
    // The first command waits for an exit only the second signal brings within its timeout.
    let first = drain_command(node.pid());
    let second = async {
        until_draining(&client).await;
        drain_command(node.pid()).await
    };
    tokio::join!(first, second);
    reap(node).await;
}

#[tokio::test]
async fn sigterm_ends_a_drains_grace_early() {
    let (_data_dir, mut node, _me, _room) = node_with_room("3600").await;
    let client = node.client().clone();
    let first = drain_command(node.pid());
    let terminate = async {
        until_draining(&client).await;
        node.terminate(WAIT).await
    };
    let (_, exit) = tokio::join!(first, terminate);
    let exit = exit.expect("the node exits on SIGTERM during the grace");
    assert!(exit.success(), "exit status {exit:?}");
}

/// Runs `chatnode serve` with `args` (and CHATNODE_DRAIN_GRACE=`env`); it must be refused by
/// the parser, before anything is opened: exit code 2. Its stderr.
async fn refused(args: &[&str], env: Option<&str>) -> String {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatnode"));
    command
        .arg("serve")
        .args(args)
        .env_remove("CHATNODE_DRAIN_GRACE")
        .kill_on_drop(true);
    if let Some(value) = env {
        command.env("CHATNODE_DRAIN_GRACE", value);
    }
    let output = tokio::time::timeout(WAIT, command.output()).await;
    let output = output.expect("the parser answers in time").unwrap();
    assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_drain_grace_outside_0_to_3600_seconds_is_a_config_error() {
    let too_long = refused(&["--drain-grace", "3601"], None).await;
    assert!(too_long.contains("--drain-grace"), "{too_long}");
    assert!(too_long.contains("0..=3600"), "{too_long}");
    for stderr in [
        refused(&["--drain-grace=-5"], None).await,
        refused(&[], Some("soon")).await,
    ] {
        assert!(stderr.contains("--drain-grace"), "{stderr}");
    }
}
