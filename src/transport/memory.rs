//! The in-process bus: publish hands the event straight to this node's subscriber.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::stream;
use tokio::sync::mpsc;

use super::{EventStream, RoomEvent, Transport, TransportError};

/// Events waiting for the subscriber; publishers wait when it is this far behind.
const CAPACITY: usize = 65_536;

pub struct MemoryTransport {
    sender: mpsc::Sender<RoomEvent>,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<RoomEvent>>>,
    rooms: Mutex<HashSet<i64>>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        Self {
            sender,
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            rooms: Mutex::new(HashSet::new()),
        }
    }
}

impl MemoryTransport {
    fn serves(&self, room: i64) -> bool {
        self.rooms.lock().expect("rooms poisoned").contains(&room)
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn publish(&self, event: RoomEvent) -> Result<(), TransportError> {
        // Rooms without local sockets have no one to deliver to.
        if !self.serves(event.chat_id) {
            return Ok(());
        }
        self.sender
            .send(event)
            .await
            .map_err(|_| TransportError::Closed)
    }

    async fn signal(&self, event: RoomEvent) -> Result<(), TransportError> {
        if !self.serves(event.chat_id) {
            return Ok(());
        }
        // Never waits: a signal the subscriber has no room for is stale by the time it would.
        self.sender.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TransportError::Congested,
            mpsc::error::TrySendError::Closed(_) => TransportError::Closed,
        })
    }

    async fn subscribe(&self, room: i64) -> Result<(), TransportError> {
        self.rooms.lock().expect("rooms poisoned").insert(room);
        Ok(())
    }

    fn unsubscribe(&self, room: i64) {
        self.rooms.lock().expect("rooms poisoned").remove(&room);
    }

    async fn events(&self) -> Result<EventStream, TransportError> {
        // The guard travels with the stream, so a subscriber that dies releases the receiver
        // and its replacement resumes where it stopped.
        let guard = self
            .receiver
            .clone()
            .try_lock_owned()
            .map_err(|_| TransportError::Busy)?;
        Ok(Box::pin(stream::unfold(guard, |mut guard| async move {
            let event = guard.recv().await?;
            Some((Ok(event), guard))
        })))
    }

    fn health(&self) -> Result<&'static str, String> {
        Ok("memory")
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::transport::EventKind;

    fn event(room: i64) -> RoomEvent {
        RoomEvent {
            kind: EventKind::Message,
            chat_id: room,
            id: Some(1),
            message: "hi".into(),
            sender: "a".into(),
            sender_id: Some(1),
            user_id: None,
            file: None,
            created_at: "now".into(),
            upto: None,
            direct: false,
            request_id: None,
            last_seen: None,
            seq: None,
            edited_at: None,
            deleted: false,
            reply_to: None,
            online_count: None,
            emoji: None,
            reactions: None,
        }
    }

    #[tokio::test]
    async fn delivers_only_subscribed_rooms_and_resumes_after_a_dropped_stream() {
        let bus = MemoryTransport::default();
        bus.subscribe(1).await.unwrap();
        bus.publish(event(2)).await.unwrap();
        bus.publish(event(1)).await.unwrap();
        let mut events = bus.events().await.unwrap();
        assert!(matches!(bus.events().await, Err(TransportError::Busy)));
        assert_eq!(events.next().await.unwrap().unwrap().chat_id, 1);
        drop(events);
        bus.publish(event(1)).await.unwrap();
        let mut again = bus.events().await.unwrap();
        assert_eq!(again.next().await.unwrap().unwrap().chat_id, 1);
    }
}
