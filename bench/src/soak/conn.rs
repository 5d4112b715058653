//! One socket of a user in a room: its read task, and the sends and reads over it that
//! wait for the node's answer on that socket.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::shared::Soak;
use crate::api::Socket;
use crate::load::ReceiptKind;

/// How long a socket may take to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A send over a socket waiting for its echo: the stored message's id, or the error frame.
pub(super) struct Echo {
    pub(super) n: u64,
    pub(super) reply: oneshot::Sender<Result<i64, String>>,
}

/// A `mark_read` over a socket waiting for the user's own read receipt at `upto` or above
/// (its new position), or the error frame.
pub(super) struct Mark {
    pub(super) upto: i64,
    pub(super) reply: oneshot::Sender<Result<i64, String>>,
}

#[derive(Default)]
pub(super) struct ConnState {
    /// Set before the bench closes the socket, so the close is not an error.
    closing: AtomicBool,
    pub(super) echo: Mutex<Option<Echo>>,
    pub(super) mark: Mutex<Option<Mark>>,
    /// The highest receipt position seen on this socket, by (user id, kind).
    positions: Mutex<BTreeMap<(i64, u8), i64>>,
}

impl ConnState {
    pub(super) fn take_mark(&self) -> Option<Mark> {
        self.mark
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(super) fn take_mark_upto(&self, upto: i64) -> Option<Mark> {
        let mut mark = self.mark.lock().unwrap_or_else(PoisonError::into_inner);
        if mark.as_ref().is_some_and(|m| upto >= m.upto) {
            mark.take()
        } else {
            None
        }
    }

    /// Records a receipt position; true when it is below one seen before for the same user
    /// and kind.
    pub(super) fn note_position(&self, user_id: i64, kind: ReceiptKind, upto: i64) -> bool {
        let mut positions = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let highest = positions.entry((user_id, kind as u8)).or_insert(upto);
        let moved_back = upto < *highest;
        *highest = (*highest).max(upto);
        moved_back
    }

    pub(super) fn take_echo(&self) -> Option<Echo> {
        self.echo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(super) fn take_echo_of(&self, n: u64) -> Option<Echo> {
        let mut echo = self.echo.lock().unwrap_or_else(PoisonError::into_inner);
        if echo.as_ref().is_some_and(|e| e.n == n) {
            echo.take()
        } else {
            None
        }
    }
}

pub(super) type Sink = SplitSink<Socket, Message>;

/// One open socket of a user in a room.
pub(super) struct Conn {
    pub(super) sink: Sink,
    pub(super) reader: JoinHandle<()>,
    pub(super) state: Arc<ConnState>,
}

impl Conn {
    pub(super) fn is_live(&self) -> bool {
        !self.reader.is_finished()
    }

    /// Closes from our side and waits (bounded) until the reader has taken every frame.
    pub(super) async fn close(self) {
        self.state.closing.store(true, Ordering::SeqCst);
        let Self {
            mut sink,
            mut reader,
            ..
        } = self;
        let _ = timeout(CLOSE_TIMEOUT, sink.close()).await;
        if timeout(CLOSE_TIMEOUT, &mut reader).await.is_err() {
            reader.abort();
        }
    }
}

/// Takes the socket's frames until it ends; an end the bench did not ask for is an error.
pub(super) async fn read_feed(
    mut stream: SplitStream<Socket>,
    soak: Arc<Soak>,
    user: usize,
    room: usize,
    state: Arc<ConnState>,
) {
    let (kind, detail) = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => soak.take_frame(&text, user, room, &state),
            // Pings are answered by tungstenite on the next read.
            Some(Ok(Message::Close(close))) => {
                break match close {
                    Some(frame) => (
                        format!("socket: closed by the node with {}", u16::from(frame.code)),
                        frame.reason.to_string(),
                    ),
                    None => (
                        "socket: closed by the node without a code".to_string(),
                        String::new(),
                    ),
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => break ("socket: transport error".to_string(), error.to_string()),
            None => {
                break (
                    "socket: ended without a close frame".to_string(),
                    String::new(),
                )
            }
        }
    };
    if !state.closing.load(Ordering::SeqCst) {
        soak.error(kind, format!("room {}: {detail}", soak.rooms[room]));
    }
    // A send waiting for its echo (or a read for its receipt) learns that it will not come.
    drop(state.take_echo());
    drop(state.take_mark());
}
