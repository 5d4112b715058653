//! Helpers for the broker transports' tests: the broker under test, a subscriber forwarding
//! one event stream, probes that wait for bindings, and rabbitmqctl to cut connections.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::options::ExchangeDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use super::{EventKind, RoomEvent, Transport};

pub const WAIT: Duration = Duration::from_secs(15);
pub const PROBE: &str = "probe";

/// The broker URL in `var`, or `None` (after a notice) when its tests should be skipped.
pub fn broker_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CHATNODE_TEST_REQUIRE_BROKER").as_deref() == Ok("1") => {
            panic!("CHATNODE_TEST_REQUIRE_BROKER=1 but {var} is not set")
        }
        Err(_) => {
            eprintln!("skipping: {var} not set");
            None
        }
    }
}

/// Runs `test(url, exchange)` against a fresh exchange and deletes the exchange afterwards,
/// even on panic.
pub async fn with_exchange<F, Fut>(url: String, test: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let exchange = format!("chatnode-test-{}", uuid::Uuid::new_v4().simple());
    let outcome = AssertUnwindSafe(test(url.clone(), exchange.clone()))
        .catch_unwind()
        .await;
    let connection = timeout(
        WAIT,
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .expect("connect for cleanup in time")
    .expect("connect for cleanup");
    let channel = connection.create_channel().await.expect("cleanup channel");
    channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete the test exchange");
    let _ = connection.close(200, "OK".into()).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

pub fn event(room: i64, message: &str) -> RoomEvent {
    RoomEvent {
        kind: EventKind::Message,
        chat_id: room,
        id: Some(1),
        message: message.into(),
        sender: "tester".into(),
        sender_id: Some(1),
        user_id: None,
        file: None,
        created_at: "now".into(),
    }
}

pub fn sorted(events: &[(i64, &str)]) -> Vec<(i64, String)> {
    let mut events: Vec<_> = events.iter().map(|(r, m)| (*r, m.to_string())).collect();
    events.sort();
    events
}

/// What the node's subscriber would see: one `events()` stream, forwarded until it fails.
pub struct Subscriber {
    events: mpsc::UnboundedReceiver<Result<RoomEvent, String>>,
    task: JoinHandle<()>,
}

impl Subscriber {
    pub async fn start<T: Transport + ?Sized>(transport: &Arc<T>) -> Self {
        let mut stream = timeout(WAIT, transport.events())
            .await
            .expect("events() answers in time")
            .expect("events() connects");
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if sender.send(item.map_err(|e| e.to_string())).is_err() || failed {
                    break;
                }
            }
        });
        Self { events, task }
    }

    pub async fn next(&mut self) -> Result<RoomEvent, String> {
        timeout(WAIT, self.events.recv())
            .await
            .expect("an event in time")
            .expect("the stream is still forwarded")
    }

    /// The next event that is not a probe.
    pub async fn next_real(&mut self) -> RoomEvent {
        loop {
            let event = self.next().await.expect("no stream error");
            if event.message != PROBE {
                return event;
            }
        }
    }

    /// Events (probes aside) up to and including each of `fences`, sorted.
    pub async fn until(&mut self, fences: &[&str]) -> Vec<(i64, String)> {
        let mut seen = Vec::new();
        while !fences
            .iter()
            .all(|f| seen.iter().any(|(_, m): &(i64, String)| m == f))
        {
            let event = self.next_real().await;
            seen.push((event.chat_id, event.message));
        }
        seen.sort();
        seen
    }

    /// Waits until `room` is bound (bindings are applied in the background) by publishing
    /// probes until one comes back.
    pub async fn settle<T: Transport + ?Sized>(&mut self, publisher: &Arc<T>, room: i64) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if publisher.publish(event(room, PROBE)).await.is_ok() {
                if let Ok(Some(item)) =
                    timeout(Duration::from_millis(200), self.events.recv()).await
                {
                    let event = item.expect("no stream error");
                    if event.message == PROBE && event.chat_id == room {
                        return;
                    }
                }
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        panic!("room {room} was never bound");
    }

    /// Reads until the stream fails, allowing only events whose message is in `expected`.
    pub async fn until_failure(&mut self, expected: &[&str]) {
        loop {
            match self.next().await {
                Err(error) => {
                    eprintln!("stream ended as expected: {error}");
                    return;
                }
                Ok(event) => assert!(
                    expected.contains(&event.message.as_str()),
                    "unexpected {event:?}"
                ),
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// rabbitmqctl for the broker behind a test URL: inside the Docker container that publishes
/// the URL's port when there is one, else the local installation.
pub struct Rabbitmqctl {
    command: Vec<String>,
}

impl Rabbitmqctl {
    pub async fn for_url(url: &str) -> Self {
        let port = url
            .parse::<lapin::uri::AMQPUri>()
            .map(|uri| uri.authority.port)
            .unwrap_or(5672);
        let filter = format!("publish={port}");
        let listing = run(&["docker", "ps", "-q", "--filter", &filter]).await;
        let command = match listing
            .as_deref()
            .and_then(|ids| ids.split_whitespace().next())
        {
            Some(container) => vec!["docker", "exec", container, "rabbitmqctl"],
            None => vec!["rabbitmqctl"],
        };
        Self {
            command: command.into_iter().map(str::to_string).collect(),
        }
    }

    /// Runs rabbitmqctl; `None` when it is not available here.
    pub async fn run(&self, args: &[&str]) -> Option<String> {
        let mut all: Vec<&str> = self.command.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run(&all).await
    }

    /// The broker-side ids of the connections whose client properties carry `name`.
    pub async fn connections_named(&self, name: &str) -> Option<Vec<String>> {
        let listing = self
            .run(&["list_connections", "-q", "pid", "client_properties"])
            .await?;
        let name = format!("\"{name}\"");
        Some(
            listing
                .lines()
                .filter(|line| line.contains(&name))
                .filter_map(|line| line.split_whitespace().next())
                .map(str::to_string)
                .collect(),
        )
    }

    /// A node's connections: those whose client properties carry `name`, and the one
    /// consuming `queue`. RabbitMQ 3 shows its AMQP 1.0 connections neither with client
    /// properties nor as connections rabbitmqctl can close; they are found through their
    /// consumer's channel, which is named after the client's address.
    pub async fn connections_of(&self, name: &str, queue: &str) -> Option<Vec<BrokerConnection>> {
        let mut found: Vec<BrokerConnection> = self
            .connections_named(name)
            .await?
            .into_iter()
            .map(BrokerConnection::Listed)
            .collect();
        let consumers = self
            .run(&["list_consumers", "-q", "queue_name", "channel_pid"])
            .await?;
        let consuming: Vec<&str> = consumers
            .lines()
            .filter_map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    [name, channel] if name == queue => Some(channel),
                    _ => None,
                },
            )
            .collect();
        let listed = self.run(&["list_connections", "-q", "pid"]).await?;
        let channels = self
            .run(&["list_channels", "-q", "pid", "connection", "name"])
            .await?;
        for line in channels.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [channel, connection, client, ..] = fields[..] else {
                continue;
            };
            if !consuming.contains(&channel) {
                continue;
            }
            let connection = if listed.lines().any(|pid| pid.trim() == connection) {
                BrokerConnection::Listed(connection.to_string())
            } else {
                let port = client.rsplit(':').next().and_then(|p| p.parse().ok());
                BrokerConnection::Hidden(port.expect("channel named after the client address"))
            };
            if !found.contains(&connection) {
                found.push(connection);
            }
        }
        Some(found)
    }

    /// Ends the connection from the broker's side: rabbitmqctl closes it, or, for one
    /// rabbitmqctl cannot see, the broker's end of its TCP connection is aborted (the broker
    /// runs here then). `false` when neither works here.
    pub async fn cut(&self, broker_port: u16, connection: &BrokerConnection) -> bool {
        match connection {
            BrokerConnection::Listed(id) => self.run(&["close_connection", id, "test"]).await,
            BrokerConnection::Hidden(client_port) => {
                let filter = format!("( sport = :{broker_port} and dport = :{client_port} )");
                run(&["ss", "-K", "-t", "state", "established", &filter]).await
            }
        }
        .is_some()
    }

    pub async fn close_connection(&self, id: &str) {
        self.run(&["close_connection", id, "test"])
            .await
            .expect("close the connection");
    }
}

/// A client connection as the broker shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerConnection {
    /// rabbitmqctl's id for it.
    Listed(String),
    /// The client's port, for a connection rabbitmqctl does not list.
    Hidden(u16),
}

async fn run(command: &[&str]) -> Option<String> {
    let (program, args) = command.split_first()?;
    let run = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    match timeout(Duration::from_secs(60), run).await {
        Ok(Ok(output)) if output.status.success() => {
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(Ok(output)) => {
            eprintln!(
                "{command:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            None
        }
        Ok(Err(e)) => {
            eprintln!("{program} unavailable: {e}");
            None
        }
        Err(_) => {
            eprintln!("{command:?} timed out");
            None
        }
    }
}

/// `a` stops receiving a room it unsubscribed (`b` publishes) and gets it back after
/// subscribing again.
pub async fn unsubscribe_then_resubscribe<T: Transport + ?Sized>(a: &Arc<T>, b: &Arc<T>) {
    let mut sub_a = Subscriber::start(a).await;
    a.subscribe(1).await.expect("bound");
    a.subscribe(2).await.expect("bound");
    sub_a.settle(b, 1).await;
    sub_a.settle(b, 2).await;

    a.unsubscribe(1);
    // The unbind is applied in the background: retry until a round shows it.
    let mut round = 0;
    loop {
        round += 1;
        assert!(round <= 50, "room 1 was never unbound");
        let (gone, fence) = (format!("gone-{round}"), format!("fence-{round}"));
        b.publish(event(1, &gone)).await.expect("b publishes");
        b.publish(event(2, &fence)).await.expect("b publishes");
        if !sub_a
            .until(&[fence.as_str()])
            .await
            .iter()
            .any(|(room, _)| *room == 1)
        {
            break;
        }
    }
    b.publish(event(1, "after")).await.expect("b publishes");
    b.publish(event(2, "fence")).await.expect("b publishes");
    assert_eq!(sub_a.until(&["fence"]).await, sorted(&[(2, "fence")]));

    a.subscribe(1).await.expect("bound again");
    sub_a.settle(b, 1).await;
    b.publish(event(1, "back")).await.expect("b publishes");
    assert_eq!(sub_a.next_real().await.message, "back");
}

/// After the broker dropped both nodes' connections: their streams fail and health says so,
/// a publish reconnects by itself, and a new `events()` (as the supervisor calls it) re-binds
/// room 1 so events flow both ways again. Returns the new streams, still consuming.
pub async fn recover_after_connection_loss<T: Transport + ?Sized>(
    a: &Arc<T>,
    b: &Arc<T>,
    (mut sub_a, mut sub_b): (Subscriber, Subscriber),
    healthy: &str,
) -> (Subscriber, Subscriber) {
    for sub in [&mut sub_a, &mut sub_b] {
        sub.until_failure(&[PROBE, "before"]).await;
    }
    assert!(a.health().is_err(), "health reports the lost connection");
    a.publish(event(9, "nobody listens"))
        .await
        .expect("publish reconnects");
    assert_eq!(a.health(), Ok(healthy));

    let mut sub_a = Subscriber::start(a).await;
    let mut sub_b = Subscriber::start(b).await;
    sub_a.settle(b, 1).await;
    sub_b.settle(a, 1).await;
    a.publish(event(1, "after-a")).await.expect("a publishes");
    b.publish(event(1, "after-b")).await.expect("b publishes");
    for sub in [&mut sub_a, &mut sub_b] {
        assert_eq!(
            sub.until(&["after-a", "after-b"]).await,
            sorted(&[(1, "after-a"), (1, "after-b")])
        );
    }
    (sub_a, sub_b)
}
