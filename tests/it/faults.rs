//! Crash and fault tests, each bounded in time: a node killed with SIGKILL in the middle of a
//! stream of sends and restarted on its data, a broker restarted mid-stream, and a disk that
//! fills up or turns read-only under a running node. Whatever a client was told was stored (a
//! 201, or its own message echoed on its socket) must be there afterwards, exactly once, and
//! reach every socket exactly once.
//!
//! Tests that need a service are `#[ignore]`d with the reason, and `make test` runs them
//! when it is there (scripts/test.sh): the disk tests mount file systems (root only), the
//! broker-restart tests start a RabbitMQ container of their own (Docker and
//! `CHATNODE_TEST_RABBITMQ_IMAGE`). Selected without their service, they fail.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatnode::config::TransportKind;
use chatnode_client::multipart::{Form, Part};
use chatnode_client::{Client, HistoryQuery, Launch, NewAccount, SocketOptions, StatusCode};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::broker::{brokers, docker_answers, reap_after_exit, Broker};
use crate::helpers::{
    eventually, eventually_ok, outbox_drained, start, test_config, TestDatabase, TestNode,
    TestUser, JWT_SECRET, WAIT,
};

/// Acknowledged messages after which the node is killed, with sends still in flight.
const ACKED_BEFORE_KILL: usize = 60;
/// Longest wait for the outbox to drain or sockets to catch up: covers the supervisor's
/// backoff while a broker restarts.
const RECOVERY: Duration = Duration::from_secs(45);

/// A node's HTTP face, for nodes in this process and in child processes alike.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) client: Client,
}

impl Api {
    fn new(address: &str) -> Self {
        let http = reqwest::Client::builder().timeout(WAIT).build().unwrap();
        Self {
            client: Client::with_http(format!("http://{address}"), http),
        }
    }

    async fn wait_ready(&self) {
        eventually(WAIT * 3, "the node is ready", || async {
            self.client
                .readyz()
                .await
                .is_ok_and(|r| r.ready)
                .then_some(())
        })
        .await
    }

    pub(crate) async fn register(&self, name: &str) -> TestUser {
        let account = NewAccount {
            email: format!("{name}@example.com"),
            phone_number: "+14155552671".into(),
            password: crate::helpers::PASSWORD.into(),
            first_name: name.into(),
            last_name: "T".into(),
        };
        let session = self.client.register(&account).await;
        TestUser::from(session.unwrap_or_else(|e| panic!("register {name}: {e}")))
    }

    pub(crate) async fn create_room(&self, owner: &TestUser, members: &[&TestUser]) -> i64 {
        let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
        let room = self.client.create_room(&owner.access, "faults", &ids).await;
        room.unwrap_or_else(|e| panic!("create room: {e}")).id
    }

    /// A REST send: the status and JSON body when the node answered.
    pub(crate) async fn send(
        &self,
        user: &TestUser,
        room: i64,
        content: &str,
    ) -> Result<(StatusCode, Value), chatnode_client::Error> {
        let answer = self
            .client
            .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
            .token(&user.access)
            .json(&json!({ "content": content }))
            .send()
            .await?;
        Ok((answer.status, answer.json()))
    }

    /// The room's whole history, `(id, content)` oldest first, read page by page.
    pub(crate) async fn history(&self, user: &TestUser, room: i64) -> Vec<(i64, String)> {
        let mut all: Vec<(i64, String)> = Vec::new();
        loop {
            let query = HistoryQuery {
                after: Some(all.last().map_or(0, |(id, _)| *id)),
                limit: Some(200),
                before: None,
            };
            let page = self.client.history(&user.access, room, query).await;
            let page = page.expect("history is served");
            if page.is_empty() {
                return all;
            }
            all.extend(page.into_iter().map(|m| (m.id, m.content)));
        }
    }
}

/// `chatnode serve` as a child process on a free port; SIGKILLed when dropped.
pub(crate) struct NodeProcess {
    process: chatnode_client::NodeProcess,
    pub(crate) api: Api,
    /// The id the node logged when it started listening.
    pub(crate) node_id: String,
}

impl NodeProcess {
    pub(crate) async fn start(args: &[OsString]) -> Self {
        let process = Launch::new(env!("CARGO_BIN_EXE_chatnode"))
            .args(args)
            .env("CHATNODE_JWT_SECRET", JWT_SECRET)
            // Rate limits would throttle the stream of sends these tests make.
            .env("CHATNODE_RATE_LIMITS", "off")
            .echo_log()
            .start()
            .await
            .expect("chatnode serve starts");
        Self {
            api: Api::new(&process.address().to_string()),
            node_id: process.node_id().to_string(),
            process,
        }
    }

    /// SIGKILL: no shutdown code of the node runs.
    pub(crate) async fn kill(&mut self) {
        self.process.kill().await.expect("SIGKILL the node");
    }
}

/// What the senders were told: messages acknowledged by a 201 (REST) or by the sender's own
/// echo on its socket (WebSocket), and every answer that was neither.
#[derive(Default)]
struct Ledger {
    acked: Vec<(i64, String)>,
    refused: Vec<String>,
}

type SharedLedger = Arc<Mutex<Ledger>>;

/// Sends over REST, `pace` apart, until `stop` fires or the node stops answering.
fn rest_sender(
    api: Api,
    user: TestUser,
    room: i64,
    pace: Duration,
    ledger: SharedLedger,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0.. {
            if stop.is_cancelled() {
                return;
            }
            let content = format!("rest {} #{i}", user.username);
            match api.send(&user, room, &content).await {
                Ok((StatusCode::CREATED, body)) => {
                    let id = body["data"]["detail"]["id"].as_i64().unwrap();
                    ledger.lock().unwrap().acked.push((id, content));
                }
                Ok((status, body)) => ledger
                    .lock()
                    .unwrap()
                    .refused
                    .push(format!("{content}: {status} {body}")),
                // The node is gone; what was in flight may or may not be stored.
                Err(_) => return,
            }
            tokio::time::sleep(pace).await;
        }
    })
}

/// A WebSocket recording the ids of the messages it receives, in order, until it ends. With
/// a sender it also sends a message every `pace` until `stop`, and books one as acknowledged
/// when its echo comes back.
struct Socket {
    received: Arc<Mutex<Vec<i64>>>,
    reader: JoinHandle<()>,
    /// Ends with the number of messages sent.
    writer: Option<JoinHandle<usize>>,
}

struct Sending {
    pace: Duration,
    ledger: SharedLedger,
    stop: CancellationToken,
}

impl Socket {
    async fn open(
        api: &Api,
        room: i64,
        user: &TestUser,
        since: Option<i64>,
        sending: Option<Sending>,
    ) -> Self {
        let options = SocketOptions {
            since,
            ..SocketOptions::default()
        };
        let socket = api.client.socket_with(room, &user.access, &options).await;
        let (mut sink, mut stream) = socket.expect("the socket connects").into_inner().split();
        let received = Arc::new(Mutex::new(Vec::new()));
        let ledger = sending.as_ref().map(|s| s.ledger.clone());
        let (me, record) = (user.id, received.clone());
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let frame: Value = serde_json::from_str(&text).unwrap();
                let data = &frame["data"];
                if data["event"] == "message" {
                    let id = data["id"].as_i64().unwrap();
                    record.lock().unwrap().push(id);
                    if let Some(ledger) = ledger.as_ref().filter(|_| data["sender_id"] == me) {
                        let content = data["message"].as_str().unwrap().to_string();
                        ledger.lock().unwrap().acked.push((id, content));
                    }
                } else if frame["success"] == false {
                    if let Some(ledger) = &ledger {
                        ledger.lock().unwrap().refused.push(frame.to_string());
                    }
                }
            }
        });
        let name = user.username.clone();
        let writer = sending.map(|Sending { pace, stop, .. }| {
            tokio::spawn(async move {
                let mut sent = 0;
                while !stop.is_cancelled() {
                    let frame = json!({"purpose": "send_chat_message", "message": format!("ws {name} #{sent}")});
                    if sink
                        .send(Message::Text(frame.to_string().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent += 1;
                    tokio::time::sleep(pace).await;
                }
                sent
            })
        });
        Self {
            received,
            reader,
            writer,
        }
    }

    fn received(&self) -> Vec<i64> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `expected.len()` messages have arrived, then checks they are `expected`.
    async fn expect(&self, expected: &[i64], within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.received().len() < expected.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let received = self.received();
        if received != expected {
            let diverges = received.iter().zip(expected).position(|(r, e)| r != e);
            let missing: Vec<&i64> = expected
                .iter()
                .filter(|id| !received.contains(id))
                .collect();
            let mut unique = received.clone();
            unique.sort();
            unique.dedup();
            panic!(
                "{what}: received {} of {} expected messages, {} duplicates, first divergence at \
                 {diverges:?}, missing {missing:?}",
                received.len(),
                expected.len(),
                received.len() - unique.len(),
            );
        }
    }

    /// Waits for the socket to end (its node died), boundedly.
    async fn ended(mut self) -> Vec<i64> {
        if let Some(writer) = self.writer.take() {
            tokio::time::timeout(WAIT, writer)
                .await
                .expect("the sender stops")
                .unwrap();
        }
        tokio::time::timeout(WAIT, &mut self.reader)
            .await
            .expect("the socket of a dead node ends")
            .unwrap();
        self.received()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(writer) = &self.writer {
            writer.abort();
        }
    }
}

/// The stored history holds every acknowledged message once, with its content, ids strictly
/// increasing, and nothing twice.
pub(crate) fn check_history(history: &[(i64, String)], acked: &[(i64, String)]) {
    assert!(
        history.windows(2).all(|w| w[0].0 < w[1].0),
        "ids strictly increase"
    );
    let mut contents: Vec<&String> = history.iter().map(|(_, c)| c).collect();
    contents.sort();
    let before = contents.len();
    contents.dedup();
    assert_eq!(contents.len(), before, "no message is stored twice");
    for message in acked {
        assert!(
            history.contains(message),
            "acknowledged message {message:?} is stored"
        );
    }
}

fn ids(history: &[(i64, String)]) -> Vec<i64> {
    history.iter().map(|(id, _)| *id).collect()
}

fn integrity_check(database: &Path) {
    let conn =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database read-only");
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(verdict, "ok", "integrity of {}", database.display());
}

async fn wait_outbox_drained(database_url: &str) {
    outbox_drained(database_url, RECOVERY).await;
}

/// Nodes in child processes on one database; senders over REST and WebSocket stream messages
/// into the first node, which is SIGKILLed after some acknowledgements, and restarted on the
/// same data. With a broker, a second node watches the room the whole time.
async fn killed_mid_stream(broker: Option<&Broker>) {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new().await;
    let sqlite_file = dir.path().join("shared.db");
    let database_url = database.shared_url(&sqlite_file);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let exchange = format!("chatnode-it-{run_id}");
    // A restarted node keeps its name, as a deployment's would.
    let args = |name: &str| {
        let mut args: Vec<OsString> = vec![
            "--data-dir".into(),
            dir.path().join(name).into(),
            "--database-url".into(),
            database_url.clone().into(),
            "--node-id".into(),
            format!("{name}-{}", &run_id[..8]).into(),
        ];
        if let Some(broker) = broker {
            args.extend(
                [
                    "--transport",
                    "amqp091",
                    "--broker-url",
                    broker.url.as_str(),
                    "--exchange",
                    exchange.as_str(),
                ]
                .map(OsString::from),
            );
        }
        args
    };
    // Started first, the node that will die takes the relay lease.
    let mut doomed = NodeProcess::start(&args("doomed")).await;
    let survivor = match broker {
        Some(_) => Some(NodeProcess::start(&args("survivor")).await),
        None => None,
    };
    let api = doomed.api.clone();
    let alice = api.register("alice").await;
    let dave = api.register("dave").await;
    let carol = api.register("carol").await;
    let bob = api.register("bob").await;
    let room = api.create_room(&alice, &[&bob, &carol, &dave]).await;

    let watcher_api = survivor.as_ref().map_or(api.clone(), |n| n.api.clone());
    let watcher = Socket::open(&watcher_api, room, &bob, None, None).await;
    let ledger = SharedLedger::default();
    let stop = CancellationToken::new();
    let sending = Sending {
        pace: Duration::from_millis(2),
        ledger: ledger.clone(),
        stop: stop.clone(),
    };
    let carol_socket = Socket::open(&api, room, &carol, None, Some(sending)).await;
    let senders = [&alice, &dave].map(|user| {
        rest_sender(
            api.clone(),
            user.clone(),
            room,
            Duration::ZERO,
            ledger.clone(),
            stop.clone(),
        )
    });

    eventually(WAIT, "the senders get their first acks", || async {
        (ledger.lock().unwrap().acked.len() >= ACKED_BEFORE_KILL).then_some(())
    })
    .await;
    doomed.kill().await;
    stop.cancel();
    for sender in senders {
        tokio::time::timeout(WAIT, sender)
            .await
            .expect("a sender stops")
            .unwrap();
    }
    let carol_saw = carol_socket.ended().await;
    let (acked, refused) = {
        let ledger = ledger.lock().unwrap();
        (ledger.acked.clone(), ledger.refused.clone())
    };
    assert!(refused.is_empty(), "no send was refused: {refused:?}");
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    if survivor.is_some() {
        // The survivor's relay takes the dead node's lease over and publishes what it left.
        let what = "the survivor's socket gets every acknowledged message";
        eventually(RECOVERY, what, || async {
            let received = watcher.received();
            acked
                .iter()
                .all(|(id, _)| received.contains(id))
                .then_some(())
        })
        .await;
    }

    let restarted = NodeProcess::start(&args("doomed")).await;
    let history = restarted.api.history(&alice, room).await;
    eprintln!(
        "killed after {} acknowledged sends; {} stored; a socket had seen {}",
        acked.len(),
        history.len(),
        carol_saw.len()
    );
    check_history(&history, &acked);
    if database.url.is_none() {
        integrity_check(&sqlite_file);
    }
    wait_outbox_drained(&database_url).await;

    // What a socket of the dead node saw is a gapless prefix of the history; reconnecting
    // with `since` gets exactly the rest.
    let all = ids(&history);
    assert_eq!(carol_saw, all[..carol_saw.len()], "no gap before the crash");
    let since = carol_saw.last().copied().unwrap_or(0);
    let back = Socket::open(&restarted.api, room, &carol, Some(since), None).await;
    let missing = all[carol_saw.len()..].to_vec();
    back.expect(&missing, WAIT, "the catch-up after the restart")
        .await;
    // Live again, once: the next frame is a new message, after the drained outbox.
    let (status, body) = restarted.api.send(&alice, room, "after").await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let after = body["data"]["detail"]["id"].as_i64().unwrap();
    let mut expected = missing;
    expected.push(after);
    back.expect(&expected, WAIT, "live after the restart").await;

    let mut everything = all;
    everything.push(after);
    if survivor.is_some() {
        watcher
            .expect(&everything, WAIT, "the survivor's socket, once each")
            .await;
    } else {
        let seen = watcher.received();
        assert_eq!(seen, everything[..seen.len()], "no gap before the crash");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(back.received(), expected, "no duplicates");
    if let Some(broker) = broker {
        drop((watcher, back, survivor, restarted));
        broker.delete_exchange(&exchange).await;
    }
}

#[tokio::test]
async fn a_node_killed_mid_stream_keeps_every_acknowledged_message() {
    killed_mid_stream(None).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp091_a_node_killed_mid_stream_loses_nothing_for_the_other_node() {
    // The broker on this host: a container is only the fallback.
    let broker = &brokers().await[0];
    eprintln!("broker: {}", broker.label);
    killed_mid_stream(Some(broker)).await;
}

/// A RabbitMQ container of this test's own, on a fixed loopback port so that it comes back
/// on the same address after a restart; removed when dropped.
struct RabbitContainer {
    id: String,
    url: String,
}

impl RabbitContainer {
    async fn start() -> Self {
        assert!(docker_answers(), "this test needs a Docker engine");
        let image = std::env::var("CHATNODE_TEST_RABBITMQ_IMAGE")
            .expect("this test needs CHATNODE_TEST_RABBITMQ_IMAGE");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let output = Command::new("docker")
            .args(["run", "-d", "--label", "chatnode-test=1", "-p"])
            .arg(format!("127.0.0.1:{port}:5672"))
            .arg(&image)
            .output()
            .expect("docker run");
        assert!(
            output.status.success(),
            "docker run {image}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
        reap_after_exit(&id);
        let container = Self {
            id,
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        };
        container.wait_started(1).await;
        container
    }

    /// Waits until the broker has logged its `times`-th startup.
    async fn wait_started(&self, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let logs = Command::new("docker")
                .args(["logs", &self.id])
                .output()
                .expect("docker logs");
            let text = String::from_utf8_lossy(&logs.stdout);
            if text.matches("Server startup complete").count() >= times {
                return;
            }
            assert!(Instant::now() < deadline, "RabbitMQ did not start in time");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn restart(&self) {
        let id = self.id.clone();
        let restarted = tokio::task::spawn_blocking(move || {
            Command::new("docker")
                .args(["restart", "-t", "3", &id])
                .status()
        })
        .await
        .unwrap()
        .expect("docker restart");
        assert!(restarted.success(), "docker restart");
        self.wait_started(2).await;
    }
}

impl Drop for RabbitContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Two nodes on one database and a broker that restarts while messages stream in over REST
/// and WebSocket: every send is stored, and every socket on both nodes gets every message once,
/// in order, live or through the resync that follows the reconnection.
async fn broker_restart_mid_stream(transport: TransportKind) {
    let broker = RabbitContainer::start().await;
    let database_dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new().await;
    let database_url = database.shared_url(&database_dir.path().join("shared.db"));
    let mut nodes: Vec<TestNode> = Vec::new();
    for _ in 0..2 {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path());
        config.database_url = Some(database_url.clone());
        config.transport = transport;
        config.broker_url = Some(broker.url.clone());
        nodes.push(start(config, data_dir).await);
    }
    let apis: Vec<Api> = nodes
        .iter()
        .map(|n| Api::new(&n.address.to_string()))
        .collect();
    let alice = apis[0].register("alice").await;
    let dave = apis[1].register("dave").await;
    let carol = apis[1].register("carol").await;
    let bob = apis[0].register("bob").await;
    let room = apis[0].create_room(&alice, &[&bob, &carol, &dave]).await;

    let ledger = SharedLedger::default();
    let stop = CancellationToken::new();
    let pace = Duration::from_millis(25);
    let watcher = Socket::open(&apis[0], room, &bob, None, None).await;
    let sending = Sending {
        pace,
        ledger: ledger.clone(),
        stop: stop.clone(),
    };
    let mut carol_socket = Socket::open(&apis[1], room, &carol, None, Some(sending)).await;
    let senders = [(&apis[0], &alice), (&apis[1], &dave)].map(|(api, user)| {
        rest_sender(
            api.clone(),
            user.clone(),
            room,
            pace,
            ledger.clone(),
            stop.clone(),
        )
    });
    eventually(WAIT, "the senders get their first acks", || async {
        (ledger.lock().unwrap().acked.len() >= 20).then_some(())
    })
    .await;
    let outage = Instant::now();
    broker.restart().await;
    eprintln!("broker restarted in {:?}", outage.elapsed());
    // A little more streaming with the broker back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    for sender in senders {
        tokio::time::timeout(WAIT, sender)
            .await
            .expect("a sender stops")
            .unwrap();
    }
    let ws_sent = tokio::time::timeout(WAIT, carol_socket.writer.as_mut().unwrap())
        .await
        .expect("the WebSocket sender stops")
        .unwrap();

    // Every send was stored, the broker outage notwithstanding (the node stores a socket's
    // frames one after the other: wait for the last ones).
    let history = eventually_ok(WAIT, "every WebSocket send is stored", || async {
        let history = apis[0].history(&alice, room).await;
        let ws_stored = history.iter().filter(|(_, c)| c.starts_with("ws ")).count();
        if ws_stored == ws_sent {
            Ok(history)
        } else {
            Err(format!("{ws_stored} of {ws_sent} WebSocket sends stored"))
        }
    })
    .await;
    let all = ids(&history);
    {
        let ledger = ledger.lock().unwrap();
        assert!(ledger.refused.is_empty(), "refused: {:?}", ledger.refused);
        let rest_sent = ledger.acked.iter().filter(|(_, c)| c.starts_with("rest "));
        assert!(rest_sent.count() > 20);
    }
    assert!(ws_sent > 0, "WebSocket sends were made");
    for socket in [&watcher, &carol_socket] {
        socket
            .expect(&all, RECOVERY, "every message once, in order, on each node")
            .await;
    }
    eprintln!(
        "{} messages on every socket {:?} after the restart began",
        all.len(),
        outage.elapsed()
    );
    check_history(&history, &ledger.lock().unwrap().acked);
    wait_outbox_drained(&database_url).await;
    for api in &apis {
        api.wait_ready().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(watcher.received(), all, "no duplicates");
    assert_eq!(carol_socket.received(), all, "no duplicates");
    drop((watcher, carol_socket));
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
#[ignore = "needs Docker and a RabbitMQ 4 image: set CHATNODE_TEST_RABBITMQ_IMAGE"]
async fn amqp091_a_broker_restart_mid_stream_loses_nothing() {
    broker_restart_mid_stream(TransportKind::Amqp091).await;
}

#[tokio::test]
#[ignore = "needs Docker and a RabbitMQ 4 image: set CHATNODE_TEST_RABBITMQ_IMAGE"]
async fn amqp10_a_broker_restart_mid_stream_loses_nothing() {
    broker_restart_mid_stream(TransportKind::Amqp10).await;
}

/// A file system mounted for one test on a fresh directory, unmounted when dropped (also when
/// the test fails).
struct Mounted {
    point: PathBuf,
    /// The ext4 image behind a loop mount.
    image: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// What a disk test needs from this machine (root, mount): it fails without it.
fn needed<T>(attempt: Result<T, String>) -> T {
    attempt.unwrap_or_else(|why| panic!("this disk fault test needs root and mount: {why}"))
}

impl Mounted {
    fn new(image: Option<PathBuf>, dir: tempfile::TempDir) -> Self {
        Self {
            point: dir.path().join("data"),
            image,
            _dir: dir,
        }
    }

    /// A tmpfs of `size` (e.g. `16m`).
    fn tmpfs(size: &str) -> Self {
        let disk = Self::new(None, tempfile::tempdir().unwrap());
        std::fs::create_dir(&disk.point).unwrap();
        let options = format!("size={size}");
        needed(run(
            "mount",
            &[
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "tmpfs".as_ref(),
                disk.point.as_os_str(),
            ],
        ));
        disk
    }

    /// An ext4 file system in an image file, loop-mounted.
    fn ext4(megabytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(megabytes << 20)
            .unwrap();
        let disk = Self::new(Some(image.clone()), dir);
        std::fs::create_dir(&disk.point).unwrap();
        needed(run(
            "mkfs.ext4",
            &["-q".as_ref(), "-F".as_ref(), image.as_os_str()],
        ));
        needed(disk.mount_image());
        disk
    }

    fn mount_image(&self) -> Result<(), String> {
        let image = self.image.as_ref().expect("an image");
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                self.point.as_os_str(),
            ],
        )
    }

    /// A stopped node's last blocking tasks may still be closing their files for a moment
    /// ("target is busy"), so the unmount is tried again for up to five seconds.
    fn unmount(&self) -> Result<(), String> {
        let mut attempt = run("umount", &[self.point.as_os_str()]);
        for _ in 0..50 {
            match &attempt {
                Err(why) if why.contains("busy") => {
                    std::thread::sleep(Duration::from_millis(100));
                    attempt = run("umount", &[self.point.as_os_str()]);
                }
                _ => break,
            }
        }
        attempt
    }

    /// Fills the file system to the last byte; returns the filler file.
    fn fill(&self) -> PathBuf {
        let path = self.point.join("filler");
        let mut file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let chunk = vec![0xA5u8; 1 << 20];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull,
                    "filling the disk: {e}"
                );
                return path;
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Lazily when a failed test left a node holding files in it.
        if self.unmount().is_err() {
            let _ = run("umount", &["-l".as_ref(), self.point.as_os_str()]);
        }
    }
}

/// A node in this process with its data (SQLite database and media) on `dir`.
async fn node_on(dir: &Path) -> TestNode {
    start(test_config(dir), tempfile::tempdir().unwrap()).await
}

async fn upload(node: &TestNode, user: &TestUser, room: i64) -> (StatusCode, Value) {
    let mut png =
        std::fs::read(format!("{}/fixtures/pixel.png", env!("CARGO_MANIFEST_DIR"))).unwrap();
    // Big enough to need fresh blocks.
    png.resize(256 * 1024, 0);
    let form = Form::new()
        .text("content", "a picture")
        .part("attachment", Part::bytes(png).file_name("big.png"));
    let request = node
        .api
        .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
        .multipart(form);
    node.send(request, Some(&user.access)).await
}

/// Files left under the media directory, at any depth.
fn media_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![data_dir.join("media")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// While storage refuses writes: every way of writing answers `status` with a detail naming
/// the cause, `/readyz` fails saying why, the node stays up, and no partial upload is left.
async fn check_refusals(
    node: &TestNode,
    data_dir: &Path,
    user: &TestUser,
    room: i64,
    socket: &mut crate::helpers::WsClient,
    status: StatusCode,
    cause: &str,
) {
    let (ready, body) = node.get("/readyz", None).await;
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    for check in ["data_dir", "store"] {
        let reason = body["errors"][check].as_str().unwrap_or_default();
        assert!(reason.contains(cause), "readyz {check}: {body}");
    }

    let (answer, body) = node
        .post(
            &format!("/api/v1/chat/chatrooms/{room}/messages/send/"),
            Some(&user.access),
            json!({"content": "refused"}),
        )
        .await;
    assert_eq!(answer, status, "{body}");
    assert_eq!(body["success"], false);
    let detail = body["errors"]["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("Storage is {cause}")), "{body}");

    socket
        .send_json(json!({"purpose": "send_chat_message", "message": "refused too"}))
        .await;
    let frame = socket.next_json().await;
    assert_eq!(frame["success"], false, "{frame}");
    assert_eq!(frame["errors"]["detail"], detail, "{frame}");

    let (answer, body) = upload(node, user, room).await;
    assert_eq!(answer, status, "{body}");
    assert!(
        body["errors"]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("Storage is {cause}")),
        "{body}"
    );
    assert!(
        media_files(data_dir).is_empty(),
        "no partial upload is left"
    );

    let (alive, _) = node.get("/healthz", None).await;
    assert_eq!(alive, StatusCode::OK, "the node is still up");
}

#[tokio::test]
#[ignore = "needs root and mount: run as root (CI does)"]
async fn a_full_disk_refuses_writes_clearly_and_the_node_recovers_when_space_returns() {
    let disk = Mounted::tmpfs("16m");
    let node = node_on(&disk.point).await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    node.send_message(&alice, room, "before").await;
    let mut socket = node.ws(room, &alice).await;

    let filler = disk.fill();
    // Room for part of an upload only: it fails midway and leaves no partial file behind.
    let size = std::fs::metadata(&filler).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&filler)
        .and_then(|file| file.set_len(size - 128 * 1024))
        .unwrap();
    let (status, body) = upload(&node, &alice, room).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert!(
        media_files(&disk.point).is_empty(),
        "no partial upload is left"
    );
    disk.fill();

    check_refusals(
        &node,
        &disk.point,
        &alice,
        room,
        &mut socket,
        StatusCode::INSUFFICIENT_STORAGE,
        "full",
    )
    .await;

    // Space comes back: the node is ready again by itself.
    std::fs::remove_file(filler).unwrap();
    eventually(WAIT, "ready again", || async {
        (node.get("/readyz", None).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let after = node.send_message(&alice, room, "after").await["id"].clone();
    let live = socket.next_data().await;
    assert_eq!(live["id"], after, "the refused sends never arrive: {live}");
    let contents: Vec<String> = node
        .history(&alice, room, "")
        .await
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(contents, ["before", "after"]);
    drop(socket);
    node.stop().await;
}

#[tokio::test]
#[ignore = "needs root and mount: run as root (CI does)"]
async fn a_disk_turned_read_only_refuses_writes_clearly_and_keeps_what_was_stored() {
    let disk = Mounted::ext4(32);
    let node = node_on(&disk.point).await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    node.send_message(&alice, room, "before").await;
    let mut socket = node.ws(room, &alice).await;

    // What the kernel does to ext4 after an I/O error: read-only at once, open files included.
    needed(run(
        "mount",
        &[
            "-o".as_ref(),
            "remount,abort".as_ref(),
            disk.point.as_os_str(),
        ],
    ));
    check_refusals(
        &node,
        &disk.point,
        &alice,
        room,
        &mut socket,
        StatusCode::SERVICE_UNAVAILABLE,
        "read-only",
    )
    .await;
    assert_eq!(node.history(&alice, room, "").await.len(), 1, "reads go on");
    drop(socket);
    node.stop().await;

    // An aborted ext4 cannot go back to read-write in place: it is mounted again (the kernel
    // replays its journal) and a node restarted on it has everything it acknowledged.
    disk.unmount().unwrap();
    disk.mount_image().unwrap();
    integrity_check(&disk.point.join("chatnode.db"));
    let node = node_on(&disk.point).await;
    node.send_message(&alice, room, "after").await;
    let contents: Vec<String> = node
        .history(&alice, room, "")
        .await
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(contents, ["before", "after"]);
    node.stop().await;
}
