//! What the transport suite's cases share: events to publish, a subscriber forwarding one
//! event stream, probes that wait for bindings.

use std::sync::Arc;
use std::time::Duration;

use chatnode::transport::{EventKind, RoomEvent, Transport};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

pub const WAIT: Duration = Duration::from_secs(15);
pub const PROBE: &str = "probe";

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
