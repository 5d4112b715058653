//! The AMQP 0-9-1 topology both broker transports use: a durable topic exchange shared by
//! all nodes, routing key `room.<id>`, and per node a queue bound to `room.<id>` while the
//! node has sockets in that room. Also the timeouts bounding every broker round trip.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::time::timeout;

use super::rooms::Subscriptions;
use crate::transport::{TransportError, SIGNAL_TIMEOUT};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on every broker round trip (declare, bind, attach, publish confirm, ...).
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a whole publish, including waiting for a reconnection another caller started.
pub(super) const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed connection attempt, callers fail fast for this long instead of queueing
/// up behind one another, each waiting for its own attempt.
pub(super) const RECONNECT_COOLDOWN: Duration = Duration::from_secs(1);

/// Publishes a signal only on a connected transport (a signal is not worth a socket task's
/// wait for a reconnection) and within [`SIGNAL_TIMEOUT`].
pub(super) async fn signal_within_bound(
    connected: bool,
    publish: impl Future<Output = Result<(), TransportError>>,
) -> Result<(), TransportError> {
    if !connected {
        return Err(TransportError::Closed);
    }
    timeout(SIGNAL_TIMEOUT, publish)
        .await
        .map_err(|_| TransportError::Timeout {
            what: "publish a signal",
            within: SIGNAL_TIMEOUT,
        })?
}

/// The header (0-9-1) or application property (1.0) that carries an event's request id.
pub(super) const REQUEST_ID_PROPERTY: &str = "x-request-id";

pub(super) fn routing_key(room: i64) -> String {
    format!("room.{room}")
}

/// Opens an AMQP 0-9-1 connection named `name` (how rabbitmqctl lists it).
pub(super) async fn connect(uri: &AMQPUri, name: String) -> Result<Connection, TransportError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match timeout(
        CONNECT_TIMEOUT,
        Connection::connect_uri(uri.clone(), properties),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(TransportError::Broker {
            what: "AMQP 0-9-1",
            source: Arc::new(e),
        }),
        Err(_) => Err(TransportError::Timeout {
            what: "AMQP 0-9-1",
            within: CONNECT_TIMEOUT,
        }),
    }
}

pub(super) async fn declare_exchange(
    channel: &Channel,
    exchange: &str,
) -> Result<(), TransportError> {
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
pub(super) async fn bounded<T, E>(
    what: &'static str,
    operation: impl Future<Output = Result<T, E>>,
) -> Result<T, TransportError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match timeout(OPERATION_TIMEOUT, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(TransportError::Broker {
            what,
            source: Arc::new(e),
        }),
        Err(_) => Err(TransportError::Timeout {
            what,
            within: OPERATION_TIMEOUT,
        }),
    }
}

/// One event stream's queue and the rooms bound on it, kept in step with `subscriptions`.
pub(super) struct Bindings {
    pub(super) channel: Channel,
    pub(super) exchange: String,
    pub(super) queue: ShortString,
    subscriptions: Arc<Subscriptions>,
    bound: HashSet<i64>,
}

impl Drop for Bindings {
    fn drop(&mut self) {
        // The queue dies with its stream: nothing is bound until `events` runs again.
        self.subscriptions.clear_bound();
    }
}

impl Bindings {
    /// Binds `wanted` (from [`Subscriptions::rebind_all`]) on a fresh queue.
    pub(super) async fn bind_all(
        channel: Channel,
        exchange: &str,
        queue: ShortString,
        subscriptions: Arc<Subscriptions>,
        wanted: HashSet<i64>,
    ) -> Result<Self, TransportError> {
        let mut bindings = Self {
            channel,
            exchange: exchange.to_string(),
            queue,
            subscriptions,
            bound: HashSet::new(),
        };
        for &room in &wanted {
            bindings.bind(room).await?;
        }
        for &room in &wanted {
            bindings.subscriptions.set_bound(room);
        }
        bindings.bound = wanted;
        Ok(bindings)
    }

    pub(super) fn rooms(&self) -> usize {
        self.bound.len()
    }

    async fn bind(&self, room: i64) -> Result<(), TransportError> {
        bounded(
            "bind a room",
            self.channel.queue_bind(
                self.queue.clone(),
                self.exchange.as_str().into(),
                routing_key(room).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
    }

    /// Binds and unbinds what `subscribe` and `unsubscribe` changed since the last call.
    pub(super) async fn apply_room_changes(&mut self) -> Result<(), TransportError> {
        for (room, wanted) in self.subscriptions.take_changes() {
            if wanted && !self.bound.contains(&room) {
                self.bind(room).await?;
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

    /// Resolves when `subscribe` or `unsubscribe` left changes to apply.
    pub(super) async fn changed(&self) {
        self.subscriptions.changed().await
    }
}
