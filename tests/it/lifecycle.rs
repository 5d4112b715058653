use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{spawn, start, test_config, TestDatabase, WAIT};

#[tokio::test]
async fn shutdown_closes_sockets_with_1001_and_returns_promptly() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let mut first = node.ws(room, &alice).await;
    let mut second = node.ws(room, &alice).await;
    let started = Instant::now();
    let closing = tokio::spawn(node.stop());
    assert_eq!(first.expect_close().await.0, 1001);
    assert_eq!(second.expect_close().await.0, 1001);
    closing.await.unwrap();
    assert!(started.elapsed() < WAIT);
}

#[tokio::test]
async fn data_and_tokens_survive_a_restart_on_the_same_directory() {
    let data_dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new().await;
    let mut config = test_config(data_dir.path());
    config.database_url = database.url.clone();
    config.jwt_secret = None; // the generated secret must be reused
    let node = start(config.clone(), data_dir).await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "kept", &[]).await;
    node.send_message(&alice, room, "before restart").await;
    let data_dir = node.stop().await;

    let node = start(config, data_dir).await;
    let history = node.history(&alice, room, "").await;
    assert_eq!(history[0]["content"], "before restart");
    let (status, _) = node
        .post(
            "/api/v1/auth/login/",
            None,
            json!({"email": alice.email, "password": crate::helpers::PASSWORD}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
}

/// Reads the node's log until it names the address it bound (bounded in time).
fn bound_address(child: &mut std::process::Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    // Keeps draining after the address so the node never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("\"address\":\"").nth(1) {
                let _ = found.send(rest.split('"').next().unwrap().to_string());
            }
        }
    });
    address
        .recv_timeout(WAIT)
        .expect("the node logs the address it bound")
}

#[tokio::test]
async fn the_binary_logs_its_port_and_exits_cleanly_on_sigterm_with_sockets_open() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatnode"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(data_dir.path())
        .env("CHATNODE_JWT_SECRET", crate::helpers::JWT_SECRET)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let address = bound_address(&mut child);
    let base = format!("http://{address}");
    let client = reqwest::Client::new();
    let registered: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/register/"))
        .json(
            &json!({"email": "z@example.com", "phone_number": "+14155552671",
                      "password": crate::helpers::PASSWORD, "first_name": "Z", "last_name": "Z"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = registered["data"]["credentials"]["access"]
        .as_str()
        .unwrap();
    let room: serde_json::Value = client
        .post(format!("{base}/api/v1/chat/chatrooms/create/"))
        .bearer_auth(token)
        .json(&json!({"name": "r"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = room["data"]["chatroom"]["id"].as_i64().unwrap();
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{address}/ws/chat/{room}/?token={token}"))
            .await
            .unwrap();

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    use futures_util::StreamExt;
    let close = loop {
        match tokio::time::timeout(WAIT, socket.next()).await.unwrap() {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1001);
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test]
async fn migrate_applies_the_schema_once() {
    let data_dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = Command::new(env!("CARGO_BIN_EXE_chatnode"))
            .args(["migrate", "--data-dir"])
            .arg(data_dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let db = rusqlite::Connection::open(data_dir.path().join("chatnode.db")).unwrap();
    let applied: i64 = db
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/sqlite"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, files);
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_postgres_url_names_the_missing_feature() {
    let output = Command::new(env!("CARGO_BIN_EXE_chatnode"))
        .args([
            "migrate",
            "--database-url",
            "postgres://user:secret@127.0.0.1/db",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "passwords are not printed: {stderr}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn an_unreachable_postgres_fails_without_printing_the_password() {
    // Port 1 refuses at once: nothing listens there.
    let output = Command::new(env!("CARGO_BIN_EXE_chatnode"))
        .args([
            "migrate",
            "--database-url",
            "postgres://user:secret@127.0.0.1:1/db",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error connecting to server"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "passwords are not printed: {stderr}"
    );
}

#[tokio::test]
async fn nodes_starting_together_on_one_database_all_start() {
    let shared = tempfile::tempdir().unwrap();
    let database = TestDatabase::new().await;
    let url = database.shared_url(&shared.path().join("shared.db"));
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let builds = dirs.iter().map(|dir| {
        let mut config = test_config(dir.path());
        config.database_url = Some(url.clone());
        chatnode::Application::build(config)
    });
    for built in futures_util::future::join_all(builds).await {
        built.expect("every node starts and finds the schema in place");
    }
}

/// Small frames must not wait for Nagle: the node runs in this process, so its end of a
/// connection is one of this process's descriptors.
#[tokio::test]
async fn accepted_connections_have_tcp_nodelay() {
    use std::mem::ManuallyDrop;
    use std::os::fd::FromRawFd;

    let node = spawn().await;
    let client = tokio::net::TcpStream::connect(node.address).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    let deadline = Instant::now() + WAIT;
    let server_end = loop {
        let found = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .find_map(|entry| {
                let fd: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
                // Borrowed, never closed: the descriptor belongs to the node (or to the runtime).
                let stream = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
                (stream.local_addr().ok()? == node.address
                    && stream.peer_addr().ok()? == client_addr)
                    .then(|| stream.nodelay().unwrap())
            });
        if let Some(nodelay) = found {
            break nodelay;
        }
        assert!(
            Instant::now() < deadline,
            "the node never accepted the connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        server_end,
        "the node's end of the connection has Nagle's algorithm on"
    );
    drop(client);
    node.stop().await;
}
