//! AMQP 1.0 fan-out through RabbitMQ with fe2o3-amqp.
//!
//! The topology is `v091`'s (in `topology`), so nodes of both kinds can share one exchange: a durable topic
//! exchange, routing key `room.<id>`, and per node a queue bound to `room.<id>` while the node
//! has sockets in that room. Events are published and consumed over AMQP 1.0 as JSON `data`
//! sections, which AMQP 0-9-1 clients see as the same raw bytes `v091` sends.
//!
//! RabbitMQ 3.x cannot declare anything over AMQP 1.0, and 4.x only through its management
//! node, which fe2o3-amqp cannot address (it refuses two links with one name). So the exchange,
//! the queue and its bindings are managed over a second, AMQP 0-9-1 connection (lapin). The
//! queue is client-named, durable, auto-delete and non-exclusive (an AMQP 1.0 receiver cannot
//! consume an exclusive queue of another connection): it goes when the node's receiver
//! detaches, and `x-expires` removes it if the receiver never attached.
//!
//! RabbitMQ 3.x's AMQP 1.0 plugin understands only "v1" addresses (`/exchange/X`,
//! `/amq/queue/Q`); 4.x understands "v2" ones (`/exchanges/X/key`, `/queues/Q`) and v1 only while
//! that deprecated feature is permitted. `--amqp10-addressing auto` picks by the version the
//! broker announces in its AMQP 1.0 `open` frame.

mod address;
mod connect;
mod consume;
mod publish;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use fe2o3_amqp::connection::ConnectionHandle;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionStatus};
use tokio::time::{timeout, Instant};

pub use self::address::AddressFormat;
pub use self::connect::broker_version;
use self::publish::Publisher;
use super::rooms::Subscriptions;
use super::topology::{bounded, signal_within_bound, PUBLISH_TIMEOUT, RECONNECT_COOLDOWN};
use crate::config::Amqp10Addressing;
use crate::metrics::TransportProbe;
use crate::store::redact;
use crate::transport::{EventStream, RoomEvent, Transport, TransportError};

pub struct Amqp10Transport {
    uri: AMQPUri,
    redacted_url: String,
    exchange: String,
    node_id: String,
    queue: String,
    addressing: Amqp10Addressing,
    link: tokio::sync::Mutex<Link>,
    /// Taken for a whole publish: fe2o3's sender sends one message at a time.
    publisher: tokio::sync::Mutex<Option<Publisher>>,
    /// The 0-9-1 connection's status, or why events cannot flow (for `/readyz`).
    health: Arc<Mutex<Result<ConnectionStatus, String>>>,
    subscriptions: Arc<Subscriptions>,
    /// Makes link names unique on the connection.
    links_attached: AtomicU64,
    probe: OnceLock<TransportProbe>,
}

/// The node's two broker connections.
#[derive(Default)]
struct Link {
    /// AMQP 0-9-1, with a channel, for the exchange, the queue and its bindings.
    topology: Option<(Connection, Channel)>,
    /// AMQP 1.0, for the events, with the address format it speaks.
    events: Option<(ConnectionHandle<()>, AddressFormat)>,
    last_failure: Option<(Instant, TransportError)>,
    /// Both connections were up before: connecting again is a reconnect.
    connected_once: bool,
}

impl Link {
    fn topology_alive(&self) -> bool {
        self.topology.as_ref().is_some_and(|(connection, channel)| {
            connection.status().connected() && channel.status().connected()
        })
    }

    fn events_alive(&self) -> bool {
        self.events
            .as_ref()
            .is_some_and(|(connection, _)| !connection.is_closed())
    }
}

impl Amqp10Transport {
    /// Checks the URL only: the broker is contacted on first use, so a node starts (and keeps
    /// retrying) while the broker is down.
    pub fn new(
        url: &str,
        exchange: &str,
        node_id: &str,
        addressing: Amqp10Addressing,
    ) -> Result<Self, TransportError> {
        let redacted_url = redact(url);
        let uri = url
            .parse::<AMQPUri>()
            .map_err(|reason| TransportError::InvalidUrl {
                url: redacted_url.clone(),
                reason,
            })?;
        if uri.scheme != AMQPScheme::AMQP {
            return Err(TransportError::UnsupportedScheme { url: redacted_url });
        }
        Ok(Self {
            uri,
            redacted_url,
            exchange: exchange.to_string(),
            node_id: node_id.to_string(),
            queue: format!("chatnode.{exchange}.{node_id}"),
            addressing,
            link: tokio::sync::Mutex::new(Link::default()),
            publisher: tokio::sync::Mutex::new(None),
            health: Arc::new(Mutex::new(Err(
                "not connected to the broker yet".to_string()
            ))),
            subscriptions: Arc::default(),
            links_attached: AtomicU64::new(0),
            probe: OnceLock::new(),
        })
    }

    /// The name the broker lists this node's connections under.
    pub fn connection_name(&self) -> String {
        format!("chatnode {}", self.node_id)
    }

    /// The node's queue, which its AMQP 1.0 receiver consumes.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The address format the live AMQP 1.0 connection speaks; `None` before it connects.
    pub async fn address_format(&self) -> Option<AddressFormat> {
        let link = self.link.lock().await;
        link.events.as_ref().map(|(_, format)| *format)
    }

    fn link_name(&self, role: &str) -> String {
        let n = self.links_attached.fetch_add(1, Ordering::Relaxed);
        format!("chatnode-{}-{role}-{n}", self.node_id)
    }

    fn set_health(&self, health: Result<ConnectionStatus, String>) {
        *self.health.lock().expect("health poisoned") = health;
    }

    /// Reconnects whichever of the two connections is gone; records the outcome for `health`.
    async fn ensure_connected(&self, link: &mut Link) -> Result<(), TransportError> {
        if !(link.topology_alive() && link.events_alive()) {
            if let Some((at, reason)) = &link.last_failure {
                if at.elapsed() < RECONNECT_COOLDOWN {
                    return Err(reason.clone());
                }
            }
            if let Err(cause) = self.reconnect(link).await {
                let reason = TransportError::Connect {
                    url: self.redacted_url.clone(),
                    source: Arc::new(cause),
                };
                tracing::warn!(error = %reason.chain(), "broker unreachable");
                link.last_failure = Some((Instant::now(), reason.clone()));
                self.set_health(Err(reason.chain()));
                return Err(reason);
            }
            link.last_failure = None;
            if std::mem::replace(&mut link.connected_once, true) {
                if let Some(probe) = self.probe.get() {
                    probe.reconnected();
                }
            }
        }
        if let Some((connection, _)) = &link.topology {
            self.set_health(Ok(connection.status().clone()));
        }
        Ok(())
    }

    /// Connects what is not connected.
    async fn reconnect(&self, link: &mut Link) -> Result<(), TransportError> {
        if !link.topology_alive() {
            let connected = link
                .topology
                .take()
                .map(|(connection, _)| connection)
                .filter(|connection| connection.status().connected());
            let connection = match connected {
                Some(connection) => connection,
                None => super::topology::connect(&self.uri, self.connection_name()).await?,
            };
            let channel = bounded("open a channel", connection.create_channel()).await?;
            link.topology = Some((connection, channel));
        }
        if !link.events_alive() {
            link.events = None;
            link.events = Some(self.connect_events().await?);
        }
        Ok(())
    }
}

#[async_trait]
impl Transport for Amqp10Transport {
    async fn publish(&self, event: RoomEvent) -> Result<(), TransportError> {
        self.publish_batch(vec![event]).await
    }

    async fn publish_batch(&self, events: Vec<RoomEvent>) -> Result<(), TransportError> {
        timeout(PUBLISH_TIMEOUT, self.publish_settled(events))
            .await
            .map_err(|_| TransportError::Timeout {
                what: "publish (settling)",
                within: PUBLISH_TIMEOUT,
            })?
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

    /// Recreates the node's queue (reconnecting if needed), attaches a receiver to it on a
    /// session of its own and binds every wanted room, so calling it again after a failure
    /// restores everything.
    async fn events(&self) -> Result<EventStream, TransportError> {
        self.open_events().await
    }

    fn health(&self) -> Result<&'static str, String> {
        match &*self.health.lock().expect("health poisoned") {
            Ok(status) if status.connected() => Ok("amqp10"),
            Ok(_) => Err("the broker connection was lost; reconnecting".to_string()),
            Err(reason) => Err(reason.clone()),
        }
    }

    fn observe(&self, probe: TransportProbe) {
        // Set once by the node's state; a second probe would only duplicate the first.
        let _ = self.probe.set(probe);
    }
}
