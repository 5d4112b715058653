//! AMQP 0-9-1 fan-out through a broker (RabbitMQ) with lapin.
//!
//! Topology: a durable topic exchange shared by all nodes, routing key `room.<id>`. Each node
//! holds one connection and consumes its own exclusive, auto-delete, server-named queue, bound
//! to `room.<id>` while the node has sockets in that room. The exchange is live-only fan-out:
//! messages are transient, the database is the record.

use std::collections::HashSet;
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
use tokio::sync::OwnedMutexGuard;
use tokio::time::{timeout, Instant};

use super::rooms::Subscriptions;
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

pub struct Amqp091Transport {
    uri: AMQPUri,
    redacted_url: String,
    exchange: String,
    node_id: String,
    link: tokio::sync::Mutex<Link>,
    /// The live connection's status, or why there is none (for `/readyz`).
    health: Mutex<Result<ConnectionStatus, String>>,
    subscriptions: Arc<Subscriptions>,
}

/// The node's single connection and its publishing channel.
#[derive(Default)]
struct Link {
    connection: Option<Connection>,
    publisher: Option<Channel>,
    last_failure: Option<(Instant, String)>,
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
            subscriptions: Arc::default(),
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

    /// Publishes the events in order on the confirm channel, then waits for every confirm:
    /// one round trip per batch instead of one per event.
    async fn publish_confirmed(&self, events: Vec<RoomEvent>) -> Result<(), TransportError> {
        let channel = self.publisher().await?;
        let mut confirms = Vec::with_capacity(events.len());
        for event in &events {
            let body = event.encode();
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_app_id(self.node_id.as_str().into());
            confirms.push(
                bounded(
                    "publish",
                    channel.basic_publish(
                        self.exchange.as_str().into(),
                        routing_key(event.chat_id),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    ),
                )
                .await?,
            );
        }
        for confirm in confirms {
            if !bounded("publisher confirm", confirm).await?.is_ack() {
                return Err(TransportError::Other(
                    "the broker refused an event (nack)".to_string(),
                ));
            }
        }
        Ok(())
    }

    async fn publish_within_timeout(&self, events: Vec<RoomEvent>) -> Result<(), TransportError> {
        timeout(PUBLISH_TIMEOUT, self.publish_confirmed(events))
            .await
            .map_err(|_| {
                TransportError::Other(format!("publish: not confirmed within {PUBLISH_TIMEOUT:?}"))
            })?
    }
}

#[async_trait]
impl Transport for Amqp091Transport {
    async fn publish(&self, event: RoomEvent) -> Result<(), TransportError> {
        self.publish_within_timeout(vec![event]).await
    }

    async fn publish_batch(&self, events: Vec<RoomEvent>) -> Result<(), TransportError> {
        self.publish_within_timeout(events).await
    }

    async fn subscribe(&self, room: i64) -> Result<(), TransportError> {
        self.subscriptions.subscribe(room).await
    }

    fn unsubscribe(&self, room: i64) {
        self.subscriptions.unsubscribe(room);
    }

    /// Declares the exchange and a fresh queue on the node's connection (reconnecting if
    /// needed) and binds every wanted room, so calling it again after a failure restores
    /// everything.
    async fn events(&self) -> Result<EventStream, TransportError> {
        let guard = self.subscriptions.start_stream()?;
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
        let wanted = self.subscriptions.rebind_all();
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
        for &room in &wanted {
            self.subscriptions.set_bound(room);
        }
        let consuming = Consuming {
            _guard: guard,
            exchange: self.exchange.clone(),
            queue: queue.clone(),
            channel,
            consumer,
            subscriptions: self.subscriptions.clone(),
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
    subscriptions: Arc<Subscriptions>,
    bound: HashSet<i64>,
    /// The delivery last handed out.
    unacked: Option<Acker>,
}

impl Drop for Consuming {
    fn drop(&mut self) {
        // The queue dies with this stream: nothing is bound until `events` runs again.
        self.subscriptions.clear_bound();
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
                _ = self.subscriptions.changed() => {
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
            match RoomEvent::decode(&delivery.data) {
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
        for (room, wanted) in self.subscriptions.take_changes() {
            if wanted && !self.bound.contains(&room) {
                bind(&self.channel, &self.queue, &self.exchange, room).await?;
                self.bound.insert(room);
                self.subscriptions.set_bound(room);
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
                self.subscriptions.set_unbound(room);
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
    use super::*;
    use crate::transport::testing::{self, event, sorted, Rabbitmqctl, Subscriber, WAIT};

    /// Runs `test(broker_url, exchange)` against a fresh exchange, or skips without a broker.
    async fn with_exchange<F, Fut>(test: F)
    where
        F: FnOnce(String, String) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(url) = testing::broker_url("CHATNODE_TEST_AMQP_URL") else {
            return;
        };
        testing::with_exchange(url, test).await;
    }

    fn node(url: &str, exchange: &str) -> Arc<Amqp091Transport> {
        let id = format!("test-{}", uuid::Uuid::new_v4().simple());
        Arc::new(Amqp091Transport::new(url, exchange, &id).expect("valid URL"))
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
            testing::unsubscribe_then_resubscribe(&a, &b).await;
        })
        .await;
    }

    /// The broker-side ids of the connections carrying this node's name.
    async fn connections_of(
        rabbitmqctl: &Rabbitmqctl,
        transport: &Amqp091Transport,
    ) -> Option<Vec<String>> {
        rabbitmqctl
            .connections_named(&transport.connection_name())
            .await
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

            let rabbitmqctl = Rabbitmqctl::for_url(&url).await;
            let Some(ids) = connections_of(&rabbitmqctl, &a).await else {
                eprintln!("skipping: rabbitmqctl is not available");
                return;
            };
            // One connection per node, shared by publishing and consuming.
            assert_eq!(ids.len(), 1, "node a's connections: {ids:?}");
            // Only this test's connections: closing all would break tests running alongside.
            for transport in [&a, &b] {
                let ids = connections_of(&rabbitmqctl, transport).await;
                for id in ids.expect("rabbitmqctl works") {
                    rabbitmqctl.close_connection(&id).await;
                }
            }
            // Kept consuming while the broker lists the new connections.
            let _streams =
                testing::recover_after_connection_loss(&a, &b, (sub_a, sub_b), "amqp091").await;
            let ids = connections_of(&rabbitmqctl, &a)
                .await
                .expect("rabbitmqctl works");
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
