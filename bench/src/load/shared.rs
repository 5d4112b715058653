//! The state every task of a run shares, and how a text frame on a socket is accounted.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::receipts::{ReceiptCounter, ReceiptKind};
use super::unix_nanos;
use crate::histogram::Histogram;
use crate::ledger::{self, Accepted, Delivery, Plan, Tally};

/// Error messages kept for the report.
const ERROR_SAMPLES: usize = 5;

/// What every task of a run shares.
pub(super) struct Shared {
    pub(super) plan: Plan,
    pub(super) run: u32,
    pub(super) stop: CancellationToken,
    pub(super) latency: Histogram,
    pub(super) accepted: Accepted,
    pub(super) sent: AtomicU64,
    pub(super) accepted_count: AtomicU64,
    pub(super) send_errors: AtomicU64,
    pub(super) socket_closes: AtomicU64,
    /// Fresh deliveries over all receivers.
    pub(super) delivered: AtomicU64,
    pub(super) last_delivery_unix: AtomicU64,
    /// Receipt frames on every socket of the run, by kind.
    pub(super) receipts: ReceiptCounter,
    /// `mark_read` frames written by receivers.
    pub(super) reads_sent: AtomicU64,
    /// Error frames (`success: false`) on receivers' sockets: a refused `mark_read`.
    pub(super) refused_frames: AtomicU64,
    pub(super) samples: Mutex<Vec<String>>,
}

impl Shared {
    pub(super) fn new(plan: Plan, run: u32) -> Self {
        Self {
            plan,
            run,
            stop: CancellationToken::new(),
            latency: Histogram::default(),
            accepted: Accepted::new(plan.messages),
            sent: AtomicU64::new(0),
            accepted_count: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            socket_closes: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            last_delivery_unix: AtomicU64::new(0),
            receipts: ReceiptCounter::default(),
            reads_sent: AtomicU64::new(0),
            refused_frames: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn sample(&self, error: String) {
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() < ERROR_SAMPLES {
                samples.push(error);
            }
        }
    }

    pub(super) fn send_error(&self, error: String) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        self.sample(error);
    }

    pub(super) fn socket_closed(&self, what: String) {
        self.socket_closes.fetch_add(1, Ordering::Relaxed);
        self.sample(what);
    }

    pub(super) fn accept(&self, seq: u64) {
        self.accepted.insert(seq);
        self.accepted_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Accounts one text frame at a receiver of room `room_id`; returns the message id of a
    /// fresh delivery.
    pub(super) fn take_frame(&self, text: &str, room_id: i64, tally: &mut Tally) -> Option<i64> {
        let received = unix_nanos();
        let frame = match serde_json::from_str::<Frame>(text) {
            Ok(Frame {
                success: Some(false),
                ..
            }) => {
                self.refused_frames.fetch_add(1, Ordering::Relaxed);
                self.sample(format!("room {room_id}: refused: {text:.200}"));
                return None;
            }
            Ok(Frame {
                data: Some(data), ..
            }) => data,
            _ => {
                tally.malformed += 1;
                self.sample(format!("room {room_id}: unexpected frame {text:.200}"));
                return None;
            }
        };
        if let Some(kind) = ReceiptKind::of(&frame) {
            if frame.chat_id != Some(room_id) {
                tally.foreign += 1;
                self.sample(format!(
                    "room {room_id}: another room's receipt {text:.200}"
                ));
            }
            self.receipts.count(kind);
            return None;
        }
        let Some(stamp) = frame.message.as_deref().and_then(ledger::parse_content) else {
            if frame.event.as_deref() == Some("message") {
                tally.foreign += 1;
            }
            return None;
        };
        if frame.id.is_none() || frame.chat_id != Some(room_id) || frame.created_at.is_none() {
            tally.malformed += 1;
            self.sample(format!(
                "room {room_id}: frame without id, chat_id or created_at: {text:.200}"
            ));
        }
        if let Some(id) = frame.id {
            tally.note_id(id);
        }
        if tally.record(&stamp) == Delivery::Fresh {
            self.latency
                .record(received.saturating_sub(stamp.sent_unix_nanos) / 1_000);
            self.delivered.fetch_add(1, Ordering::Relaxed);
            self.last_delivery_unix
                .fetch_max(received, Ordering::Relaxed);
            return frame.id;
        }
        None
    }

    /// Counts a receipt frame on a WebSocket sender's socket (which gets its rooms' frames).
    pub(super) fn take_sender_frame(&self, text: &str) {
        // Most frames there are messages: parse only what may be a receipt.
        if !text.contains("receipt") {
            return;
        }
        if let Ok(Frame {
            data: Some(data), ..
        }) = serde_json::from_str::<Frame>(text)
        {
            if let Some(kind) = ReceiptKind::of(&data) {
                self.receipts.count(kind);
            }
        }
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    success: Option<bool>,
    #[serde(borrow)]
    data: Option<FrameData<'a>>,
}

#[derive(Deserialize)]
pub(super) struct FrameData<'a> {
    #[serde(borrow)]
    pub(super) purpose: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    id: Option<i64>,
    chat_id: Option<i64>,
    created_at: Option<IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::load::ReceiptFrames;

    #[test]
    fn receipt_frames_are_counted_apart_from_deliveries_and_refusals_are_errors() {
        let plan = Plan {
            rooms: 1,
            senders: 1,
            messages: 2,
        };
        let shared = Shared::new(plan, 5);
        let mut tally = Tally::new(plan, 5, 0);
        for frame in [
            r#"{"data":{"purpose":"receipts","chat_id":42,"positions":[{"user_id":1,"delivered_upto":0,"read_upto":0}]}}"#,
            r#"{"data":{"purpose":"receipt","event":"delivered","chat_id":42,"user_id":1,"upto":7}}"#,
            r#"{"data":{"purpose":"receipt","event":"read","chat_id":42,"user_id":1,"upto":7}}"#,
            r#"{"data":{"purpose":"receipt","event":"read","chat_id":42,"user_id":2,"upto":7}}"#,
            r#"{"data":{"purpose":"receipt","event":"typing","chat_id":42,"user_id":1}}"#,
        ] {
            assert_eq!(shared.take_frame(frame, 42, &mut tally), None, "{frame}");
        }
        let message = json!({"data": {
            "purpose": "new_chat_message", "event": "message", "id": 9, "chat_id": 42,
            "message": ledger::content(5, 0, unix_nanos(), 60), "created_at": "now",
            "delivered_count": 0, "read_count": 0,
        }})
        .to_string();
        assert_eq!(shared.take_frame(&message, 42, &mut tally), Some(9));
        let refused = r#"{"success":false,"errors":{"detail":"upto is above the newest message"}}"#;
        assert_eq!(shared.take_frame(refused, 42, &mut tally), None);
        assert_eq!(
            shared.receipts.counts(),
            ReceiptFrames {
                positions: 1,
                delivered: 1,
                read: 2,
                other: 1
            }
        );
        assert_eq!(shared.delivered.load(Ordering::Relaxed), 1);
        assert_eq!(shared.refused_frames.load(Ordering::Relaxed), 1);
        assert_eq!(
            (tally.malformed, tally.foreign, tally.duplicates),
            (0, 0, 0)
        );
        // Another room's receipt is foreign, as another room's message would be.
        let other_room =
            r#"{"data":{"purpose":"receipt","event":"read","chat_id":43,"user_id":1,"upto":7}}"#;
        shared.take_frame(other_room, 42, &mut tally);
        assert_eq!(tally.foreign, 1);
        // A WebSocket sender's socket counts receipts and ignores messages.
        shared.take_sender_frame(&message);
        shared.take_sender_frame(
            r#"{"data":{"purpose":"receipt","event":"delivered","chat_id":42,"user_id":3,"upto":9}}"#,
        );
        assert_eq!(shared.receipts.counts().delivered, 2);
        assert_eq!(shared.receipts.counts().total(), 7);
    }
}
