//! `chatnode admin`, run as an operator runs it: the real binary against the database of a
//! running node (SQLite here; PostgreSQL in the suite's PostgreSQL pass), while clients
//! use the node over HTTP and WebSocket.

use std::process::Output;

use chatnode_client::{Launch, NewAccount, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn, TestNode, TestUser, WsClient, PASSWORD, WAIT};

/// The database URL the node uses, as `--database-url` takes it.
fn database_url(node: &TestNode) -> String {
    node.database
        .shared_url(&node.data_dir.path().join("chatnode.db"))
}

/// Runs `chatnode admin <args> --database-url <the node's>`, bounded by [`WAIT`].
async fn admin(node: &TestNode, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatnode"));
    command
        .arg("admin")
        .args(args)
        .arg("--database-url")
        .arg(database_url(node))
        .env_remove("CHATNODE_DATABASE_URL")
        .env_remove("CHATNODE_DATA_DIR")
        .kill_on_drop(true);
    tokio::time::timeout(WAIT, command.output())
        .await
        .expect("the admin command ends in time")
        .expect("the admin command runs")
}

/// The JSON a successful `admin ... --json` printed.
async fn admin_json(node: &TestNode, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let output = admin(node, &with_json).await;
    assert!(
        output.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "admin {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The one-line error of a failed admin command (exit code 1).
async fn admin_error(node: &TestNode, args: &[&str]) -> String {
    let output = admin(node, args).await;
    assert_eq!(output.status.code(), Some(1), "admin {args:?} should fail");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

async fn list_status(node: &TestNode, user: &TestUser) -> StatusCode {
    node.get("/api/v1/chat/chatrooms/", Some(&user.access))
        .await
        .0
}

async fn refresh_status(node: &TestNode, user: &TestUser) -> StatusCode {
    let body = json!({ "refresh": user.refresh });
    node.post("/api/v1/auth/refresh/", None, body).await.0
}

async fn login_status(node: &TestNode, user: &TestUser) -> StatusCode {
    let body = json!({ "email": user.email, "password": PASSWORD });
    node.post("/api/v1/auth/login/", None, body).await.0
}

#[tokio::test]
async fn a_disabled_user_is_refused_everywhere_at_once_until_enabled() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "ops", &[&bob]).await;
    let mut socket = node.ws(room, &alice).await;
    node.ws(room, &bob).await;

    let listed = admin_json(&node, &["users", "list"]).await;
    let ids: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [alice.id, bob.id]);
    let table = admin(&node, &["users", "list"]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("ID"), "a table by default: {table}");
    assert!(table.contains(&alice.email) && table.contains("active"));
    let shown = admin_json(&node, &["users", "show", &alice.id.to_string()]).await;
    assert_eq!(
        (shown["state"].as_str(), shown["rooms"].as_i64()),
        (Some("active"), Some(1))
    );

    let disabled = admin_json(&node, &["users", "disable", &alice.id.to_string()]).await;
    assert_eq!(disabled["state"], "disabled");
    assert_eq!(
        socket.expect_close().await,
        (4403, "your account was disabled".to_string())
    );
    assert_eq!(list_status(&node, &alice).await, StatusCode::FORBIDDEN);
    assert_eq!(refresh_status(&node, &alice).await, StatusCode::FORBIDDEN);
    assert_eq!(login_status(&node, &alice).await, StatusCode::FORBIDDEN);
    let (status, body) = node.refused_ws(&node.ws_url(room, &alice.access)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        list_status(&node, &bob).await,
        StatusCode::OK,
        "bob is not affected"
    );
    let stats = admin_json(&node, &["stats"]).await;
    assert_eq!(stats["disabled_users"], 1);

    admin_json(&node, &["users", "enable", &alice.id.to_string()]).await;
    assert_eq!(list_status(&node, &alice).await, StatusCode::OK);
    assert_eq!(refresh_status(&node, &alice).await, StatusCode::OK);
    node.ws(room, &alice).await;

    let error = admin_error(&node, &["users", "disable", "999999"]).await;
    assert_eq!(error, "chatnode admin: no user with id 999999");
}

#[tokio::test]
async fn revoking_a_users_tokens_ends_their_sessions_but_not_their_account() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let mut socket = node.ws(room, &alice).await;

    let account = admin_json(
        &node,
        &["tokens", "revoke", "--user", &alice.id.to_string()],
    )
    .await;
    assert!(account["tokens_revoked_at"].is_i64(), "{account}");
    let (code, _) = socket.expect_close().await;
    assert_eq!(code, 4401);
    assert_eq!(
        refresh_status(&node, &alice).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(list_status(&node, &alice).await, StatusCode::UNAUTHORIZED);
    // Tokens carry their issue time in seconds: one of the revoking second is refused too.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = node
        .api
        .login(&alice.email, PASSWORD)
        .await
        .expect("the account still signs in");
    let (status, _) = node
        .get("/api/v1/chat/chatrooms/", Some(again.access()))
        .await;
    assert_eq!(status, StatusCode::OK);

    let error = admin_error(&node, &["tokens", "revoke", "--user", "424242"]).await;
    assert_eq!(error, "chatnode admin: no user with id 424242");
}

#[tokio::test]
async fn rooms_are_listed_shown_counted_and_deleted_with_their_history() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let kept = node.create_room(&alice, "kept", &[]).await;
    let room = node.create_room(&alice, "doomed", &[&bob]).await;
    for text in ["one", "two", "three"] {
        node.send_message(&alice, room, text).await;
    }
    let mut socket = node.ws(room, &bob).await;
    let mut other = node.ws(kept, &alice).await;

    let rooms = admin_json(&node, &["rooms", "list"]).await;
    let rows: Vec<(i64, i64, i64)> = rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_i64().unwrap();
            (n("id"), n("members"), n("messages"))
        })
        .collect();
    assert_eq!(rows, [(kept, 1, 0), (room, 2, 3)]);
    let shown = admin_json(&node, &["rooms", "show", &room.to_string()]).await;
    assert_eq!(shown["name"], "doomed");
    let members: Vec<&str> = shown["member_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(members, [alice.username.as_str(), bob.username.as_str()]);
    let stats = admin_json(&node, &["stats"]).await;
    assert_eq!(
        (&stats["users"], &stats["rooms"], &stats["messages"]),
        (&json!(2), &json!(2), &json!(3))
    );
    assert!(stats["outbox_depth"].is_u64(), "{stats}");

    let deleted = admin_json(&node, &["rooms", "delete", &room.to_string()]).await;
    assert_eq!(deleted["deleted"], true);
    assert_eq!(
        socket.expect_close().await,
        (4404, "this chatroom was deleted".to_string())
    );
    let history = format!("/api/v1/chat/chatrooms/{room}/messages/");
    assert_eq!(
        node.get(&history, Some(&alice.access)).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = node.refused_ws(&node.ws_url(room, &alice.access)).await;
    assert_eq!(status, 404);
    other
        .expect_silence(std::time::Duration::from_millis(300))
        .await;
    let stats = admin_json(&node, &["stats"]).await;
    assert_eq!(
        (&stats["rooms"], &stats["messages"]),
        (&json!(1), &json!(0))
    );

    let error = admin_error(&node, &["rooms", "delete", &room.to_string()]).await;
    assert_eq!(error, format!("chatnode admin: no room with id {room}"));
    let error = admin_error(&node, &["rooms", "show", "777777"]).await;
    assert_eq!(error, "chatnode admin: no room with id 777777");
}

#[tokio::test]
async fn a_missing_database_is_a_one_line_error_not_a_new_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatnode"))
        .args(["admin", "stats", "--data-dir"])
        .arg(dir.path())
        .env_remove("CHATNODE_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("chatnode admin: no database at "),
        "{stderr}"
    );
    assert!(
        !dir.path().join("chatnode.db").exists(),
        "nothing was created"
    );
}

#[tokio::test]
async fn a_drained_node_closes_its_sockets_with_1012_and_exits() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut node = Launch::new(env!("CARGO_BIN_EXE_chatnode"))
        .arg("--data-dir")
        .arg(data_dir.path())
        // No grace: the window it opens is drain.rs's subject.
        .args(["--drain-grace", "0"])
        .env("CHATNODE_JWT_SECRET", crate::helpers::JWT_SECRET)
        .start()
        .await
        .expect("the node starts");
    let client = node.client().clone();
    let account = NewAccount {
        email: "d@example.com".into(),
        phone_number: "+14155552671".into(),
        password: PASSWORD.into(),
        first_name: "D".into(),
        last_name: "D".into(),
    };
    let me = client.register(&account).await.unwrap();
    let room = client.create_room(me.access(), "r", &[]).await.unwrap();
    let mut socket = WsClient {
        socket: client.socket(room.id, me.access()).await.unwrap(),
    };
    crate::helpers::eventually(WAIT, "the socket is registered", || async {
        (client.socket_count().await.ok() == Some(1)).then_some(())
    })
    .await;

    let pid = node.pid().to_string();
    let drain = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatnode"))
        .args([
            "admin",
            "node",
            "drain",
            "--json",
            "--timeout",
            "10",
            "--pid",
            &pid,
        ])
        .kill_on_drop(true)
        .output();
    let (close, drained) = tokio::join!(socket.expect_close(), drain);
    assert_eq!(close, (1012, "service restart".to_string()));
    let drained = drained.unwrap();
    assert!(
        drained.status.success(),
        "{}",
        String::from_utf8_lossy(&drained.stderr)
    );
    let report: Value = serde_json::from_slice(&drained.stdout).unwrap();
    assert_eq!(report["drained"], true);
    // The command returned once the process had exited: it is a zombie until reaped here.
    let exit = node.terminate(WAIT).await.expect("the node has exited");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        client.socket(room.id, me.access()).await.is_err(),
        "no new socket"
    );

    let error = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatnode"))
        .args([
            "admin",
            "node",
            "drain",
            "--pid",
            &std::process::id().to_string(),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(error.status.code(), Some(1), "the test process is no node");
    let stderr = String::from_utf8_lossy(&error.stderr);
    assert!(stderr.contains("not a chatnode node"), "{stderr}");
}
