//! Publishing over AMQP 1.0: a session and sender of the node's own, batches pipelined and
//! settled in one round trip.

use std::sync::Arc;

use fe2o3_amqp::link::SendError;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{ApplicationProperties, Data, Header, Message, Outcome};
use fe2o3_amqp::{Sendable, Sender, Session};
use tokio::time::error::Elapsed;
use tokio::time::timeout;

use super::address::AddressFormat;
use super::{Amqp10Transport, Link};
use crate::transport::amqp::topology::{
    bounded, declare_exchange, OPERATION_TIMEOUT, REQUEST_ID_PROPERTY,
};
use crate::transport::{Refusal, RoomEvent, TransportError, SIGNAL_TTL};

/// A session of its own for publishing: an attach error ends the whole session, and must not
/// take the consumer with it.
pub(super) struct Publisher {
    session: SessionHandle<()>,
    sender: Sender,
    format: AddressFormat,
}

impl Amqp10Transport {
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
    pub(super) async fn publish_settled(
        &self,
        events: Vec<RoomEvent>,
    ) -> Result<(), TransportError> {
        let mut publisher = self.publisher.lock().await;
        let live = self.ready(&mut publisher).await?;
        let started = std::time::Instant::now();
        let sent = Self::send_all(live, &self.exchange, &events).await;
        if let (Ok(()), Some(probe)) = (&sent, self.probe.get()) {
            probe.confirmed(started);
        }
        if sent.is_err() {
            // The link's state is unknown now: the next publish starts afresh.
            *publisher = None;
        }
        sent
    }

    /// Sends a signal pre-settled (the broker answers nothing, so nothing is awaited),
    /// non-durable and expiring after [`SIGNAL_TTL`].
    pub(super) async fn publish_signal(&self, event: RoomEvent) -> Result<(), TransportError> {
        let mut publisher = self.publisher.lock().await;
        let live = self.ready(&mut publisher).await?;
        let mut message = live
            .format
            .message(&self.exchange, event.chat_id, event.encode());
        let ttl = u32::try_from(SIGNAL_TTL.as_millis()).unwrap_or(u32::MAX);
        message.header = Some(Header::builder().durable(false).ttl(ttl).build());
        let sendable = Sendable::builder().message(message).settled(true).build();
        if let Err(e) = live.sender.send(sendable).await {
            *publisher = None;
            return Err(TransportError::Broker {
                what: "publish a signal",
                source: Arc::new(e),
            });
        }
        Ok(())
    }

    /// The live publisher, opened (with the connections, if they are gone) when it is not.
    async fn ready<'a>(
        &self,
        publisher: &'a mut Option<Publisher>,
    ) -> Result<&'a mut Publisher, TransportError> {
        // Also when the publisher is fine: publishing is what notices a lost connection
        // and reconnects it while the event stream is down.
        let mut link = self.link.lock().await;
        self.ensure_connected(&mut link).await?;
        if publisher.as_ref().is_none_or(|p| p.session.is_ended()) {
            *publisher = None;
            *publisher = Some(self.open_publisher(&mut link).await?);
        }
        publisher.as_mut().ok_or(TransportError::Closed)
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
            let message = traced(
                live.format.message(exchange, event.chat_id, event.encode()),
                event,
            );
            let delivery =
                match timeout(OPERATION_TIMEOUT, live.sender.send_batchable(message)).await {
                    Ok(Ok(delivery)) => delivery,
                    Ok(Err(e)) => {
                        return Err(TransportError::Broker {
                            what: "publish",
                            source: Arc::new(e),
                        })
                    }
                    Err(_) => {
                        return Err(TransportError::Timeout {
                            what: "publish (waiting for link credit)",
                            within: OPERATION_TIMEOUT,
                        })
                    }
                };
            pending.push((event.chat_id, delivery));
        }
        // The last transfer is not batchable: the broker settles it at once, and the batch
        // before it with it, instead of whenever it next has something to say.
        let message = traced(
            live.format.message(exchange, last.chat_id, last.encode()),
            last,
        );
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

/// The message with the request id of its event as the `x-request-id` application
/// property, for consumers that read properties rather than the body.
fn traced(mut message: Message<Data>, event: &RoomEvent) -> Message<Data> {
    if let Some(id) = &event.request_id {
        let properties = ApplicationProperties::builder().insert(REQUEST_ID_PROPERTY, id.as_str());
        message.application_properties = Some(properties.build());
    }
    message
}

/// Whether the broker took one published event, from its outcome.
fn taken(
    room: i64,
    answer: Result<Result<Outcome, SendError>, Elapsed>,
) -> Result<(), TransportError> {
    let outcome = match answer {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            return Err(TransportError::Broker {
                what: "publish",
                source: Arc::new(e),
            })
        }
        Err(_) => {
            return Err(TransportError::Timeout {
                what: "publish (waiting for its outcome)",
                within: OPERATION_TIMEOUT,
            })
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
        Outcome::Rejected(rejected) => Err(TransportError::NotTaken(Refusal::Rejected(
            rejected.error.map(|e| e.to_string()),
        ))),
        Outcome::Modified(_) => Err(TransportError::NotTaken(Refusal::Modified)),
    }
}
