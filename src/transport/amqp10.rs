//! AMQP 1.0 fan-out through RabbitMQ with fe2o3-amqp.
//!
//! The topology is `amqp091`'s, so nodes of both kinds can share one exchange: a durable topic
//! exchange, routing key `room.<id>`, and per node a queue bound to `room.<id>` while the node
//! has sockets in that room. Events are published and consumed over AMQP 1.0 as JSON `data`
//! sections, which AMQP 0-9-1 clients see as the same raw bytes `amqp091` sends.
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

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::{CreditMode, SendError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::Fields;
use fe2o3_amqp::types::messaging::{Body, Data, Message, Outcome, Properties, Target};
use fe2o3_amqp::types::primitives::{Symbol, Value};
use fe2o3_amqp::{Delivery, Receiver, Sender, Session};
use futures_util::stream;
use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties, ConnectionStatus, ExchangeKind};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedMutexGuard;
use tokio::time::error::Elapsed;
use tokio::time::{timeout, Instant};

use super::rooms::Subscriptions;
use super::{EventStream, RoomEvent, Transport, TransportError};
use crate::config::Amqp10Addressing;
use crate::store::redact;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on every broker round trip (declare, bind, attach, publish outcome, ...).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a whole publish, including waiting for a reconnection another caller started.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed connection attempt, callers fail fast for this long instead of queueing
/// up behind one another, each waiting for its own attempt.
const RECONNECT_COOLDOWN: Duration = Duration::from_secs(1);
/// Unsettled deliveries the broker may push to this node (the receiver's link credit).
const PREFETCH: u32 = 256;
/// How often the event stream checks the AMQP 0-9-1 connection, which it otherwise only
/// uses when a room changes: without it, bindings could not follow `subscribe` until then.
const TOPOLOGY_CHECK: Duration = Duration::from_secs(1);
/// A queue whose receiver never attached (the node died in between) is deleted after this
/// long unused; one with a receiver goes when the receiver does.
const QUEUE_EXPIRES: Duration = Duration::from_secs(60);
/// The broker must send something (heartbeats when idle) this often, or the connection is
/// taken for dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of what the broker sends first is kept, to read its `open` frame.
const SNIFF_LIMIT: usize = 16 * 1024;
/// What RFC 3986 leaves unescaped in a path segment, as RabbitMQ's v2 addresses expect.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
}

/// The node's two broker connections.
#[derive(Default)]
struct Link {
    /// AMQP 0-9-1, with a channel, for the exchange, the queue and its bindings.
    topology: Option<(Connection, Channel)>,
    /// AMQP 1.0, for the events, with the address format it speaks.
    events: Option<(ConnectionHandle<()>, AddressFormat)>,
    last_failure: Option<(Instant, String)>,
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

/// A session of its own for publishing: an attach error ends the whole session, and must not
/// take the consumer with it.
struct Publisher {
    session: SessionHandle<()>,
    sender: Sender,
    format: AddressFormat,
}

/// How RabbitMQ names exchanges and queues in AMQP 1.0 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressFormat {
    /// RabbitMQ 3.x (and 4.x while permitted): `/exchange/X` routing by message subject,
    /// `/amq/queue/Q`.
    V1,
    /// RabbitMQ 4.x: an anonymous sender with `to: /exchanges/X/key` per message, `/queues/Q`.
    V2,
}

impl AddressFormat {
    /// v2 from RabbitMQ 4.0 on; v1 before, and when the version is unknown, since 4.x still
    /// accepts v1 by default.
    fn for_version(version: Option<&str>) -> Self {
        let major = version.and_then(|v| v.split('.').next()?.parse::<u32>().ok());
        match major {
            Some(major) if major >= 4 => AddressFormat::V2,
            _ => AddressFormat::V1,
        }
    }

    fn publish_target(self, exchange: &str) -> Target {
        match self {
            AddressFormat::V1 => Target::builder()
                .address(format!("/exchange/{exchange}"))
                .build(),
            // No address: each message names its own destination.
            AddressFormat::V2 => Target::builder().build(),
        }
    }

    fn message(self, exchange: &str, room: i64, body: Vec<u8>) -> Message<Data> {
        let key = routing_key(room);
        let properties = Properties::builder().content_type("application/json");
        let properties = match self {
            AddressFormat::V1 => properties.subject(key),
            AddressFormat::V2 => properties.to(format!(
                "/exchanges/{}/{}",
                utf8_percent_encode(exchange, PATH_SEGMENT),
                utf8_percent_encode(&key, PATH_SEGMENT)
            )),
        };
        Message::builder()
            .properties(properties.build())
            .data(body)
            .build()
    }

    fn queue_source(self, queue: &str) -> String {
        match self {
            AddressFormat::V1 => format!("/amq/queue/{queue}"),
            AddressFormat::V2 => format!("/queues/{}", utf8_percent_encode(queue, PATH_SEGMENT)),
        }
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
        let uri = url.parse::<AMQPUri>().map_err(|e| {
            TransportError::Other(format!("invalid broker URL {redacted_url}: {e}"))
        })?;
        if uri.scheme != AMQPScheme::AMQP {
            return Err(TransportError::Other(format!(
                "broker URL {redacted_url}: only amqp:// is supported (no TLS in this build)"
            )));
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
        })
    }

    fn connection_name(&self) -> String {
        format!("chatnode {}", self.node_id)
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
                    return Err(TransportError::Other(reason.clone()));
                }
            }
            if let Err(reason) = self.reconnect(link).await {
                tracing::warn!(error = %reason, "broker unreachable");
                link.last_failure = Some((Instant::now(), reason.clone()));
                self.set_health(Err(reason.clone()));
                return Err(TransportError::Other(reason));
            }
            link.last_failure = None;
        }
        if let Some((connection, _)) = &link.topology {
            self.set_health(Ok(connection.status().clone()));
        }
        Ok(())
    }

    /// Connects what is not connected.
    async fn reconnect(&self, link: &mut Link) -> Result<(), String> {
        let failed = |why: String| {
            format!(
                "cannot connect to the broker at {}: {why}",
                self.redacted_url
            )
        };
        if !link.topology_alive() {
            let connected = link
                .topology
                .take()
                .map(|(connection, _)| connection)
                .filter(|connection| connection.status().connected());
            let connection = match connected {
                Some(connection) => connection,
                None => self.connect_topology().await.map_err(failed)?,
            };
            let channel = bounded("open a channel", connection.create_channel())
                .await
                .map_err(|e| failed(e.to_string()))?;
            link.topology = Some((connection, channel));
        }
        if !link.events_alive() {
            link.events = None;
            link.events = Some(self.connect_events().await.map_err(failed)?);
        }
        Ok(())
    }

    async fn connect_topology(&self) -> Result<Connection, String> {
        let properties =
            ConnectionProperties::default().with_connection_name(self.connection_name().into());
        match timeout(
            CONNECT_TIMEOUT,
            Connection::connect_uri(self.uri.clone(), properties),
        )
        .await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(format!("AMQP 0-9-1: {e}")),
            Err(_) => Err(format!("AMQP 0-9-1: no answer within {CONNECT_TIMEOUT:?}")),
        }
    }

    async fn connect_events(&self) -> Result<(ConnectionHandle<()>, AddressFormat), String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let open = async {
            let authority = &self.uri.authority;
            let tcp = TcpStream::connect((authority.host.as_str(), authority.port))
                .await
                .map_err(|e| e.to_string())?;
            // Without it each small frame (a transfer, a disposition) waits for the broker's
            // delayed ACK: ~40 ms per publish on Linux.
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            let stream = Sniffing {
                inner: tcp,
                seen: seen.clone(),
            };
            // RabbitMQ reads the virtual host from the `open` frame's hostname.
            let hostname = format!("vhost:{}", self.uri.vhost);
            let mut properties = Fields::new();
            properties.insert(
                Symbol::from("connection_name"),
                Value::String(self.connection_name()),
            );
            fe2o3_amqp::Connection::builder()
                .container_id(format!("chatnode-{}", self.node_id))
                .hostname(hostname.as_str())
                .sasl_profile(SaslProfile::Plain {
                    username: authority.userinfo.username.clone(),
                    password: authority.userinfo.password.clone(),
                })
                .idle_time_out(IDLE_TIMEOUT.as_millis() as u32)
                .properties(properties)
                .open_with_stream(stream)
                .await
                .map_err(|e| e.to_string())
        };
        let connection = match timeout(CONNECT_TIMEOUT, open).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(format!("AMQP 1.0: {e}")),
            Err(_) => return Err(format!("AMQP 1.0: no answer within {CONNECT_TIMEOUT:?}")),
        };
        let version = broker_version(&seen.lock().expect("sniffed bytes poisoned"));
        let format = match self.addressing {
            Amqp10Addressing::V1 => AddressFormat::V1,
            Amqp10Addressing::V2 => AddressFormat::V2,
            Amqp10Addressing::Auto => {
                if version.is_none() {
                    tracing::warn!("the broker did not announce its version; using v1 addresses (set --amqp10-addressing to choose)");
                }
                AddressFormat::for_version(version.as_deref())
            }
        };
        tracing::info!(
            broker = %self.redacted_url,
            node = %self.node_id,
            version = version.as_deref().unwrap_or("unknown"),
            addresses = ?format,
            "connected to the broker"
        );
        Ok((connection, format))
    }

    /// A fresh session and sender for publishing on the live connections.
    async fn open_publisher(&self, link: &mut Link) -> Result<Publisher, TransportError> {
        if let Some((_, channel)) = &link.topology {
            // This node may publish before its stream has declared anything, and over v1 a
            // missing exchange ends the publisher's session.
            declare_exchange(channel, &self.exchange).await?;
        }
        let (connection, format) = link.events.as_mut().ok_or(TransportError::Closed)?;
        let format = *format;
        let mut session = bounded("begin a publishing session", Session::begin(connection)).await?;
        let sender = bounded(
            "attach the sender",
            Sender::builder()
                .name(self.link_name("publish"))
                .target(format.publish_target(&self.exchange))
                .attach(&mut session),
        )
        .await?;
        Ok(Publisher {
            session,
            sender,
            format,
        })
    }

    /// Sends every event without waiting for the one before (a batchable transfer each) and
    /// returns once the broker has settled them all: one round trip for the batch.
    async fn publish_settled(&self, events: Vec<RoomEvent>) -> Result<(), TransportError> {
        let mut publisher = self.publisher.lock().await;
        {
            // Also when the publisher is fine: publishing is what notices a lost connection
            // and reconnects it while the event stream is down.
            let mut link = self.link.lock().await;
            self.ensure_connected(&mut link).await?;
            if publisher.as_ref().is_none_or(|p| p.session.is_ended()) {
                *publisher = None;
                *publisher = Some(self.open_publisher(&mut link).await?);
            }
        }
        let live = publisher.as_mut().ok_or(TransportError::Closed)?;
        let sent = Self::send_all(live, &self.exchange, &events).await;
        if sent.is_err() {
            // The link's state is unknown now: the next publish starts afresh.
            *publisher = None;
        }
        sent
    }

    async fn send_all(
        live: &mut Publisher,
        exchange: &str,
        events: &[RoomEvent],
    ) -> Result<(), TransportError> {
        let Some((last, earlier)) = events.split_last() else {
            return Ok(());
        };
        let mut pending = Vec::with_capacity(earlier.len());
        for event in earlier {
            let message = live.format.message(exchange, event.chat_id, event.encode());
            let delivery =
                match timeout(OPERATION_TIMEOUT, live.sender.send_batchable(message)).await {
                    Ok(Ok(delivery)) => delivery,
                    Ok(Err(e)) => return Err(TransportError::Other(format!("publish: {e}"))),
                    Err(_) => {
                        return Err(TransportError::Other(format!(
                            "publish: no link credit from the broker within {OPERATION_TIMEOUT:?}"
                        )))
                    }
                };
            pending.push((event.chat_id, delivery));
        }
        // The last transfer is not batchable: the broker settles it at once, and the batch
        // before it with it, instead of whenever it next has something to say.
        let message = live.format.message(exchange, last.chat_id, last.encode());
        taken(
            last.chat_id,
            timeout(OPERATION_TIMEOUT, live.sender.send(message)).await,
        )?;
        for (room, delivery) in pending {
            taken(room, timeout(OPERATION_TIMEOUT, delivery).await)?;
        }
        Ok(())
    }
}

/// Whether the broker took one published event, from its outcome.
fn taken(
    room: i64,
    answer: Result<Result<Outcome, SendError>, Elapsed>,
) -> Result<(), TransportError> {
    let outcome = match answer {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => return Err(TransportError::Other(format!("publish: {e}"))),
        Err(_) => {
            return Err(TransportError::Other(format!(
                "publish: no outcome from the broker within {OPERATION_TIMEOUT:?}"
            )))
        }
    };
    match outcome {
        Outcome::Accepted(_) => Ok(()),
        // RabbitMQ 4 releases a message no queue is bound for: no node has sockets in the
        // room, which AMQP 0-9-1 confirms just the same. Failing would stall the outbox.
        Outcome::Released(_) => {
            tracing::debug!(room, "no node subscribes to the room");
            Ok(())
        }
        Outcome::Rejected(rejected) => Err(TransportError::Other(format!(
            "the broker rejected the event: {:?}",
            rejected.error
        ))),
        Outcome::Modified(_) => Err(TransportError::Other(
            "the broker did not take the event (modified)".to_string(),
        )),
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
            .map_err(|_| {
                TransportError::Other(format!("publish: not settled within {PUBLISH_TIMEOUT:?}"))
            })?
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
        let guard = self.subscriptions.start_stream()?;
        let (channel, format, mut session) = {
            let mut link = self.link.lock().await;
            self.ensure_connected(&mut link).await?;
            let channel = link
                .topology
                .as_ref()
                .map(|(_, channel)| channel.clone())
                .ok_or(TransportError::Closed)?;
            let (connection, format) = link.events.as_mut().ok_or(TransportError::Closed)?;
            let format = *format;
            let session = bounded("begin a consuming session", Session::begin(connection)).await?;
            (channel, format, session)
        };
        declare_exchange(&channel, &self.exchange).await?;
        let queue = ShortString::from(self.queue.as_str());
        // A queue left from an earlier stream may still carry bindings of rooms unsubscribed
        // since, and its auto-delete may still be on the way: start from a new one.
        bounded(
            "delete the node's old queue",
            channel.queue_delete(queue.clone(), QueueDeleteOptions::default()),
        )
        .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(QUEUE_EXPIRES.as_millis() as i64),
        );
        bounded(
            "declare the node's queue",
            channel.queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    durable: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            ),
        )
        .await?;
        let wanted = self.subscriptions.rebind_all();
        let receiver = bounded(
            "attach the receiver",
            Receiver::builder()
                .name(self.link_name("events"))
                .source(format.queue_source(&self.queue))
                .credit_mode(CreditMode::Auto(PREFETCH))
                .auto_accept(false)
                .attach(&mut session),
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
            queue,
            channel,
            topology_check: tokio::time::interval(TOPOLOGY_CHECK),
            receiver,
            _session: session,
            subscriptions: self.subscriptions.clone(),
            health: self.health.clone(),
            bound: wanted,
            unaccepted: None,
        };
        tracing::info!(queue = %self.queue, rooms = consuming.bound.len(), "consuming room events from the broker over AMQP 1.0");
        Ok(Box::pin(stream::unfold(
            Some(consuming),
            |consuming| async move {
                let mut consuming = consuming?;
                match consuming.next().await {
                    Ok(event) => Some((Ok(event), Some(consuming))),
                    // The stream ends after its first error; the supervisor calls `events` again.
                    Err(error) => {
                        consuming.failed(&error);
                        Some((Err(error), None))
                    }
                }
            },
        )))
    }

    fn health(&self) -> Result<&'static str, String> {
        match &*self.health.lock().expect("health poisoned") {
            Ok(status) if status.connected() => Ok("amqp10"),
            Ok(_) => Err("the broker connection was lost; reconnecting".to_string()),
            Err(reason) => Err(reason.clone()),
        }
    }
}

/// The state behind one event stream: its session, receiver and bindings.
struct Consuming {
    _guard: OwnedMutexGuard<()>,
    exchange: String,
    queue: ShortString,
    channel: Channel,
    topology_check: tokio::time::Interval,
    receiver: Receiver,
    /// Dropping it ends the session, which detaches the receiver and so deletes the queue.
    _session: SessionHandle<()>,
    subscriptions: Arc<Subscriptions>,
    health: Arc<Mutex<Result<ConnectionStatus, String>>>,
    bound: HashSet<i64>,
    /// The delivery last handed out.
    unaccepted: Option<DeliveryInfo>,
}

impl Drop for Consuming {
    fn drop(&mut self) {
        self.subscriptions.clear_bound();
    }
}

impl Consuming {
    async fn next(&mut self) -> Result<RoomEvent, TransportError> {
        // Accepted when the subscriber polls again: it hands each event to the hub
        // synchronously before polling, so accepting means the event reached the local
        // sockets' queues.
        if let Some(delivery) = self.unaccepted.take() {
            bounded("accept", self.receiver.accept(delivery)).await?;
        }
        loop {
            let delivery = tokio::select! {
                _ = self.subscriptions.changed() => {
                    self.apply_room_changes().await?;
                    continue;
                }
                _ = self.topology_check.tick() => {
                    if !self.channel.status().connected() {
                        return Err(TransportError::Other(
                            "the AMQP 0-9-1 connection for bindings was lost".to_string(),
                        ));
                    }
                    continue;
                }
                delivery = self.receiver.recv::<Body<Value>>() => delivery.map_err(|e| {
                    TransportError::Other(format!("broker receiver failed: {e}"))
                })?,
            };
            match decode(&delivery) {
                Ok(event) => {
                    self.unaccepted = Some(DeliveryInfo::from(&delivery));
                    return Ok(event);
                }
                Err(error) => {
                    tracing::warn!(%error, "dropping an undecodable broker message");
                    bounded("reject", self.receiver.reject(&delivery, None)).await?;
                }
            }
        }
    }

    /// Events no longer flow until `events` runs again.
    fn failed(&self, error: &TransportError) {
        *self.health.lock().expect("health poisoned") = Err(format!(
            "the broker event stream failed ({error}); reconnecting"
        ));
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
                        routing_key(room).into(),
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

/// The event in a delivery's `data` sections (how both AMQP 1.0 and 0-9-1 publishers'
/// bodies arrive).
fn decode(delivery: &Delivery<Body<Value>>) -> Result<RoomEvent, String> {
    match delivery.body() {
        Body::Data(sections) => {
            let bytes: Vec<u8> = sections
                .iter()
                .flat_map(|section| section.0.iter().copied())
                .collect();
            RoomEvent::decode(&bytes).map_err(|e| e.to_string())
        }
        _ => Err("the body is not a data section".to_string()),
    }
}

/// The `version` RabbitMQ announces in its AMQP 1.0 `open` frame, found in the bytes the
/// broker sent first: protocol headers, SASL frames, then `open` as the first AMQP frame.
/// Public for the fuzz targets: these bytes come from the network.
pub fn broker_version(mut bytes: &[u8]) -> Option<String> {
    loop {
        if let Some(rest) = bytes.strip_prefix(b"AMQP") {
            bytes = rest.get(4..)?;
            continue;
        }
        let size = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        if size < 8 {
            return None;
        }
        let frame = bytes.get(..size)?;
        let (data_offset, kind) = (usize::from(frame[4]) * 4, frame[5]);
        // Type 0 is an AMQP frame (1 is SASL); the first one with a body is `open`.
        if kind == 0 && size > data_offset {
            return version_property(frame.get(data_offset..)?);
        }
        bytes = &bytes[size..];
    }
}

/// The `version` entry of an `open` performative's properties: the symbol `version` followed
/// by a string or symbol. Scanned for rather than decoded: a decoder (serde_amqp) allocates
/// whatever length the bytes declare before checking they are there, up to 4 GiB.
fn version_property(open: &[u8]) -> Option<String> {
    // The descriptor of `open`: 0x10 as a smallulong or a ulong.
    const OPEN: [&[u8]; 2] = [b"\x00\x53\x10", b"\x00\x80\0\0\0\0\0\0\0\x10"];
    const KEYS: [&[u8]; 2] = [b"\xa3\x07version", b"\xb3\0\0\0\x07version"];
    if !OPEN.iter().any(|d| open.starts_with(d)) {
        return None;
    }
    let value = KEYS.iter().find_map(|key| {
        let at = open.windows(key.len()).position(|w| w == *key)?;
        open.get(at + key.len()..)
    })?;
    // str8 / sym8 have a one-byte length, str32 / sym32 a four-byte one.
    let (length, start): (usize, usize) = match value.first()? {
        0xa1 | 0xa3 => (usize::from(*value.get(1)?), 2),
        0xb1 | 0xb3 => (
            u32::from_be_bytes(value.get(1..5)?.try_into().ok()?) as usize,
            5,
        ),
        _ => return None,
    };
    let text = value.get(start..start.checked_add(length)?)?;
    String::from_utf8(text.to_vec()).ok()
}

/// Copies the first bytes read from the broker aside, for [`broker_version`].
#[derive(Debug)]
struct Sniffing {
    inner: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Sniffing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let mut seen = self.seen.lock().expect("sniffed bytes poisoned");
        let room = SNIFF_LIMIT.saturating_sub(seen.len());
        let new = &buf.filled()[before..];
        seen.extend_from_slice(&new[..new.len().min(room)]);
        polled
    }
}

impl AsyncWrite for Sniffing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
            routing_key(room).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

fn routing_key(room: i64) -> String {
    format!("room.{room}")
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
async fn bounded<T, E: Display>(
    what: &str,
    operation: impl Future<Output = Result<T, E>>,
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
    use fe2o3_amqp::types::performatives::{ChannelMax, MaxFrameSize, Open};
    use lapin::options::ExchangeDeleteOptions;

    use super::*;
    use crate::transport::amqp091::Amqp091Transport;
    use crate::transport::testing::{
        self, event, sorted, BrokerConnection, Rabbitmqctl, Subscriber, WAIT,
    };

    /// A RabbitMQ 3.x broker (with its AMQP 1.0 plugin) and a 4.x one; each broker test runs
    /// once against each (`<test>::rabbitmq_3`, `<test>::rabbitmq_4`).
    const RABBITMQ_3: &str = "CHATNODE_TEST_AMQP_URL";
    const RABBITMQ_4: &str = "CHATNODE_TEST_AMQP4_URL";

    macro_rules! on_both_brokers {
        ($test:ident) => {
            mod $test {
                #[tokio::test]
                async fn rabbitmq_3() {
                    super::$test(super::RABBITMQ_3).await;
                }

                #[tokio::test]
                async fn rabbitmq_4() {
                    super::$test(super::RABBITMQ_4).await;
                }
            }
        };
    }

    /// Runs `test(broker_url, exchange)` against a fresh exchange on the broker named by the
    /// environment variable `broker`, or skips without one.
    async fn with_exchange<F, Fut>(broker: &str, test: F)
    where
        F: FnOnce(String, String) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(url) = testing::broker_url(broker) else {
            return;
        };
        testing::with_exchange(url, test).await;
    }

    fn node_with(url: &str, exchange: &str, addressing: Amqp10Addressing) -> Arc<Amqp10Transport> {
        let id = format!("test-{}", uuid::Uuid::new_v4().simple());
        Arc::new(Amqp10Transport::new(url, exchange, &id, addressing).expect("valid URL"))
    }

    fn node(url: &str, exchange: &str) -> Arc<Amqp10Transport> {
        node_with(url, exchange, Amqp10Addressing::Auto)
    }

    async fn address_format(transport: &Amqp10Transport) -> Option<AddressFormat> {
        let link = transport.link.lock().await;
        link.events.as_ref().map(|(_, format)| *format)
    }

    async fn nodes_receive_only_the_rooms_they_subscribed(broker: &str) {
        with_exchange(broker, |url, exchange| async move {
            let (a, b) = (node(&url, &exchange), node(&url, &exchange));
            let mut sub_a = Subscriber::start(&a).await;
            let mut sub_b = Subscriber::start(&b).await;
            for (transport, room) in [(&a, 1), (&a, 2), (&b, 2), (&b, 3)] {
                transport.subscribe(room).await.expect("bound");
            }
            assert_eq!(a.health(), Ok("amqp10"));
            for room in [1, 2] {
                sub_a.settle(&a, room).await;
            }
            for room in [2, 3] {
                sub_b.settle(&b, room).await;
            }
            // No node listens to room 9: the broker takes the event all the same.
            a.publish(event(9, "nobody listens"))
                .await
                .expect("an event for nobody is taken");
            // Each publisher ends with room 2, which both nodes receive: one publisher's
            // messages reach a queue in order, so its room-2 event fences the ones before it.
            for (room, message) in [(3, "a3"), (1, "a1"), (2, "a2")] {
                a.publish(event(room, message)).await.expect("a publishes");
            }
            // b publishes as the relay does: one pipelined batch, with an event for a room
            // nobody listens to among the others.
            let batch = [(1, "b1"), (9, "b-nobody"), (3, "b3"), (2, "b2")]
                .map(|(room, message)| event(room, message));
            b.publish_batch(batch.to_vec())
                .await
                .expect("b publishes a batch");
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
    on_both_brokers!(nodes_receive_only_the_rooms_they_subscribed);

    async fn addresses_follow_the_broker_version(broker: &str) {
        with_exchange(broker, |url, exchange| async move {
            let a = node(&url, &exchange);
            a.publish(event(1, "connect")).await.expect("a publishes");
            let expected = if broker == RABBITMQ_4 {
                AddressFormat::V2
            } else {
                AddressFormat::V1
            };
            assert_eq!(address_format(&a).await, Some(expected));
        })
        .await;
    }
    on_both_brokers!(addresses_follow_the_broker_version);

    /// RabbitMQ 4 still accepts v1 addresses unless the deprecated feature is denied.
    #[tokio::test]
    async fn forced_v1_addresses_work_on_rabbitmq_4() {
        with_exchange(RABBITMQ_4, |url, exchange| async move {
            let (a, b) = (
                node_with(&url, &exchange, Amqp10Addressing::V1),
                node(&url, &exchange),
            );
            let mut sub_a = Subscriber::start(&a).await;
            a.subscribe(1).await.expect("bound");
            sub_a.settle(&b, 1).await;
            assert_eq!(address_format(&a).await, Some(AddressFormat::V1));
            assert_eq!(address_format(&b).await, Some(AddressFormat::V2));
            a.publish(event(1, "over v1")).await.expect("a publishes");
            b.publish(event(1, "over v2")).await.expect("b publishes");
            assert_eq!(
                sub_a.until(&["over v1", "over v2"]).await,
                sorted(&[(1, "over v1"), (1, "over v2")])
            );
        })
        .await;
    }

    async fn unsubscribed_rooms_stop_arriving_and_can_come_back(broker: &str) {
        with_exchange(broker, |url, exchange| async move {
            let (a, b) = (node(&url, &exchange), node(&url, &exchange));
            testing::unsubscribe_then_resubscribe(&a, &b).await;
        })
        .await;
    }
    on_both_brokers!(unsubscribed_rooms_stop_arriving_and_can_come_back);

    /// The node's two connections as the broker shows them.
    async fn connections_of(
        rabbitmqctl: &Rabbitmqctl,
        transport: &Amqp10Transport,
    ) -> Option<Vec<BrokerConnection>> {
        rabbitmqctl
            .connections_of(&transport.connection_name(), &transport.queue)
            .await
    }

    async fn reconnects_and_rebinds_after_the_broker_closes_the_connections(broker: &str) {
        with_exchange(broker, |url, exchange| async move {
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
            let Some(before) = connections_of(&rabbitmqctl, &a).await else {
                eprintln!("skipping: rabbitmqctl is not available for {broker}");
                return;
            };
            // One AMQP 0-9-1 connection for the topology, one AMQP 1.0 for the events.
            assert_eq!(before.len(), 2, "node a's connections: {before:?}");
            // Only this test's connections: closing all would break tests running alongside.
            for transport in [&a, &b] {
                let connections = connections_of(&rabbitmqctl, transport).await;
                for connection in connections.expect("rabbitmqctl works") {
                    if !rabbitmqctl.cut(a.uri.authority.port, &connection).await {
                        eprintln!("skipping: cannot end {connection:?} here");
                        return;
                    }
                }
            }
            // Kept consuming while the broker lists the new connections.
            let _streams =
                testing::recover_after_connection_loss(&a, &b, (sub_a, sub_b), "amqp10").await;
            let after = connections_of(&rabbitmqctl, &a)
                .await
                .expect("rabbitmqctl works");
            assert_eq!(after.len(), 2, "node a reconnected once: {after:?}");
            assert!(
                after.iter().all(|c| !before.contains(c)),
                "both connections are new: {before:?} then {after:?}"
            );
        })
        .await;
    }
    on_both_brokers!(reconnects_and_rebinds_after_the_broker_closes_the_connections);

    async fn amqp091_and_amqp10_nodes_share_an_exchange(broker: &str) {
        with_exchange(broker, |url, exchange| async move {
            let a = node(&url, &exchange);
            let id = format!("test-{}", uuid::Uuid::new_v4().simple());
            let b = Arc::new(Amqp091Transport::new(&url, &exchange, &id).expect("valid URL"));
            let mut sub_a = Subscriber::start(&a).await;
            let mut sub_b = Subscriber::start(&b).await;
            for room in [1, 2] {
                a.subscribe(room).await.expect("bound");
            }
            for room in [1, 3] {
                b.subscribe(room).await.expect("bound");
            }
            // Each node settles on the other's events, so both directions work from here.
            for room in [1, 2] {
                sub_a.settle(&b, room).await;
            }
            for room in [1, 3] {
                sub_b.settle(&a, room).await;
            }
            for (room, message) in [(3, "a3"), (2, "a2"), (1, "a1")] {
                a.publish(event(room, message)).await.expect("a publishes");
            }
            for (room, message) in [(2, "b2"), (3, "b3"), (1, "b1")] {
                b.publish(event(room, message)).await.expect("b publishes");
            }
            assert_eq!(
                sub_a.until(&["a1", "b1"]).await,
                sorted(&[(1, "a1"), (1, "b1"), (2, "a2"), (2, "b2")])
            );
            assert_eq!(
                sub_b.until(&["a1", "b1"]).await,
                sorted(&[(1, "a1"), (1, "b1"), (3, "a3"), (3, "b3")])
            );
        })
        .await;
    }
    on_both_brokers!(amqp091_and_amqp10_nodes_share_an_exchange);

    async fn publishing_fails_when_the_broker_does_not_take_the_event(broker: &str) {
        with_exchange(broker, |url, exchange| async move {
            let a = node(&url, &exchange);
            a.publish(event(1, "taken")).await.expect("a publishes");
            let channel = {
                let link = a.link.lock().await;
                link.topology.as_ref().expect("connected").1.clone()
            };
            bounded(
                "delete the exchange",
                channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()),
            )
            .await
            .expect("exchange deleted");
            // v2 rejects the message; v1 ends the session. Either way the event is not taken.
            let published = timeout(WAIT, a.publish(event(1, "lost"))).await;
            let error = published.expect("in time").expect_err("nowhere to go");
            eprintln!("publish failed as expected: {error}");
        })
        .await;
    }
    on_both_brokers!(publishing_fails_when_the_broker_does_not_take_the_event);

    #[tokio::test]
    async fn unreachable_broker_fails_fast_and_reports_it() {
        // Nothing listens on port 1: construction works, every use fails in bounded time.
        let transport = Amqp10Transport::new(
            "amqp://guest:guest@127.0.0.1:1/%2f",
            "x",
            "n",
            Amqp10Addressing::Auto,
        )
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
        for url in ["not a url", "amqps://guest:guest@127.0.0.1/%2f"] {
            assert!(Amqp10Transport::new(url, "x", "n", Amqp10Addressing::Auto).is_err());
        }
    }

    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let size = u32::try_from(8 + body.len()).expect("small frame");
        let mut frame = size.to_be_bytes().to_vec();
        frame.extend_from_slice(&[2, kind, 0, 0]);
        frame.extend_from_slice(body);
        frame
    }

    #[test]
    fn the_broker_version_is_read_from_its_open_frame() {
        let mut properties = Fields::new();
        properties.insert(Symbol::from("product"), Value::String("RabbitMQ".into()));
        properties.insert(Symbol::from("version"), Value::String("4.0.5".into()));
        let open = Open {
            container_id: "rabbit@host".into(),
            hostname: None,
            max_frame_size: MaxFrameSize::default(),
            channel_max: ChannelMax::default(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: Some(properties),
        };
        let mut bytes = b"AMQP\x03\x01\x00\x00".to_vec();
        bytes.extend(frame(1, b"sasl-mechanisms"));
        bytes.extend(frame(1, b"sasl-outcome"));
        bytes.extend(b"AMQP\x00\x01\x00\x00");
        let open_frame = frame(0, &serde_amqp::to_vec(&open).expect("encodes"));
        bytes.extend(&open_frame);
        assert_eq!(broker_version(&bytes).as_deref(), Some("4.0.5"));
        // Cut short (the limit was reached) or garbled: unknown, never a panic.
        assert_eq!(broker_version(&bytes[..bytes.len() - 3]), None);
        assert_eq!(
            broker_version(b"AMQP\x00\x01\x00\x00\x00\x00\x00\x02"),
            None
        );
        assert_eq!(broker_version(b""), None);
        // A length no frame holds (4 GiB here) is refused, not allocated.
        let mut huge = b"AMQP\x00\x01\x00\x00\0\0\0\x1e\x02\0\0\0".to_vec();
        huge.extend(b"\x00\x53\x10\xa3\x07version\xb1\xff\xff\xff\xff4.0.5");
        assert_eq!(huge.len(), 8 + 0x1e);
        assert_eq!(broker_version(&huge), None);
    }

    #[test]
    fn rabbitmq_4_gets_v2_addresses_and_older_or_unknown_versions_v1() {
        for (version, format) in [
            (Some("3.10.8"), AddressFormat::V1),
            (Some("3.13.7"), AddressFormat::V1),
            (Some("4.0.5"), AddressFormat::V2),
            (Some("4.1.0-beta.1"), AddressFormat::V2),
            (Some("garbage"), AddressFormat::V1),
            (None, AddressFormat::V1),
        ] {
            assert_eq!(AddressFormat::for_version(version), format, "{version:?}");
        }
        let message = AddressFormat::V2.message("chat room", 7, b"{}".to_vec());
        let properties = message.properties.expect("properties");
        assert_eq!(
            properties.to.as_deref(),
            Some("/exchanges/chat%20room/room.7")
        );
        let message = AddressFormat::V1.message("chat", 7, b"{}".to_vec());
        assert_eq!(
            message.properties.expect("properties").subject.as_deref(),
            Some("room.7")
        );
        assert_eq!(
            AddressFormat::V2.queue_source("chatnode.x.node/1"),
            "/queues/chatnode.x.node%2F1"
        );
        assert_eq!(AddressFormat::V1.queue_source("q"), "/amq/queue/q");
    }
}
