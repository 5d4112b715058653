//! Consuming over AMQP 1.0: the node's queue (recreated for each event stream), a receiver
//! attached to it on a session of its own, and the stream handing out its events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::CreditMode;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Delivery, Receiver, Session};
use futures_util::stream;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ConnectionStatus};
use tokio::sync::OwnedMutexGuard;

use super::Amqp10Transport;
use crate::transport::amqp::topology::{bounded, declare_exchange, Bindings};
use crate::transport::{EventStream, RoomEvent, TransportError};

/// Unsettled deliveries the broker may push to this node (the receiver's link credit).
const PREFETCH: u32 = 256;
/// How often the event stream checks the AMQP 0-9-1 connection, which it otherwise only
/// uses when a room changes: without it, bindings could not follow `subscribe` until then.
const TOPOLOGY_CHECK: Duration = Duration::from_secs(1);
/// A queue whose receiver never attached (the node died in between) is deleted after this
/// long unused; one with a receiver goes when the receiver does.
const QUEUE_EXPIRES: Duration = Duration::from_secs(60);

impl Amqp10Transport {
    /// Recreates the node's queue (reconnecting if needed), attaches a receiver to it on a
    /// session of its own and binds every wanted room, so calling it again after a failure
    /// restores everything.
    pub(super) async fn open_events(&self) -> Result<EventStream, TransportError> {
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
        fresh_queue(&channel, &queue).await?;
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
        let bindings = Bindings::bind_all(
            channel,
            &self.exchange,
            queue,
            self.subscriptions.clone(),
            wanted,
        )
        .await?;
        let consuming = Consuming {
            bindings,
            _guard: guard,
            topology_check: tokio::time::interval(TOPOLOGY_CHECK),
            receiver,
            _session: session,
            health: self.health.clone(),
            unaccepted: None,
        };
        tracing::info!(queue = %self.queue, rooms = consuming.bindings.rooms(), "consuming room events from the broker over AMQP 1.0");
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
}

/// Deletes and declares the node's queue: one left from an earlier stream may still carry
/// bindings of rooms unsubscribed since, and its auto-delete may still be on the way.
async fn fresh_queue(channel: &Channel, queue: &ShortString) -> Result<(), TransportError> {
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
    Ok(())
}

/// The state behind one event stream: its session, receiver and bindings.
struct Consuming {
    /// First, so the bindings are cleared before the guard lets a new stream start.
    bindings: Bindings,
    _guard: OwnedMutexGuard<()>,
    topology_check: tokio::time::Interval,
    receiver: Receiver,
    /// Dropping it ends the session, which detaches the receiver and so deletes the queue.
    _session: SessionHandle<()>,
    health: Arc<Mutex<Result<ConnectionStatus, String>>>,
    /// The delivery last handed out.
    unaccepted: Option<DeliveryInfo>,
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
                _ = self.bindings.changed() => {
                    self.bindings.apply_room_changes().await?;
                    continue;
                }
                _ = self.topology_check.tick() => {
                    if !self.bindings.channel.status().connected() {
                        return Err(TransportError::TopologyLost);
                    }
                    continue;
                }
                delivery = self.receiver.recv::<Body<Value>>() => delivery.map_err(|e| {
                    TransportError::Broker { what: "broker receiver", source: Arc::new(e) }
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
            "the broker event stream failed ({}); reconnecting",
            error.chain()
        ));
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
