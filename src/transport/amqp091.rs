//! AMQP 0-9-1 fan-out through a broker (RabbitMQ) with lapin.
//!
//! Topology: a durable topic exchange shared by all nodes, routing key `room.<id>`. Each node
//! holds one connection and consumes its own exclusive, auto-delete, server-named queue, bound
//! to `room.<id>` while the node has sockets in that room. The exchange is live-only fan-out:
//! messages are transient, the database is the record.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{stream, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    Acker, BasicProperties, Channel, Connection, ConnectionProperties, ConnectionStatus, Consumer,
    ExchangeKind,
};
use tokio::sync::{oneshot, Notify, OwnedMutexGuard};
use tokio::time::{timeout, Instant};

use super::{EventStream, RoomEvent, Transport, TransportError};
use crate::store::redact;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on every broker round trip (declare, bind, publish confirm, ...).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a whole publish, including waiting for a reconnection another caller started.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed connection attempt, callers fail fast for this long instead of queueing
/// up behind one another, each waiting for its own attempt.
const RECONNECT_COOLDOWN: Duration = Duration::from_secs(1);
/// Unacknowledged deliveries the broker may push to this node.
const PREFETCH: u16 = 256;
/// How long `subscribe` waits for its binding before reporting the broker as unavailable.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Amqp091Transport {
    uri: AMQPUri,
    redacted_url: String,
    exchange: String,
    node_id: String,
    link: tokio::sync::Mutex<Link>,
    /// The live connection's status, or why there is none (for `/readyz`).
    health: Mutex<Result<ConnectionStatus, String>>,
    rooms: Arc<Mutex<Rooms>>,
    /// Wakes the consuming stream when `rooms` has changes to apply.
    rooms_changed: Arc<Notify>,
    /// Held by the one live event stream.
    consuming: Arc<tokio::sync::Mutex<()>>,
}

/// The node's single connection and its publishing channel.
#[derive(Default)]
struct Link {
    connection: Option<Connection>,
    publisher: Option<Channel>,
    last_failure: Option<(Instant, String)>,
}

#[derive(Default)]
struct Rooms {
    /// Rooms with local sockets: what the queue should be bound to.
    wanted: HashSet<i64>,
    /// Rooms whose binding may differ from `wanted`, for the consuming stream to fix.
    dirty: HashSet<i64>,
    /// Rooms bound on the live queue (empty while there is none).
    bound: HashSet<i64>,
    /// `subscribe` calls waiting for their room to be bound.
    waiters: HashMap<i64, Vec<oneshot::Sender<()>>>,
}

impl Rooms {
    fn set_bound(&mut self, room: i64) {
        self.bound.insert(room);
        for waiter in self.waiters.remove(&room).unwrap_or_default() {
            let _ = waiter.send(());
        }
    }
}

impl Amqp091Transport {
    /// Checks the URL only: the broker is contacted on first use, so a node starts (and keeps
    /// retrying) while the broker is down.
    pub fn new(url: &str, exchange: &str, node_id: &str) -> Result<Self, TransportError> {
        let redacted_url = redact(url);
        let uri = url.parse::<AMQPUri>().map_err(|e| {
            TransportError::Other(format!("invalid broker URL {redacted_url}: {e}"))
        })?;
        Ok(Self {
            uri,
            redacted_url,
            exchange: exchange.to_string(),
            node_id: node_id.to_string(),
            link: tokio::sync::Mutex::new(Link::default()),
            health: Mutex::new(Err("not connected to the broker yet".to_string())),
            rooms: Arc::new(Mutex::new(Rooms::default())),
            rooms_changed: Arc::new(Notify::new()),
            consuming: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    fn connection_name(&self) -> String {
        format!("chatnode {}", self.node_id)
    }

    fn set_health(&self, health: Result<ConnectionStatus, String>) {
        *self.health.lock().expect("health poisoned") = health;
    }

    /// A new channel on the node's connection, reconnecting first if it is gone.
    async fn open_channel(&self, link: &mut Link) -> Result<Channel, TransportError> {
        let alive = link
            .connection
            .as_ref()
            .is_some_and(|c| c.status().connected());
        if !alive {
            link.connection = None;
            link.publisher = None;
            if let Some((at, reason)) = &link.last_failure {
                if at.elapsed() < RECONNECT_COOLDOWN {
                    return Err(TransportError::Other(reason.clone()));
                }
            }
            match self.connect().await {
                Ok(connection) => {
                    link.last_failure = None;
                    self.set_health(Ok(connection.status().clone()));
                    link.connection = Some(connection);
                }
                Err(reason) => {
                    tracing::warn!(error = %reason, "broker unreachable");
                    link.last_failure = Some((Instant::now(), reason.clone()));
                    self.set_health(Err(reason.clone()));
                    return Err(TransportError::Other(reason));
                }
            }
        }
        let connection = link.connection.as_ref().ok_or(TransportError::Closed)?;
        bounded("open a channel", connection.create_channel()).await
    }

    async fn connect(&self) -> Result<Connection, String> {
        let properties =
            ConnectionProperties::default().with_connection_name(self.connection_name().into());
        let failed = |why: String| {
            format!(
                "cannot connect to the broker at {}: {why}",
                self.redacted_url
            )
        };
        match timeout(
            CONNECT_TIMEOUT,
            Connection::connect_uri(self.uri.clone(), properties),
        )
        .await
        {
            Ok(Ok(connection)) => {
                tracing::info!(broker = %self.redacted_url, node = %self.node_id, "connected to the broker");
                Ok(connection)
            }
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        }
    }

    /// The confirm-mode channel publishes go through, reopened if it has closed.
    async fn publisher(&self) -> Result<Channel, TransportError> {
        let mut link = self.link.lock().await;
        if let Some(channel) = &link.publisher {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        let channel = self.open_channel(&mut link).await?;
        bounded(
            "enable publisher confirms",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        // Publishing to a missing exchange would close the channel, and this node may publish
        // before its subscriber has declared anything.
        declare_exchange(&channel, &self.exchange).await?;
        link.publisher = Some(channel.clone());
        Ok(channel)
    }

    /// Returns once the broker has confirmed the event.
    async fn publish_confirmed(&self, event: RoomEvent) -> Result<(), TransportError> {
        let body = serde_json::to_vec(&event)
            .map_err(|e| TransportError::Other(format!("cannot encode the event: {e}")))?;
        let channel = self.publisher().await?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_app_id(self.node_id.as_str().into());
        let confirm = bounded(
            "publish",
            channel.basic_publish(
                self.exchange.as_str().into(),
                routing_key(event.chat_id),
                BasicPublishOptions::default(),
                &body,
                properties,
            ),
        )
        .await?;
        if bounded("publisher confirm", confirm).await?.is_ack() {
            Ok(())
        } else {
            Err(TransportError::Other(
                "the broker refused the event (nack)".to_string(),
            ))
        }
    }
}

#[async_trait]
impl Transport for Amqp091Transport {
    async fn publish(&self, event: RoomEvent) -> Result<(), TransportError> {
        timeout(PUBLISH_TIMEOUT, self.publish_confirmed(event))
            .await
            .map_err(|_| {
                TransportError::Other(format!("publish: not confirmed within {PUBLISH_TIMEOUT:?}"))
            })?
    }

    async fn subscribe(&self, room: i64) -> Result<(), TransportError> {
        let bound = {
            let mut rooms = self.rooms.lock().expect("rooms poisoned");
            rooms.wanted.insert(room);
            if rooms.bound.contains(&room) {
                return Ok(());
            }
            rooms.dirty.insert(room);
            if self.consuming.try_lock().is_ok() {
                // No live stream: the binding waits for the next `events`.
                return Err(TransportError::Other(format!(
                    "room {room} will be bound once the broker connection is up"
                )));
            }
            let (waiter, bound) = oneshot::channel();
            rooms.waiters.entry(room).or_default().push(waiter);
            bound
        };
        self.rooms_changed.notify_one();
        match timeout(SUBSCRIBE_TIMEOUT, bound).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(TransportError::Other(format!(
                "room {room} is not bound yet; it will be once the broker is back"
            ))),
        }
    }

    fn unsubscribe(&self, room: i64) {
        {
            let mut rooms = self.rooms.lock().expect("rooms poisoned");
            rooms.wanted.remove(&room);
            rooms.dirty.insert(room);
        }
        self.rooms_changed.notify_one();
    }

    /// Declares the exchange and a fresh queue on the node's connection (reconnecting if
    /// needed) and binds every wanted room, so calling it again after a failure restores
    /// everything.
    async fn events(&self) -> Result<EventStream, TransportError> {
        let guard = self
            .consuming
            .clone()
            .try_lock_owned()
            .map_err(|_| TransportError::Busy)?;
        let channel = {
            let mut link = self.link.lock().await;
            self.open_channel(&mut link).await?
        };
        bounded(
            "set the prefetch",
            channel.basic_qos(PREFETCH, BasicQosOptions::default()),
        )
        .await?;
        declare_exchange(&channel, &self.exchange).await?;
        let queue = bounded(
            "declare the node's queue",
            channel.queue_declare(
                ShortString::from(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await?
        .name()
        .clone();
        let wanted = {
            let mut rooms = self.rooms.lock().expect("rooms poisoned");
            rooms.dirty.clear();
            rooms.bound.clear();
            rooms.wanted.clone()
        };
        // Consume before binding: an auto-delete queue that never had a consumer would outlive
        // a failed attempt, for as long as the connection lasts.
        let consumer = bounded(
            "start consuming",
            channel.basic_consume(
                queue.clone(),
                format!("chatnode-{}", self.node_id).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        for &room in &wanted {
            bind(&channel, &queue, &self.exchange, room).await?;
        }
        {
            let mut rooms = self.rooms.lock().expect("rooms poisoned");
            for &room in &wanted {
                rooms.set_bound(room);
            }
        }
        let consuming = Consuming {
            _guard: guard,
            exchange: self.exchange.clone(),
            queue: queue.clone(),
            channel,
            consumer,
            rooms: self.rooms.clone(),
            rooms_changed: self.rooms_changed.clone(),
            bound: wanted,
            unacked: None,
        };
        tracing::info!(%queue, rooms = consuming.bound.len(), "consuming room events from the broker");
        Ok(Box::pin(stream::unfold(
            Some(consuming),
            |consuming| async move {
                let mut consuming = consuming?;
                match consuming.next().await {
                    Ok(event) => Some((Ok(event), Some(consuming))),
                    // The stream ends after its first error; the supervisor calls `events` again.
                    Err(error) => Some((Err(error), None)),
                }
            },
        )))
    }

    fn health(&self) -> Result<&'static str, String> {
        match &*self.health.lock().expect("health poisoned") {
            Ok(status) if status.connected() => Ok("amqp091"),
            Ok(_) => Err("the broker connection was lost; reconnecting".to_string()),
            Err(reason) => Err(reason.clone()),
        }
    }
}

/// The state behind one event stream: its channel, queue, consumer and bindings.
struct Consuming {
    _guard: OwnedMutexGuard<()>,
    exchange: String,
    queue: ShortString,
    channel: Channel,
    consumer: Consumer,
    rooms: Arc<Mutex<Rooms>>,
    rooms_changed: Arc<Notify>,
    bound: HashSet<i64>,
    /// The delivery last handed out.
    unacked: Option<Acker>,
}

impl Drop for Consuming {
    fn drop(&mut self) {
        // The queue dies with this stream: nothing is bound until `events` runs again.
        self.rooms.lock().expect("rooms poisoned").bound.clear();
    }
}

impl Consuming {
    async fn next(&mut self) -> Result<RoomEvent, TransportError> {
        // Acked when the subscriber polls again: it hands each event to the hub synchronously
        // before polling, so an ack means the event reached the local sockets' queues.
        if let Some(acker) = self.unacked.take() {
            bounded("ack", acker.ack(BasicAckOptions::default())).await?;
        }
        loop {
            let delivery = tokio::select! {
                _ = self.rooms_changed.notified() => {
                    self.apply_room_changes().await?;
                    continue;
                }
                delivery = self.consumer.next() => delivery,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    return Err(TransportError::Other(format!(
                        "broker consumer failed: {e}"
                    )))
                }
                None => {
                    return Err(TransportError::Other(
                        "the broker ended the consumer".to_string(),
                    ))
                }
            };
            match serde_json::from_slice::<RoomEvent>(&delivery.data) {
                Ok(event) => {
                    self.unacked = Some(delivery.acker);
                    return Ok(event);
                }
                Err(error) => {
                    tracing::warn!(%error, routing_key = %delivery.routing_key, "dropping an undecodable broker message");
                    bounded(
                        "reject",
                        delivery.acker.reject(BasicRejectOptions { requeue: false }),
                    )
                    .await?;
                }
            }
        }
    }

    async fn apply_room_changes(&mut self) -> Result<(), TransportError> {
        let changes: Vec<(i64, bool)> = {
            let mut rooms = self.rooms.lock().expect("rooms poisoned");
            let dirty = std::mem::take(&mut rooms.dirty);
            let changes: Vec<(i64, bool)> = dirty
                .into_iter()
                .map(|room| (room, rooms.wanted.contains(&room)))
                .collect();
            // A room about to be unbound no longer counts as bound, so a `subscribe` racing
            // with the unbind waits for the re-bind instead of trusting a dying binding.
            for (room, wanted) in &changes {
                if !wanted {
                    rooms.bound.remove(room);
                }
            }
            changes
        };
        for (room, wanted) in changes {
            if wanted && !self.bound.contains(&room) {
                bind(&self.channel, &self.queue, &self.exchange, room).await?;
                self.bound.insert(room);
                self.rooms.lock().expect("rooms poisoned").set_bound(room);
            } else if !wanted && self.bound.contains(&room) {
                bounded(
                    "unbind a room",
                    self.channel.queue_unbind(
                        self.queue.clone(),
                        self.exchange.as_str().into(),
                        routing_key(room),
                        FieldTable::default(),
                    ),
                )
                .await?;
                self.bound.remove(&room);
                self.rooms
                    .lock()
                    .expect("rooms poisoned")
                    .bound
                    .remove(&room);
            }
        }
        Ok(())
    }
}

async fn bind(
    channel: &Channel,
    queue: &ShortString,
    exchange: &str,
    room: i64,
) -> Result<(), TransportError> {
    bounded(
        "bind a room",
        channel.queue_bind(
            queue.clone(),
            exchange.into(),
            routing_key(room),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

fn routing_key(room: i64) -> ShortString {
    format!("room.{room}").into()
}

async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), TransportError> {
    bounded(
        "declare the exchange",
        channel.exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
}

/// Runs one broker operation, failing instead of waiting forever on a silent broker.
async fn bounded<T>(
    what: &str,
    operation: impl Future<Output = lapin::Result<T>>,
) -> Result<T, TransportError> {
    match timeout(OPERATION_TIMEOUT, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(TransportError::Other(format!("{what}: {e}"))),
        Err(_) => Err(TransportError::Other(format!(
            "{what}: no answer from the broker within {OPERATION_TIMEOUT:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use futures_util::FutureExt;
    use lapin::options::ExchangeDeleteOptions;
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::transport::EventKind;

    const WAIT: Duration = Duration::from_secs(15);
    const PROBE: &str = "probe";

    /// The broker URL, or `None` (after a notice) when these tests should be skipped.
    fn broker_url() -> Option<String> {
        match std::env::var("CHATNODE_TEST_AMQP_URL") {
            Ok(url) => Some(url),
            Err(_) if std::env::var("CHATNODE_TEST_REQUIRE_BROKER").as_deref() == Ok("1") => {
                panic!("CHATNODE_TEST_REQUIRE_BROKER=1 but CHATNODE_TEST_AMQP_URL is not set")
            }
            Err(_) => {
                eprintln!("skipping: CHATNODE_TEST_AMQP_URL not set");
                None
            }
        }
    }

    /// Runs `test(broker_url, exchange)` against a fresh exchange and deletes the exchange
    /// afterwards, even on panic.
    async fn with_exchange<F, Fut>(test: F)
    where
        F: FnOnce(String, String) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(url) = broker_url() else { return };
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

    fn node(url: &str, exchange: &str) -> Arc<Amqp091Transport> {
        let id = format!("test-{}", uuid::Uuid::new_v4().simple());
        Arc::new(Amqp091Transport::new(url, exchange, &id).expect("valid URL"))
    }

    fn event(room: i64, message: &str) -> RoomEvent {
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

    /// What the node's subscriber would see: one `events()` stream, forwarded until it fails.
    struct Subscriber {
        events: mpsc::UnboundedReceiver<Result<RoomEvent, String>>,
        task: JoinHandle<()>,
    }

    impl Subscriber {
        async fn start(transport: &Arc<Amqp091Transport>) -> Self {
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

        async fn next(&mut self) -> Result<RoomEvent, String> {
            timeout(WAIT, self.events.recv())
                .await
                .expect("an event in time")
                .expect("the stream is still forwarded")
        }

        /// The next event that is not a probe.
        async fn next_real(&mut self) -> RoomEvent {
            loop {
                let event = self.next().await.expect("no stream error");
                if event.message != PROBE {
                    return event;
                }
            }
        }

        /// Events (probes aside) up to and including each of `fences`, sorted.
        async fn until(&mut self, fences: &[&str]) -> Vec<(i64, String)> {
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
        async fn settle(&mut self, publisher: &Amqp091Transport, room: i64) {
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
    }

    impl Drop for Subscriber {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn sorted(events: &[(i64, &str)]) -> Vec<(i64, String)> {
        let mut events: Vec<_> = events.iter().map(|(r, m)| (*r, m.to_string())).collect();
        events.sort();
        events
    }

    #[tokio::test]
    async fn amqp091_nodes_receive_only_the_rooms_they_subscribed() {
        with_exchange(|url, exchange| async move {
            let (a, b) = (node(&url, &exchange), node(&url, &exchange));
            let mut sub_a = Subscriber::start(&a).await;
            let mut sub_b = Subscriber::start(&b).await;
            for (transport, room) in [(&a, 1), (&a, 2), (&b, 2), (&b, 3)] {
                transport.subscribe(room).await.expect("bound");
            }
            assert_eq!(a.health(), Ok("amqp091"));
            for room in [1, 2] {
                sub_a.settle(&a, room).await;
            }
            for room in [2, 3] {
                sub_b.settle(&b, room).await;
            }
            // Each publisher ends with room 2, which both nodes receive: one publisher's
            // messages reach a queue in order, so its room-2 event fences the ones before it.
            for (room, message) in [(3, "a3"), (1, "a1"), (2, "a2")] {
                a.publish(event(room, message)).await.expect("a publishes");
            }
            for (room, message) in [(1, "b1"), (3, "b3"), (2, "b2")] {
                b.publish(event(room, message)).await.expect("b publishes");
            }
            assert_eq!(
                sub_a.until(&["a2", "b2"]).await,
                sorted(&[(1, "a1"), (1, "b1"), (2, "a2"), (2, "b2")])
            );
            assert_eq!(
                sub_b.until(&["a2", "b2"]).await,
                sorted(&[(2, "a2"), (2, "b2"), (3, "a3"), (3, "b3")])
            );
        })
        .await;
    }

    #[tokio::test]
    async fn amqp091_unsubscribed_rooms_stop_arriving_and_can_come_back() {
        with_exchange(|url, exchange| async move {
            let (a, b) = (node(&url, &exchange), node(&url, &exchange));
            let mut sub_a = Subscriber::start(&a).await;
            a.subscribe(1).await.expect("bound");
            a.subscribe(2).await.expect("bound");
            sub_a.settle(&b, 1).await;
            sub_a.settle(&b, 2).await;

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
            sub_a.settle(&b, 1).await;
            b.publish(event(1, "back")).await.expect("b publishes");
            assert_eq!(sub_a.next_real().await.message, "back");
        })
        .await;
    }

    /// Runs rabbitmqctl; `None` when it is not available here.
    async fn rabbitmqctl(args: &[&str]) -> Option<String> {
        let run = tokio::process::Command::new("rabbitmqctl")
            .args(args)
            .kill_on_drop(true)
            .output();
        match timeout(Duration::from_secs(60), run).await {
            Ok(Ok(output)) if output.status.success() => {
                Some(String::from_utf8_lossy(&output.stdout).into_owned())
            }
            Ok(Ok(output)) => {
                eprintln!(
                    "rabbitmqctl {args:?} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                None
            }
            Ok(Err(e)) => {
                eprintln!("rabbitmqctl unavailable: {e}");
                None
            }
            Err(_) => {
                eprintln!("rabbitmqctl {args:?} timed out");
                None
            }
        }
    }

    /// The broker-side ids of the connections carrying this node's name.
    async fn connections_of(transport: &Amqp091Transport) -> Option<Vec<String>> {
        let listing = rabbitmqctl(&["list_connections", "-q", "pid", "client_properties"]).await?;
        let name = format!("\"{}\"", transport.connection_name());
        Some(
            listing
                .lines()
                .filter(|line| line.contains(&name))
                .filter_map(|line| line.split_whitespace().next())
                .map(str::to_string)
                .collect(),
        )
    }

    #[tokio::test]
    async fn amqp091_reconnects_and_rebinds_after_the_broker_closes_the_connection() {
        with_exchange(|url, exchange| async move {
            let (a, b) = (node(&url, &exchange), node(&url, &exchange));
            let mut sub_a = Subscriber::start(&a).await;
            let mut sub_b = Subscriber::start(&b).await;
            a.subscribe(1).await.expect("bound");
            b.subscribe(1).await.expect("bound");
            sub_a.settle(&a, 1).await;
            sub_b.settle(&b, 1).await;
            a.publish(event(1, "before")).await.expect("a publishes");
            assert_eq!(sub_a.next_real().await.message, "before");

            let Some(ids) = connections_of(&a).await else {
                eprintln!("skipping: rabbitmqctl is not available");
                return;
            };
            // One connection per node, shared by publishing and consuming.
            assert_eq!(ids.len(), 1, "node a's connections: {ids:?}");
            // Only this test's connections: closing all would break tests running alongside.
            for transport in [&a, &b] {
                for id in connections_of(transport).await.expect("rabbitmqctl works") {
                    rabbitmqctl(&["close_connection", &id, "test"])
                        .await
                        .expect("close the connection");
                }
            }
            for sub in [&mut sub_a, &mut sub_b] {
                loop {
                    match sub.next().await {
                        Err(error) => {
                            eprintln!("stream ended as expected: {error}");
                            break;
                        }
                        Ok(event) => assert!(
                            [PROBE, "before"].contains(&event.message.as_str()),
                            "unexpected {event:?}"
                        ),
                    }
                }
            }
            assert!(a.health().is_err(), "health reports the lost connection");
            // Publishing reconnects by itself; events() below then shares that connection.
            a.publish(event(9, "nobody listens"))
                .await
                .expect("publish reconnects");
            assert_eq!(a.health(), Ok("amqp091"));

            // As the supervisor would: call events() again, with the rooms still subscribed.
            let mut sub_a = Subscriber::start(&a).await;
            let mut sub_b = Subscriber::start(&b).await;
            sub_a.settle(&b, 1).await;
            sub_b.settle(&a, 1).await;
            a.publish(event(1, "after-a")).await.expect("a publishes");
            b.publish(event(1, "after-b")).await.expect("b publishes");
            assert_eq!(
                sub_a.until(&["after-a", "after-b"]).await,
                sorted(&[(1, "after-a"), (1, "after-b")])
            );
            assert_eq!(
                sub_b.until(&["after-a", "after-b"]).await,
                sorted(&[(1, "after-a"), (1, "after-b")])
            );
            let ids = connections_of(&a).await.expect("rabbitmqctl works");
            assert_eq!(ids.len(), 1, "node a reconnected once: {ids:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn amqp091_unreachable_broker_fails_fast_and_reports_it() {
        // Nothing listens on port 1: construction works, every use fails in bounded time.
        let transport = Amqp091Transport::new("amqp://guest:guest@127.0.0.1:1/%2f", "x", "n")
            .expect("a valid URL is enough to build");
        assert!(transport.health().is_err());
        assert!(
            transport.subscribe(7).await.is_err(),
            "nothing can be bound"
        );
        let events = timeout(WAIT, transport.events()).await.expect("in time");
        assert!(events.is_err());
        let published = timeout(WAIT, transport.publish(event(7, "lost"))).await;
        assert!(published.expect("in time").is_err());
        let health = transport.health().expect_err("down");
        assert!(health.contains("cannot connect"), "{health}");
        assert!(
            !health.contains("guest:guest"),
            "the password is redacted: {health}"
        );
        assert!(Amqp091Transport::new("not a url", "x", "n").is_err());
    }
}
