use std::process::Command;
use std::time::Instant;

use chatnode_client::{Incoming, Launch, NewAccount};
use serde_json::json;

use crate::helpers::{eventually, spawn, start, test_config, TestDatabase, WAIT};

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
    assert_eq!(status, chatnode_client::StatusCode::OK);
}

#[tokio::test]
async fn the_binary_logs_its_port_and_exits_cleanly_on_sigterm_with_sockets_open() {
    let data_dir = tempfile::tempdir().unwrap();
    // The launcher finds the port in the log: that the binary logs it is part of the test.
    let mut node = Launch::new(env!("CARGO_BIN_EXE_chatnode"))
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("CHATNODE_JWT_SECRET", crate::helpers::JWT_SECRET)
        .env("RUST_LOG", "info")
        .start()
        .await
        .expect("the node starts");
    let client = node.client().clone();
    let account = NewAccount {
        email: "z@example.com".into(),
        phone_number: "+14155552671".into(),
        password: crate::helpers::PASSWORD.into(),
        first_name: "Z".into(),
        last_name: "Z".into(),
    };
    let me = client.register(&account).await.unwrap();
    let room = client.create_room(me.access(), "r", &[]).await.unwrap();
    let mut socket = client.socket(room.id, me.access()).await.unwrap();

    let exit = tokio::spawn(async move { node.terminate(WAIT).await });
    let close = loop {
        match socket.recv_within(WAIT).await.unwrap() {
            Some(Incoming::Close { code, .. }) => break code,
            Some(Incoming::Frame(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(close, 1001);
    let exit = exit.await.unwrap().expect("the node exits after SIGTERM");
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
    let server_end = eventually(WAIT, "the node accepts the connection", || async {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .find_map(|entry| {
                let fd: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
                // Borrowed, never closed: the descriptor belongs to the node (or to the runtime).
                let stream = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
                (stream.local_addr().ok()? == node.address
                    && stream.peer_addr().ok()? == client_addr)
                    .then(|| stream.nodelay().unwrap())
            })
    })
    .await;
    assert!(
        server_end,
        "the node's end of the connection has Nagle's algorithm on"
    );
    drop(client);
    node.stop().await;
}
