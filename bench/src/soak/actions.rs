//! The actions of a virtual user that talk to the node: sends and reads over REST or a
//! socket, joins and leaves; each waits (bounded) for the node's answer and counts errors.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::conn::{Echo, Mark};
use super::user::VirtualUser;
use super::POLL;
use crate::api::{CallError, REQUEST_TIMEOUT};

/// How long a `mark_read` over a socket may take to come back as the user's own read receipt
/// (the node coalesces receipts over ~200 ms).
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(5);

impl VirtualUser {
    /// Marks `room` read up to `upto`, an id it has seen there (so never above the room's
    /// newest): over the socket when that moves its position (a no-op sends no receipt to
    /// wait for) and the coin says so, else over REST.
    pub(super) async fn read(&mut self, room: usize, upto: i64) {
        let room_id = self.soak.rooms[room];
        let marked = self.read_upto.get(&room).copied().unwrap_or(0);
        if upto > marked && self.socket_open(room) && self.rng.random_bool(0.5) {
            self.soak
                .counters
                .reads_over_ws
                .fetch_add(1, Ordering::Relaxed);
            return self.read_ws(room, upto).await;
        }
        match self
            .api
            .mark_read(&self.target, &self.user, room_id, upto)
            .await
        {
            Ok(position) if position >= upto => {
                self.read_upto.insert(room, position.max(marked));
            }
            Ok(position) => self.soak.error(
                "read over REST: position below upto",
                format!("room {room_id}: marked {upto}, position {position}"),
            ),
            Err(error) => self.soak.error(
                format!("read over REST: {}", error.kind()),
                format!("room {room_id}: upto {upto}: {error}"),
            ),
        }
    }

    async fn read_ws(&mut self, room: usize, upto: i64) {
        let room_id = self.soak.rooms[room];
        let Some(conn) = self.conns.get_mut(&room).and_then(Option::as_mut) else {
            return self.soak.error(
                "read over WebSocket: no open socket",
                format!("room {room_id}"),
            );
        };
        let (reply, receipt) = oneshot::channel();
        *conn
            .state
            .mark
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Mark { upto, reply });
        let frame = json!({ "purpose": "mark_read", "upto": upto }).to_string();
        let written = timeout(REQUEST_TIMEOUT, conn.sink.send(Message::Text(frame.into()))).await;
        let outcome = match written {
            Ok(Ok(())) => timeout(RECEIPT_TIMEOUT, receipt).await,
            Ok(Err(error)) => {
                conn.state.take_mark();
                return self.soak.error(
                    "read over WebSocket: write failed",
                    format!("room {room_id}: {error}"),
                );
            }
            Err(_) => {
                conn.state.take_mark();
                return self.soak.error(
                    "read over WebSocket: write timed out",
                    format!("room {room_id}"),
                );
            }
        };
        match outcome {
            Ok(Ok(Ok(position))) => {
                let marked = self.read_upto.entry(room).or_default();
                *marked = (*marked).max(position);
            }
            Ok(Ok(Err(frame))) => self.soak.error(
                "read over WebSocket: refused",
                format!("room {room_id}: upto {upto}: {frame}"),
            ),
            Ok(Err(_)) => self.soak.error(
                "read over WebSocket: socket closed before the receipt",
                format!("room {room_id}"),
            ),
            Err(_) => {
                conn.state.take_mark();
                self.soak.error(
                    "read over WebSocket: no read receipt in time",
                    format!("room {room_id}: upto {upto}, none within {RECEIPT_TIMEOUT:?}"),
                )
            }
        }
    }

    pub(super) async fn send_rest(&mut self, room: usize) {
        let (_, text) = self.next_content();
        let room_id = self.soak.rooms[room];
        let issued = self.soak.ledger.tick();
        match self
            .api
            .send(&self.target, &self.user, room_id, &text)
            .await
        {
            Ok(id) => self.soak.ledger.acknowledge(room, id, issued),
            Err(error) => self.soak.error(
                format!("send over REST: {}", error.kind()),
                format!("room {room_id}: {error}"),
            ),
        }
    }

    pub(super) async fn send_ws(&mut self, room: usize) {
        let (n, text) = self.next_content();
        let room_id = self.soak.rooms[room];
        let Some(conn) = self.conns.get_mut(&room).and_then(Option::as_mut) else {
            return self.soak.error(
                "send over WebSocket: no open socket",
                format!("room {room_id}"),
            );
        };
        let (reply, echo) = oneshot::channel();
        *conn
            .state
            .echo
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Echo { n, reply });
        let frame = json!({ "purpose": "send_chat_message", "message": text }).to_string();
        let issued = self.soak.ledger.tick();
        let written = timeout(REQUEST_TIMEOUT, conn.sink.send(Message::Text(frame.into()))).await;
        let outcome = match written {
            Ok(Ok(())) => timeout(REQUEST_TIMEOUT, echo).await,
            Ok(Err(error)) => {
                conn.state.take_echo();
                return self.soak.error(
                    "send over WebSocket: write failed",
                    format!("room {room_id}: {error}"),
                );
            }
            Err(_) => {
                conn.state.take_echo();
                return self.soak.error(
                    "send over WebSocket: write timed out",
                    format!("room {room_id}"),
                );
            }
        };
        match outcome {
            Ok(Ok(Ok(id))) => self.soak.ledger.acknowledge(room, id, issued),
            Ok(Ok(Err(frame))) => self.soak.error(
                "send over WebSocket: refused",
                format!("room {room_id}: {frame}"),
            ),
            Ok(Err(_)) => self.soak.error(
                "send over WebSocket: socket closed before the echo",
                format!("room {room_id}"),
            ),
            Err(_) => {
                conn.state.take_echo();
                self.soak.error(
                    "send over WebSocket: no echo in time",
                    format!("room {room_id}: none within {REQUEST_TIMEOUT:?}"),
                )
            }
        }
    }

    pub(super) async fn join(&mut self, room: usize) {
        let room_id = self.soak.rooms[room];
        // Read before the join is issued: every message acknowledged by then is older than it.
        let floor_before = self.soak.ledger.floor(room);
        match self.api.enter(&self.target, &self.user, room_id).await {
            Ok(()) => {}
            // An earlier join whose answer was lost went through: a member now all the same.
            Err(error @ CallError::Status(status, _)) if status == StatusCode::BAD_REQUEST => {
                self.soak
                    .error("join: HTTP 400", format!("room {room_id}: {error}"));
            }
            Err(error) => {
                return self.soak.error(
                    format!("join: {}", error.kind()),
                    format!("room {room_id}: {error}"),
                )
            }
        }
        let since = self.soak.ledger.joined(self.index, room, floor_before);
        self.conns.insert(room, None);
        self.open(room, since).await;
    }

    pub(super) async fn leave(&mut self, room: usize) {
        let room_id = self.soak.rooms[room];
        // From here on, sends to the room are not owed to this user; those acknowledged so far
        // are, so its socket must pass them before it goes.
        let owed_up_to = self.soak.ledger.leaving(self.index, room);
        let deadline = Instant::now() + self.soak.drain;
        while self.soak.ledger.track(self.index, room).cursor < owed_up_to {
            if Instant::now() >= deadline {
                self.soak.error(
                    "leave: the socket did not catch up in time",
                    format!(
                        "room {room_id}: at id {}, owed up to {owed_up_to}",
                        self.soak.ledger.track(self.index, room).cursor
                    ),
                );
                break;
            }
            if !self.socket_open(room) {
                self.reopen(room).await;
            }
            tokio::time::sleep(POLL).await;
        }
        if let Some(conn) = self.conns.remove(&room).flatten() {
            conn.close().await;
        }
        // Whatever the answer, it is no longer counted a member (a lost answer is settled by
        // a later join answering 400).
        if let Err(error) = self.api.leave(&self.target, &self.user, room_id).await {
            self.soak.error(
                format!("leave: {}", error.kind()),
                format!("room {room_id}: {error}"),
            );
        }
    }
}
