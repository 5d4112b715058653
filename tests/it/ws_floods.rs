//! WebSocket floods against the real binary, its memory read from /proc: a ping flood from a
//! peer that never reads, and repeated `catch_up` frames on a large room. Each test prints its
//! figures (`cargo test --test it ws_floods -- --nocapture`); BENCHMARKS.md quotes them.

use std::net::SocketAddr;
use std::time::Duration;

use chatnode_bench::procstat::{reset_peak, Sample};
use chatnode_client::{Launch, NewAccount, NodeProcess};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpSocket;

use crate::helpers::{eventually, is_background, spawn_with, WsClient, PASSWORD, WAIT};
use crate::ws_close::{client_frame, upgrade};

const MIB: u64 = 1024 * 1024;

/// `chatnode serve` on a free port with a fresh data directory; killed on drop.
pub(crate) struct Binary {
    process: NodeProcess,
    pub(crate) address: SocketAddr,
    _data_dir: tempfile::TempDir,
}

impl Binary {
    pub(crate) async fn start(args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let process = Launch::new(env!("CARGO_BIN_EXE_chatnode"))
            .args(["--jwt-secret", "flood-test-secret-0123456789abcdef"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(args)
            .start()
            .await
            .expect("the node starts");
        Self {
            address: process.address(),
            process,
            _data_dir: data_dir,
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.process.pid() as i32
    }

    pub(crate) fn rss_mib(&self) -> (f64, f64) {
        let sample = Sample::read(self.pid()).unwrap();
        (
            sample.rss_kib as f64 / 1024.0,
            sample.peak_rss_kib as f64 / 1024.0,
        )
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let request = self.process.client().post(path).json(&body);
        let answer = request.maybe_token(token).send().await.unwrap();
        assert!(answer.status.is_success(), "{path}: {}", answer.status);
        answer.json()
    }

    /// Registers `name`; returns their id and access token.
    async fn register(&self, name: &str) -> (i64, String) {
        let account = NewAccount {
            email: format!("{name}@example.com"),
            phone_number: "+14155552671".into(),
            password: PASSWORD.into(),
            first_name: name.into(),
            last_name: "F".into(),
        };
        let session = self.process.client().register(&account).await.unwrap();
        (session.user.id, session.credentials.access)
    }

    async fn create_room(&self, token: &str) -> i64 {
        let room = self.process.client().create_room(token, "flood", &[]).await;
        room.unwrap().id
    }

    async fn wait_for_sockets(&self, count: u64) {
        let what = format!("{count} sockets");
        eventually(WAIT, &what, || async {
            let sockets = self.process.client().socket_count().await.unwrap();
            (sockets == count).then_some(())
        })
        .await
    }
}

/// Reads one server frame's opcode (skipping its payload, and skipping receipt frames
/// whole: the node writes them besides answers); `None` at EOF or reset.
async fn next_opcode(tcp: &mut (impl AsyncReadExt + Unpin)) -> Option<u8> {
    loop {
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7f {
            126 => u64::from(tcp.read_u16().await.ok()?),
            127 => tcp.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let opcode = head[0] & 0x0f;
        if opcode == 0x1 && len <= 64 * 1024 {
            let mut payload = vec![0u8; len as usize];
            tcp.read_exact(&mut payload).await.ok()?;
            if serde_json::from_slice::<Value>(&payload).is_ok_and(|f| is_background(&f)) {
                continue;
            }
            return Some(opcode);
        }
        let skipped = tokio::io::copy(&mut tcp.take(len), &mut tokio::io::sink()).await;
        return (skipped.ok()? == len).then_some(opcode);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_peer_that_never_reads_keeps_the_node_bounded() {
    // The node never pings during the flood: only the bound on what it buffers is at work.
    let node = Binary::start(&["--rate-limits", "off", "--ws-ping-secs", "3600"]).await;
    let (_, token) = node.register("alice").await;
    let room = node.create_room(&token).await;
    // A small receive window, and nothing read until the flood is over.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(node.address).await.unwrap();
    let mut tcp = upgrade(tcp, &node.address.to_string(), room, &token).await;
    node.wait_for_sockets(1).await;

    let (start, _) = node.rss_mib();
    assert!(reset_peak(node.pid()), "VmHWM can be reset");
    // 1 MiB of pings with the largest allowed payload, sent 48 times.
    let ping = client_frame(0x89, &[b'p'; 125], true);
    let chunk: Vec<u8> = ping.repeat((MIB as usize) / ping.len());
    let rounds = 48;
    for _ in 0..rounds {
        tcp.write_all(&chunk).await.expect("the flood is read");
    }
    // Answered only once every ping before it has been read.
    tcp.write_all(&client_frame(0x81, b"not json", true))
        .await
        .unwrap();
    let mut reader = AsyncBufReader::with_capacity(64 * 1024, tcp);
    let mut pongs = 0u64;
    let answered = loop {
        match tokio::time::timeout(WAIT, next_opcode(&mut reader))
            .await
            .expect("the node answers or closes")
        {
            Some(0xA) => pongs += 1,
            Some(0x1) => break true,
            Some(_) => {}
            // The node dropped the peer whose backlog is full: also bounded.
            None => break false,
        }
    };
    let (_, peak) = node.rss_mib();
    drop(reader);
    node.wait_for_sockets(0).await;
    let (after, _) = node.rss_mib();
    println!(
        "ping flood: {} MiB of pings ({} frames), {pongs} pongs came back, {}; node RSS {start:.1} MiB \
         at the start, peak {peak:.1} MiB (+{:.1}), {after:.1} MiB after the socket closed",
        rounds,
        rounds * chunk.len() / ping.len(),
        if answered { "then the error frame" } else { "then EOF" },
        peak - start
    );
    // Before the bound: +58 MiB for these 48 MiB of pings, every pong buffered.
    assert!(peak - start < 16.0, "peak RSS grew {:.1} MiB", peak - start);
    assert!(
        after - start < 50.0,
        "RSS {after:.1} MiB after, {start:.1} before"
    );
    // What came back is bounded by the node's write buffer plus the kernel's buffers, not by
    // the 386,000 pings sent.
    assert!(pongs < 100_000, "{pongs} pongs");
}

/// A node whose `catch_up` limit is `catch_up`, every other limit out of the way.
async fn catch_up_limited(catch_up: &str) -> Binary {
    Binary::start(&[
        "--rate-limit-catch-up",
        catch_up,
        "--rate-limit-send",
        "1000000/1s",
    ])
    .await
}

async fn replay_ids(socket: &mut WsClient, count: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        ids.push(socket.next_data().await["id"].as_i64().unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_catch_up_frames_are_limited_per_user_and_a_replay_stays_bounded() {
    let node = catch_up_limited("3/h").await;
    let (_, token) = node.register("alice").await;
    let room = node.create_room(&token).await;
    let messages = 2000;
    let content = "m".repeat(1000);
    let path = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
    let mut ids = Vec::with_capacity(messages);
    for _ in 0..messages / 8 {
        let sends = (0..8).map(|_| node.post(&path, Some(&token), json!({"content": content})));
        for sent in futures_util::future::join_all(sends).await {
            ids.push(sent["data"]["detail"]["id"].as_i64().unwrap());
        }
    }
    ids.sort_unstable();

    let socket = node.process.client().socket(room, &token).await.unwrap();
    let mut socket = WsClient { socket };
    node.wait_for_sockets(1).await;
    let (start, _) = node.rss_mib();
    assert!(reset_peak(node.pid()));
    // Each allowed request replays the whole room, in order, once.
    for _ in 0..3 {
        socket
            .send_json(json!({"purpose": "catch_up", "since": 0}))
            .await;
        assert_eq!(replay_ids(&mut socket, messages).await, ids);
    }
    let (_, peak) = node.rss_mib();
    // The fourth is refused with an error frame in the envelope, and the socket stays open.
    socket
        .send_json(json!({"purpose": "catch_up", "since": 0}))
        .await;
    let refused = socket.next_json().await;
    assert_eq!(refused["success"], false, "{refused}");
    let detail = refused["errors"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Too many catch-up requests; try again in "),
        "{detail}"
    );
    let live = node
        .post(&path, Some(&token), json!({"content": "live"}))
        .await;
    let got = socket.next_data().await;
    assert_eq!(got["id"], live["data"]["detail"]["id"]);
    socket.expect_silence(Duration::from_millis(200)).await;
    drop(socket);
    node.wait_for_sockets(0).await;
    let (after, _) = node.rss_mib();
    println!(
        "catch-up flood: 3 replays of {messages} messages of 1000 characters (~{} MiB of frames), \
         the 4th refused; node RSS {start:.1} MiB at the start, peak {peak:.1} MiB (+{:.1}), \
         {after:.1} MiB after",
        3 * messages * 1100 / MIB as usize,
        peak - start
    );
    // A replay holds one page of 200 messages at a time, whatever the room's size.
    assert!(peak - start < 32.0, "peak RSS grew {:.1} MiB", peak - start);
    assert!(
        after - start < 50.0,
        "RSS {after:.1} MiB after, {start:.1} before"
    );
}

#[tokio::test]
async fn with_rate_limits_off_catch_up_frames_are_not_limited() {
    let node = spawn_with(|c| {
        c.limits.enabled = false;
        c.limits.catch_up = "1/h".parse().unwrap();
    })
    .await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let first = node.send_message(&alice, room, "one").await["id"].clone();
    let mut socket = node.ws(room, &alice).await;
    for _ in 0..3 {
        socket
            .send_json(json!({"purpose": "catch_up", "since": 0}))
            .await;
        assert_eq!(socket.next_data().await["id"], first);
    }
    socket.expect_silence(Duration::from_millis(200)).await;
}
