//! The send sides of a run: each sender sends its share of the messages on schedule, over
//! REST or on its rooms' sockets, and stops after repeated failures.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use serde_json::json;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::shared::Shared;
use super::unix_nanos;
use crate::api::{Api, Socket, Target, User, REQUEST_TIMEOUT};
use crate::ledger;

/// A sender that fails this many sends in a row stops: the node is down or refusing.
const MAX_CONSECUTIVE_ERRORS: u32 = 10;

pub(super) type Sink = SplitSink<Socket, Message>;

/// When each message is due, and how big it is.
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    pub(super) started: Instant,
    pub(super) rate: Option<f64>,
    pub(super) bytes: usize,
}

impl Schedule {
    /// Open loop: message `seq` is due at `seq / rate` whatever happened to earlier ones, so a
    /// slow node shows as latency (and a lower accepted rate), not as a lower offered load.
    async fn wait_for(&self, seq: u64) {
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_secs_f64(seq as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

pub(super) async fn send_rest(
    shared: Arc<Shared>,
    schedule: Schedule,
    seqs: Vec<u64>,
    target: Target,
    user: User,
    rooms: Arc<Vec<i64>>,
) -> Vec<Sink> {
    // A client of its own: one keep-alive connection, as one chat client would have.
    let api = match Api::new() {
        Ok(api) => api,
        Err(error) => {
            shared.send_error(format!("{error:#}"));
            return Vec::new();
        }
    };
    let mut failures = 0;
    for seq in seqs {
        schedule.wait_for(seq).await;
        let content = ledger::content(shared.run, seq, unix_nanos(), schedule.bytes);
        let room = rooms[shared.plan.room_of(seq) as usize];
        shared.sent.fetch_add(1, Ordering::Relaxed);
        match api.send(&target, &user, room, &content).await {
            Ok(_) => {
                shared.accept(seq);
                failures = 0;
            }
            Err(error) => {
                shared.send_error(format!("send to room {room}: {error}"));
                failures += 1;
                if failures == MAX_CONSECUTIVE_ERRORS {
                    shared.sample(format!(
                        "a sender stopped after {MAX_CONSECUTIVE_ERRORS} failures in a row"
                    ));
                    break;
                }
            }
        }
    }
    Vec::new()
}

/// Sends on the sockets of the rooms this sender owns; returns them to be closed once the
/// receivers have everything (closing earlier could race the node's last stores).
pub(super) async fn send_ws(
    shared: Arc<Shared>,
    schedule: Schedule,
    seqs: Vec<u64>,
    mut sinks: Vec<(u64, Sink)>,
) -> Vec<Sink> {
    let mut failures = 0;
    for seq in seqs {
        schedule.wait_for(seq).await;
        let room = shared.plan.room_of(seq);
        let Some((_, sink)) = sinks.iter_mut().find(|(r, _)| *r == room) else {
            shared.send_error(format!("no sender socket for room index {room}"));
            continue;
        };
        let content = ledger::content(shared.run, seq, unix_nanos(), schedule.bytes);
        let frame = json!({ "purpose": "send_chat_message", "message": content }).to_string();
        shared.sent.fetch_add(1, Ordering::Relaxed);
        match timeout(REQUEST_TIMEOUT, sink.send(Message::Text(frame.into()))).await {
            Ok(Ok(())) => {
                shared.accept(seq);
                failures = 0;
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_string(),
                };
                shared.send_error(format!("WebSocket send: {error}"));
                failures += 1;
                if failures == MAX_CONSECUTIVE_ERRORS {
                    shared.sample(format!(
                        "a sender stopped after {MAX_CONSECUTIVE_ERRORS} failures in a row"
                    ));
                    break;
                }
            }
        }
    }
    sinks.into_iter().map(|(_, sink)| sink).collect()
}
