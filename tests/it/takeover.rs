//! No silence after a crash: the relay lease is a lock the kernel (SQLite) or the database
//! server (PostgreSQL) releases with a dead holder, so after `kill -9` of the lease holder
//! the survivor's sockets get new messages promptly, and a node restarted on its data dir
//! keeps its id and echoes at once. Both used to wait for a 10 s lease to expire (~8 s).
//! Times are printed; the bounds asserted are ones the old lease could not meet, not
//! targets (`TAKEOVER_TARGET` is the issue's, shown next to the measure).

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatnode_client::StatusCode;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::faults::{check_history, Api, NodeProcess};
use crate::helpers::{eventually, TestUser, WAIT};

/// Well under the old lease's ~8 s silence, well over the measured takeover.
const BOUND: Duration = Duration::from_secs(3);
const TAKEOVER_TARGET: Duration = Duration::from_millis(1500);
const PACE: Duration = Duration::from_millis(10);

/// A socket recording each message id with when it arrived.
struct Feed {
    arrivals: Arc<Mutex<Vec<(i64, Instant)>>>,
    sink: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        Message,
    >,
    reader: JoinHandle<()>,
}

impl Feed {
    async fn open(api: &Api, room: i64, user: &TestUser) -> Self {
        let socket = api.client.socket(room, &user.access).await;
        let (sink, mut stream) = socket.expect("the socket connects").into_inner().split();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let record = arrivals.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["data"]["event"] == "message" {
                    let id = frame["data"]["id"].as_i64().unwrap();
                    record.lock().unwrap().push((id, Instant::now()));
                }
            }
        });
        Self {
            arrivals,
            sink,
            reader,
        }
    }

    fn arrival(&self, id: i64) -> Option<Instant> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals
            .iter()
            .find(|(seen, _)| *seen == id)
            .map(|(_, at)| *at)
    }

    async fn wait_for(&self, id: i64, within: Duration) -> Instant {
        let what = format!("message {id} arrives");
        eventually(within, &what, || async { self.arrival(id) }).await
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A REST message sent now: its id and when it was sent.
async fn send(api: &Api, user: &TestUser, room: i64, content: &str) -> (i64, Instant) {
    let sent = Instant::now();
    let (status, body) = api.send(user, room, content).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body["data"]["detail"]["id"].as_i64().unwrap(), sent)
}

/// Two nodes on one database; the first, started first, holds the lease and is killed
/// while the survivor is being sent to. Returns the longest delivery time of a message sent
/// after the kill, which is how long the survivor's sockets were silent.
async fn lease_holder_killed(database_url: &str, broker: &[String]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let args = |name: &str| {
        let mut args: Vec<OsString> = vec![
            "--data-dir".into(),
            dir.path().join(name).into(),
            "--database-url".into(),
            database_url.into(),
        ];
        args.extend(broker.iter().map(OsString::from));
        args
    };
    let mut holder = NodeProcess::start(&args("holder")).await;
    // The holder has taken the lease once it delivers its own message.
    let alice = holder.api.register("alice").await;
    let bob = holder.api.register("bob").await;
    let room = holder.api.create_room(&alice, &[&bob]).await;
    let at_holder = Feed::open(&holder.api, room, &bob).await;
    let (first, _) = send(&holder.api, &alice, room, "first").await;
    at_holder.wait_for(first, WAIT).await;
    let survivor = NodeProcess::start(&args("survivor")).await;
    let feed = Feed::open(&survivor.api, room, &bob).await;

    let mut acked = vec![(first, "first".to_string())];
    let mut after_kill = Vec::new();
    for i in 0..200 {
        if i == 50 {
            holder.kill().await;
        }
        let content = format!("m{i}");
        let (id, sent) = send(&survivor.api, &alice, room, &content).await;
        acked.push((id, content));
        if i >= 50 {
            after_kill.push((id, sent));
        }
        tokio::time::sleep(PACE).await;
    }
    let mut silence = Duration::ZERO;
    for (id, sent) in &after_kill {
        let arrived = feed.wait_for(*id, WAIT).await;
        silence = silence.max(arrived - *sent);
    }
    check_history(&survivor.api.history(&alice, room).await, &acked);
    drop(feed);
    silence
}

fn print_and_check(what: &str, measured: Duration) {
    eprintln!(
        "{what}: {} ms (target {} ms, asserted under {} ms)",
        measured.as_millis(),
        TAKEOVER_TARGET.as_millis(),
        BOUND.as_millis()
    );
    assert!(measured < BOUND, "{what} took {measured:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killing_the_lease_holder_leaves_the_survivor_silent_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let silence = lease_holder_killed(&url, &[]).await;
    print_and_check(
        "SQLite, longest delivery after kill -9 of the holder",
        silence,
    );
}

/// PostgreSQL and the real RabbitMQ (AMQP 0-9-1) of this host, as a cluster runs.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set CHATNODE_TEST_AMQP_URL and CHATNODE_TEST_DATABASE_URL"]
async fn amqp091_postgres_killing_the_lease_holder_leaves_the_survivor_silent_briefly() {
    let database = crate::backends::fresh_database().await;
    let broker = &crate::broker::brokers().await[0];
    let exchange = format!("chatnode-it-{}", uuid::Uuid::new_v4().simple());
    let transport = ["--transport", "amqp091", "--broker-url", &broker.url];
    let mut args: Vec<String> = transport.iter().map(|s| s.to_string()).collect();
    args.extend(["--exchange".to_string(), exchange.clone()]);
    let silence = lease_holder_killed(&database.url, &args).await;
    broker.delete_exchange(&exchange).await;
    print_and_check(
        "PostgreSQL + AMQP 0-9-1, longest delivery after kill -9 of the holder",
        silence,
    );
}

/// One node, default id, killed and restarted on its data directory: same id, and its
/// own WebSocket message is echoed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_kill_keeps_its_id_and_echoes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<OsString> = vec!["--data-dir".into(), dir.path().into()];
    let mut node = NodeProcess::start(&args).await;
    let alice = node.api.register("alice").await;
    let room = node.api.create_room(&alice, &[]).await;
    let before = Feed::open(&node.api, room, &alice).await;
    let (id, _) = send(&node.api, &alice, room, "before").await;
    before.wait_for(id, WAIT).await;
    let first_id = node.node_id.clone();
    node.kill().await;

    let restarted = NodeProcess::start(&args).await;
    assert!(first_id.starts_with("node-"), "{first_id}");
    assert_eq!(
        restarted.node_id, first_id,
        "the id is kept across restarts"
    );
    let mut feed = Feed::open(&restarted.api, room, &alice).await;
    let sent = Instant::now();
    let frame = json!({"purpose": "send_chat_message", "message": "after"});
    feed.sink
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    let echoed = eventually(WAIT, "the restarted node echoes the message", || async {
        let newest = feed.arrivals.lock().unwrap().last().copied();
        newest.and_then(|(seen, at)| (seen > id).then_some(at))
    })
    .await;
    print_and_check("restart after kill -9, own echo", echoed - sent);
}
