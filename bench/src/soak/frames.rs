//! The text frames a user's socket gets: soak messages (told apart by their content),
//! receipts, echoes of its own sends and error frames, each accounted in the ledger.

use std::sync::atomic::Ordering;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::conn::ConnState;
use super::shared::Soak;
use crate::load::ReceiptKind;
use crate::soak_ledger::Reception;

const PREFIX: &str = "soak:";

/// `soak:<run>:<user>:<n>:` padded with `x` to `bytes`.
pub(super) fn content(run: u32, user: usize, n: u64, bytes: usize) -> String {
    let mut text = format!("{PREFIX}{run:08x}:{user}:{n}:");
    if text.len() < bytes {
        text.extend(std::iter::repeat_n('x', bytes - text.len()));
    }
    text
}

/// The run, user and number of a soak message.
fn parse_content(text: &str) -> Option<(u32, usize, u64)> {
    let mut parts = text.strip_prefix(PREFIX)?.splitn(4, ':');
    let run = u32::from_str_radix(parts.next()?, 16).ok()?;
    let user = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((run, user, n))
}

impl Soak {
    /// Accounts one text frame on `user`'s socket in `room`.
    pub(super) fn take_frame(&self, text: &str, user: usize, room: usize, conn: &ConnState) {
        let room_id = self.rooms[room];
        let frame = match serde_json::from_str::<Frame>(text) {
            Ok(frame) => frame,
            Err(_) => {
                self.ledger.track(user, room).malformed += 1;
                return self.error("frame: not JSON", format!("room {room_id}: {text}"));
            }
        };
        if frame.success == Some(false) {
            // The node refuses a send or a mark_read over the socket with an error frame on
            // that socket; a user waits for one of them at a time.
            if let Some(echo) = conn.take_echo() {
                let _ = echo.reply.send(Err(text.to_string()));
            } else if let Some(mark) = conn.take_mark() {
                let _ = mark.reply.send(Err(text.to_string()));
            } else {
                self.error("frame: unexpected error frame", text);
            }
            return;
        }
        let Some(data) = frame.data else {
            self.ledger.track(user, room).malformed += 1;
            return self.error("frame: no data", format!("room {room_id}: {text}"));
        };
        if let Some(kind) = ReceiptKind::classify(data.purpose.as_deref(), data.event.as_deref()) {
            return self.take_receipt(kind, &data, text, user, room, conn);
        }
        if data.event.as_deref() != Some("message") {
            return; // a join or leave notice
        }
        let stamp = data.message.as_deref().and_then(parse_content);
        let Some((_, sender, n)) = stamp.filter(|s| s.0 == self.run) else {
            self.ledger.track(user, room).foreign += 1;
            return;
        };
        let (Some(id), Some(room_id_sent), Some(_)) = (data.id, data.chat_id, data.created_at)
        else {
            self.ledger.track(user, room).malformed += 1;
            return self.error("frame: without id, chat_id or created_at", text);
        };
        if room_id_sent != room_id {
            self.ledger.track(user, room).foreign += 1;
            return self.error("frame: another room's message", text);
        }
        if self.ledger.track(user, room).receive(id) == Reception::Fresh {
            self.counters.deliveries.fetch_add(1, Ordering::Relaxed);
        }
        if sender == user {
            if let Some(echo) = conn.take_echo_of(n) {
                let _ = echo.reply.send(Ok(id));
            }
        }
    }

    /// Counts a receipt frame (never a delivery) and answers a `mark_read` waiting for the
    /// user's own read receipt.
    fn take_receipt(
        &self,
        kind: ReceiptKind,
        data: &FrameData,
        text: &str,
        user: usize,
        room: usize,
        conn: &ConnState,
    ) {
        self.counters.receipts.count(kind);
        let room_id = self.rooms[room];
        if data.chat_id != Some(room_id) {
            self.ledger.track(user, room).foreign += 1;
            return self.error("frame: another room's receipt", text);
        }
        let (Some(of), Some(upto)) = (data.user_id, data.upto) else {
            // The positions frame lists them inside; an event this bench does not know may
            // carry anything.
            if matches!(kind, ReceiptKind::Delivered | ReceiptKind::Read) {
                self.ledger.track(user, room).malformed += 1;
                self.error("frame: receipt without user_id or upto", text);
            }
            return;
        };
        if conn.note_position(of, kind, upto) {
            self.counters
                .receipts_moved_back
                .fetch_add(1, Ordering::Relaxed);
        }
        if kind == ReceiptKind::Read && of == self.user_ids[user] {
            if let Some(mark) = conn.take_mark_upto(upto) {
                let _ = mark.reply.send(Ok(upto));
            }
        }
    }
}

#[derive(Deserialize)]
struct Frame {
    success: Option<bool>,
    data: Option<FrameData>,
}

#[derive(Deserialize)]
struct FrameData {
    purpose: Option<String>,
    event: Option<String>,
    user_id: Option<i64>,
    upto: Option<i64>,
    message: Option<String>,
    id: Option<i64>,
    chat_id: Option<i64>,
    created_at: Option<IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use serde_json::json;
    use tokio::sync::oneshot;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::soak::conn::Mark;
    use crate::soak::shared::Counters;
    use crate::soak_ledger::Ledger;

    fn one_room_soak() -> Soak {
        Soak {
            run: 1,
            ledger: Ledger::new(1, 1),
            rooms: vec![42],
            user_ids: vec![7],
            message_bytes: 60,
            drain: Duration::from_secs(1),
            stop: CancellationToken::new(),
            counters: Counters::default(),
            errors_by_kind: Mutex::new(BTreeMap::new()),
            error_samples: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn receipts_are_counted_never_delivered_and_answer_a_mark_read() {
        let soak = one_room_soak();
        soak.ledger.founding_member(0, 0);
        let conn = ConnState::default();
        let receipt = |event: &str, user: i64, upto: i64| {
            json!({"data": {"purpose": "receipt", "event": event, "chat_id": 42,
                            "user_id": user, "upto": upto}})
            .to_string()
        };
        soak.take_frame(
            r#"{"data":{"purpose":"receipts","chat_id":42,"positions":[{"user_id":7,"delivered_upto":0,"read_upto":0}]}}"#,
            0,
            0,
            &conn,
        );
        soak.take_frame(&receipt("delivered", 3, 5), 0, 0, &conn);
        soak.take_frame(&receipt("delivered", 3, 4), 0, 0, &conn);
        // A mark_read waits for the user's own read receipt at or above its upto.
        let (reply, mut answer) = oneshot::channel();
        *conn.mark.lock().unwrap() = Some(Mark { upto: 10, reply });
        soak.take_frame(&receipt("read", 3, 12), 0, 0, &conn);
        soak.take_frame(&receipt("read", 7, 9), 0, 0, &conn);
        assert!(answer.try_recv().is_err(), "not yet");
        soak.take_frame(&receipt("read", 7, 11), 0, 0, &conn);
        assert_eq!(answer.try_recv(), Ok(Ok(11)));
        // ... or for the error frame refusing it.
        let (reply, mut answer) = oneshot::channel();
        *conn.mark.lock().unwrap() = Some(Mark { upto: 99, reply });
        let refused = r#"{"success":false,"errors":{"detail":"upto is above the newest message"}}"#;
        soak.take_frame(refused, 0, 0, &conn);
        assert_eq!(answer.try_recv(), Ok(Err(refused.to_string())));

        let counts = soak.counters.receipts.counts();
        assert_eq!(
            (
                counts.positions,
                counts.delivered,
                counts.read,
                counts.other
            ),
            (1, 2, 3, 0)
        );
        assert_eq!(soak.counters.receipts_moved_back.load(Ordering::Relaxed), 1);
        assert_eq!(soak.counters.deliveries.load(Ordering::Relaxed), 0);
        assert_eq!(soak.counters.errors.load(Ordering::Relaxed), 0);
        let track = soak.ledger.track(0, 0);
        assert!(track.received().is_empty());
        assert_eq!((track.malformed, track.foreign), (0, 0));
        drop(track);
        // Another room's receipt is an error; so is an error frame nobody waits for.
        soak.take_frame(
            &json!({"data": {"purpose": "receipt", "event": "read", "chat_id": 43,
                             "user_id": 7, "upto": 1}})
            .to_string(),
            0,
            0,
            &conn,
        );
        soak.take_frame(refused, 0, 0, &conn);
        assert_eq!(soak.counters.errors.load(Ordering::Relaxed), 2);
        assert_eq!(soak.ledger.track(0, 0).foreign, 1);
    }

    #[test]
    fn contents_carry_run_user_and_number() {
        let text = content(0xabcd, 3, 17, 60);
        assert_eq!(text.len(), 60);
        assert_eq!(parse_content(&text), Some((0xabcd, 3, 17)));
        assert_eq!(parse_content("bench:0000abcd:3:17:"), None);
        assert_eq!(parse_content("soak:0000abcd:3"), None);
    }
}
