//! AMQP 0-9-1 fan-out through a broker (RabbitMQ) with lapin.
//!
//! Topology (shared with `v10`, in `topology`): a durable topic exchange shared by all nodes,
//! routing key `room.<id>`. Each node holds one connection and consumes its own exclusive,
//! auto-delete, server-named queue, bound to `room.<id>` while the node has sockets in that
//! room. The exchange is live-only fan-out: messages are transient, the database is the record.

use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use futures_util::{stream, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Acker, BasicProperties, Channel, Connection, ConnectionStatus, Consumer};
use tokio::sync::OwnedMutexGuard;
use tokio::time::{timeout, Instant};

use super::rooms::Subscriptions;
use super::topology::{
    bounded, declare_exchange, routing_key, signal_within_bound, Bindings, PUBLISH_TIMEOUT,
    RECONNECT_COOLDOWN, REQUEST_ID_PROPERTY,
};
use crate::metrics::TransportProbe;
use crate::store::redact;
use crate::transport::{EventStream, Refusal, RoomEvent, Transport, TransportError, SIGNAL_TTL};
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
    probe: OnceLock<TransportProbe>,
}

/// The node's single connection and its publishing channel.
#[derive(Default)]
struct Link {
    connection: Option<Connection>,
    publisher: Option<Channel>,
    last_failure: Option<(Instant, TransportError)>,
    /// A connection was made before: the next one is a reconnect.
    connected_once: bool,
}

impl Amqp091Transport {
    /// Checks the URL only: the broker is contacted on first use, so a node starts (and keeps
    /// retrying) while the broker is down.
    pub fn new(url: &str, exchange: &str, node_id: &str) -> Result<Self, TransportError> {
        let redacted_url = redact(url);
        let uri = url
            .parse::<AMQPUri>()
            .map_err(|reason| TransportError::InvalidUrl {
                url: redacted_url.clone(),
                reason,
            })?;
        Ok(Self {
            uri,
            redacted_url,
            exchange: exchange.to_string(),
            node_id: node_id.to_string(),
            link: tokio::sync::Mutex::new(Link::default()),
            health: Mutex::new(Err("not connected to the broker yet".to_string())),
            subscriptions: Arc::default(),
            probe: OnceLock::new(),
        })
    }

    /// The name the broker lists this node's connection under.
    pub fn connection_name(&self) -> String {
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
                    return Err(reason.clone());
                }
            }
            match self.connect().await {
                Ok(connection) => {
                    if std::mem::replace(&mut link.connected_once, true) {
                        if let Some(probe) = self.probe.get() {
                            probe.reconnected();
                        }
                    }
                    link.last_failure = None;
                    self.set_health(Ok(connection.status().clone()));
                    link.connection = Some(connection);
                }
                Err(reason) => {
                    tracing::warn!(error = %reason.chain(), "broker unreachable");
                    link.last_failure = Some((Instant::now(), reason.clone()));
                    self.set_health(Err(reason.chain()));
                    return Err(reason);
                }
            }
        }
        let connection = link.connection.as_ref().ok_or(TransportError::Closed)?;
        bounded("open a channel", connection.create_channel()).await
    }

    async fn connect(&self) -> Result<Connection, TransportError> {
        let connection = super::topology::connect(&self.uri, self.connection_name())
            .await
            .map_err(|e| TransportError::Connect {
                url: self.redacted_url.clone(),
                source: Arc::new(e),
            })?;
        tracing::info!(broker = %self.redacted_url, node = %self.node_id, "connected to the broker");
        Ok(connection)
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
        let started = std::time::Instant::now();
        let mut confirms = Vec::with_capacity(events.len());
        for event in &events {
            let body = event.encode();
            let mut properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_app_id(self.node_id.as_str().into());
            // For consumers that read headers rather than the body.
            if let Some(id) = &event.request_id {
                let mut headers = FieldTable::default();
                headers.insert(
                    REQUEST_ID_PROPERTY.into(),
                    AMQPValue::LongString(id.as_str().into()),
                );
                properties = properties.with_headers(headers);
            }
            confirms.push(
                bounded(
                    "publish",
                    channel.basic_publish(
                        self.exchange.as_str().into(),
                        routing_key(event.chat_id).into(),
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
                return Err(TransportError::NotTaken(Refusal::Nacked));
            }
        }
        if let Some(probe) = self.probe.get() {
            probe.confirmed(started);
        }
        Ok(())
    }

    /// Publishes a signal, transient and expiring after [`SIGNAL_TTL`]; its confirm is not
    /// awaited, so it costs the sender one write.
    async fn publish_signal(&self, event: RoomEvent) -> Result<(), TransportError> {
        let channel = self.publisher().await?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_app_id(self.node_id.as_str().into())
            .with_expiration(SIGNAL_TTL.as_millis().to_string().into());
        let _unawaited_confirm = bounded(
            "publish a signal",
            channel.basic_publish(
                self.exchange.as_str().into(),
                routing_key(event.chat_id).into(),
                BasicPublishOptions::default(),
                &event.encode(),
                properties,
            ),
        )
        .await?;
        Ok(())
    }

    async fn publish_within_timeout(&self, events: Vec<RoomEvent>) -> Result<(), TransportError> {
        timeout(PUBLISH_TIMEOUT, self.publish_confirmed(events))
            .await
            .map_err(|_| TransportError::Timeout {
                what: "publish confirm",
                within: PUBLISH_TIMEOUT,
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

    async fn signal(&self, event: RoomEvent) -> Result<(), TransportError> {
        signal_within_bound(self.health().is_ok(), self.publish_signal(event)).await
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
        let bindings = Bindings::bind_all(
            channel,
            &self.exchange,
            queue.clone(),
            self.subscriptions.clone(),
            wanted,
        )
        .await?;
        let consuming = Consuming {
            bindings,
            _guard: guard,
            consumer,
            unacked: None,
        };
        tracing::info!(%queue, rooms = consuming.bindings.rooms(), "consuming room events from the broker");
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

    fn observe(&self, probe: TransportProbe) {
        // Set once by the node's state; a second probe would only duplicate the first.
        let _ = self.probe.set(probe);
    }
}

/// The state behind one event stream: its queue's bindings and consumer.
struct Consuming {
    /// First, so the bindings are cleared before the guard lets a new stream start.
    bindings: Bindings,
    _guard: OwnedMutexGuard<()>,
    consumer: Consumer,
    /// The delivery last handed out.
    unacked: Option<Acker>,
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
                _ = self.bindings.changed() => {
                    self.bindings.apply_room_changes().await?;
                    continue;
                }
                delivery = self.consumer.next() => delivery,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    return Err(TransportError::Broker {
                        what: "broker consumer",
                        source: Arc::new(e),
                    })
                }
                None => return Err(TransportError::ConsumerEnded),
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
}
