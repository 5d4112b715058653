//! One socket's session: the room's feed written to it, catch-ups, and the frames it sends.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame};

use super::close::{after_read_error, finish, End};
use super::protocol::{error_frame, ClientRequest, Start};
use super::Socket;
use crate::domain::conversations::{ReceiptKind, ReceiptMark};
use crate::domain::values::Content;
use crate::http::ApiError;
use crate::hub::{self, CloseReason, Kick, Outgoing, CLOSE_LEFT_ROOM};
use crate::limits::SocketSlot;
use crate::signals;
use crate::state::SharedState;
use crate::store::{StoreError, User};

/// Outgoing frames written before one flush, so a burst costs one syscall.
const WRITE_BATCH: usize = 64;
/// After the error frame that answers a send over the user's message rate.
const CLOSE_RATE_LIMITED: CloseReason = CloseReason {
    code: 1008,
    reason: "rate limit exceeded: too many messages",
};
pub(super) const CLOSE_STORE_DOWN: CloseReason = CloseReason {
    code: 1011,
    reason: "storage unavailable; reconnect with ?since=<last id>",
};

pub(super) type Sink = SplitSink<Socket, Frame>;

/// What this socket has sent of its room, so replayed or re-published events are never sent
/// twice: `cursor` is the newest message id the client has and `seq` the newest position of
/// the room's log; `by_seq` says which one counts (the client asked with `after_seq`).
pub(super) struct Feed {
    pub(super) state: SharedState,
    pub(super) room: i64,
    pub(super) user: i64,
    /// The user's name, which their typing signals carry.
    username: String,
    pub(super) cursor: i64,
    pub(super) seq: i64,
    pub(super) by_seq: bool,
    /// A write that makes no progress for this long means the peer stopped reading.
    stall: Duration,
    /// Frames of the batch being written, kept between batches to spare an allocation each.
    frames: Vec<Frame>,
    /// The newest message of someone else written to this socket, and the one last marked
    /// delivered: a write moves the user's delivered position.
    pub(super) written: i64,
    marked: i64,
}

impl Feed {
    /// Writes and flushes `frames`, leaving the vector empty.
    pub(super) async fn write(&self, sink: &mut Sink, frames: &mut Vec<Frame>) -> Result<(), End> {
        self.write_all(sink, frames.drain(..)).await
    }

    /// Writes and flushes `frames`, each made only when tungstenite has room for it.
    pub(super) async fn write_all(
        &self,
        sink: &mut Sink,
        frames: impl Iterator<Item = Frame> + Send,
    ) -> Result<(), End> {
        let metrics = &self.state.metrics;
        let started = metrics.write_started();
        let write = async {
            let mut texts = 0;
            for frame in frames {
                texts += usize::from(frame.is_text());
                sink.feed(frame).await?;
            }
            sink.flush().await?;
            metrics.frames_delivered(texts);
            metrics.socket_written(started);
            Ok::<(), WsError>(())
        };
        let mut write = pin!(write);
        // Most writes finish at once (the socket buffer has room): those need no timer.
        let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
        let written = match first {
            Poll::Ready(done) => Ok(done),
            Poll::Pending => timeout(self.stall, write).await,
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Drop),
            Err(_) => {
                tracing::debug!(
                    room = self.room,
                    user = self.user,
                    "dropping a peer that stopped reading"
                );
                Err(End::Drop)
            }
        }
    }

    /// Writes queued events (skipping messages the client already has) and runs a catch-up
    /// where the hub asks for one; leaves `batch` empty.
    async fn deliver(&mut self, sink: &mut Sink, batch: &mut Vec<Outgoing>) -> Result<(), End> {
        let mut frames = std::mem::take(&mut self.frames);
        for outgoing in batch.drain(..) {
            match outgoing {
                Outgoing::Frame { seq, .. } if self.by_seq && seq != 0 && seq <= self.seq => {}
                Outgoing::Frame { id: Some(id), .. } if !self.by_seq && id <= self.cursor => {}
                Outgoing::Frame {
                    id,
                    seq,
                    sender,
                    frame,
                } => {
                    self.seq = self.seq.max(seq);
                    if let Some(id) = id {
                        self.cursor = self.cursor.max(id);
                        if sender != Some(self.user) {
                            self.written = self.written.max(id);
                        }
                    }
                    frames.push(Frame::Text(frame));
                }
                Outgoing::Resync => {
                    self.write(sink, &mut frames).await?;
                    let start = match self.by_seq {
                        true => Start::AfterSeq(self.seq),
                        false => Start::Since(self.cursor),
                    };
                    self.catch_up(sink, start).await?;
                }
            }
        }
        self.write(sink, &mut frames).await?;
        self.frames = frames;
        self.mark_delivered();
        Ok(())
    }

    /// Counts what this socket was written as delivered (coalesced, stored shortly).
    pub(super) fn mark_delivered(&mut self) {
        if self.written > self.marked {
            self.marked = self.written;
            self.state.receipts.mark(ReceiptMark {
                room: self.room,
                user: self.user,
                kind: ReceiptKind::Delivered,
                upto: self.written,
            });
        }
    }

    /// Every member's positions: a socket's first frame, so a client that was away knows
    /// which of its messages were read meanwhile.
    async fn send_positions(&mut self, sink: &mut Sink) -> Result<(), End> {
        let positions = match self.state.store.positions(self.room).await {
            Ok(positions) => positions,
            Err(StoreError::RoomNotFound) => return Err(CLOSE_LEFT_ROOM.into()),
            Err(error) => {
                tracing::warn!(room = self.room, error = %error.chain(), "reading receipts failed");
                return Err(CLOSE_STORE_DOWN.into());
            }
        };
        let frame = json!({ "data": {
            "purpose": "receipts",
            "chat_id": self.room,
            "positions": positions.positions,
        }});
        self.write(sink, &mut vec![Frame::Text(frame.to_string().into())])
            .await
    }
}

impl Feed {
    /// Answers one frame from the peer (or its absence); an `Err` ends the session.
    async fn answer<K: Future<Output = CloseReason>>(
        &mut self,
        sink: &mut Sink,
        incoming: Option<Result<Frame, WsError>>,
        kicked: Pin<&mut K>,
    ) -> Result<(), End> {
        match incoming {
            Some(Ok(Frame::Text(text))) => match ClientRequest::parse(&text) {
                Ok(request) => self.serve(sink, request, kicked).await,
                Err(answer) => self.write(sink, &mut vec![answer]).await,
            },
            Some(Ok(Frame::Binary(_))) => {
                let answer = error_frame("Binary frames are not supported; send JSON text");
                self.write(sink, &mut vec![answer]).await
            }
            Some(Ok(Frame::Close(_))) => Err(End::Echo),
            None => Err(End::Drop),
            // Pings are answered by tungstenite; pongs only prove the peer is alive.
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(after_read_error(&error)),
        }
    }

    /// Carries out a well-formed request; a refusal is answered with an error frame.
    async fn serve<K: Future<Output = CloseReason>>(
        &mut self,
        sink: &mut Sink,
        request: ClientRequest,
        kicked: Pin<&mut K>,
    ) -> Result<(), End> {
        let (state, room, user) = (self.state.clone(), self.room, self.user);
        let refused = match request {
            ClientRequest::Send { content, reply_to } => match state.limits.send(user) {
                Ok(()) => send(&state, room, user, &content, reply_to).await.err(),
                // Say why and when, then stop reading from a flooding client.
                Err(limited) => {
                    let answer = error_frame(limited.to_string());
                    self.write(sink, &mut vec![answer]).await?;
                    return Err(CLOSE_RATE_LIMITED.into());
                }
            },
            ClientRequest::CatchUp(start) => match state.limits.catch_up(user) {
                Ok(()) => {
                    return tokio::select! {
                        done = self.catch_up(sink, start) => done,
                        reason = kicked => Err(reason.into()),
                    }
                }
                // Refused without a replay; the socket stays open for live messages.
                Err(limited) => Some(error_frame(limited.to_string())),
            },
            ClientRequest::MarkRead(upto) => mark_read(&state, room, user, upto).await.err(),
            ClientRequest::Edit { id, content } => {
                let edited = crate::http::edits::edit(&state, room, user, id, content).await;
                edited.err().map(|e| refusal(&e))
            }
            ClientRequest::Delete(id) => {
                let deleted = crate::http::edits::delete(&state, room, user, id).await;
                deleted.err().map(|e| refusal(&e))
            }
            ClientRequest::React { id, emoji } => {
                let reacted =
                    crate::http::reactions::react(&state, room, user, id, emoji.as_deref()).await;
                reacted.err().map(|e| refusal(&e))
            }
            // Signals need no answer: the other sockets see them, or (best effort) do not.
            ClientRequest::Typing(started) => match state.limits.typing(user) {
                Ok(()) => {
                    signals::send_typing(&state, room, user, &self.username, started).await;
                    None
                }
                Err(limited) => Some(error_frame(limited.to_string())),
            },
        };
        match refused {
            Some(answer) => self.write(sink, &mut vec![answer]).await,
            None => Ok(()),
        }
    }
}

/// Serves one socket until the peer leaves, goes quiet, falls behind, is evicted or the node
/// shuts down.
pub(super) async fn run_socket(
    socket: Socket,
    state: SharedState,
    room: i64,
    user: User,
    start: Start,
    slot: SocketSlot,
) {
    let (queue, mut outgoing) = hub::queue(state.config.ws_queue);
    let kick = Kick::child_of(&state.shutdown);
    // Registered (and subscribed) before reading history, so nothing falls in between.
    let registration = state
        .hub
        .register(room, (&user).into(), queue, kick.clone())
        .await;
    let present = state.presence.opened(user.id);
    let (mut sink, mut stream) = socket.split();

    let ping_every = state.config.ws_ping_interval();
    let mut feed = Feed {
        state: state.clone(),
        room,
        user: user.id,
        username: user.username.clone(),
        cursor: 0,
        seq: 0,
        by_seq: false,
        stall: ping_every * 2,
        frames: Vec::new(),
        written: 0,
        marked: 0,
    };
    // Fires on shutdown too. Waited on by every select below; made once, not once per wake-up
    // (each one registers with the token under its lock).
    let mut kicked = pin!(kick.clone().fired());
    let opening = async {
        feed.send_positions(&mut sink).await?;
        feed.catch_up(&mut sink, start).await
    };
    let started = tokio::select! {
        started = opening => started,
        reason = &mut kicked => Err(reason.into()),
    };

    let mut pings = interval_at(Instant::now() + ping_every, ping_every);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut batch = Vec::new();

    let close = match started {
        Err(end) => end,
        Ok(()) => loop {
            tokio::select! {
                reason = &mut kicked => break reason.into(),
                open = outgoing.recv_many(&mut batch, WRITE_BATCH) => {
                    if !open { break End::Drop }
                    // Stay responsive to kicks and shutdown while a slow peer blocks the write
                    // (tungstenite keeps a partly written frame buffered for the close).
                    tokio::select! {
                        done = feed.deliver(&mut sink, &mut batch) => if let Err(end) = done { break end },
                        reason = &mut kicked => break reason.into(),
                    }
                }
                incoming = stream.next() => {
                    last_heard = Instant::now();
                    if let Err(end) = feed.answer(&mut sink, incoming, kicked.as_mut()).await {
                        break end;
                    }
                }
                _ = pings.tick() => {
                    if last_heard.elapsed() > ping_every * 2 {
                        tracing::debug!(room, user = user.id, "dropping a silent WebSocket peer");
                        break End::Drop;
                    }
                    if let Err(end) = feed.write(&mut sink, &mut vec![Frame::Ping(Default::default())]).await {
                        break end;
                    }
                }
            }
        },
    };
    // Out of the room before the goodbye, which may wait on a slow peer; the user's socket
    // count drops first, so whoever sees the socket gone may open another.
    drop(slot);
    drop(registration);
    drop(present);
    count_close(&state, &close);
    finish(sink, stream, close).await;
}

/// Counts how the socket ended, for `/metrics`.
fn count_close(state: &SharedState, end: &End) {
    match end {
        End::Drop => state.metrics.socket_closed(None),
        End::Close(reason) => state.metrics.socket_closed(Some(reason.code)),
        End::Echo => state.metrics.socket_closed_by_peer(),
    }
}

/// The error frame answering a refused request with the REST answer's words.
fn refusal(error: &ApiError) -> Frame {
    let errors = error.errors();
    let detail = errors["detail"].as_str().map(str::to_string);
    error_frame(detail.unwrap_or_else(|| errors.to_string()))
}

/// Checks a read mark and queues it; the receipt reaches the room shortly.
async fn mark_read(state: &SharedState, room: i64, user: i64, upto: i64) -> Result<(), Frame> {
    let mark = ReceiptMark {
        room,
        user,
        kind: ReceiptKind::Read,
        upto,
    };
    match crate::http::receipts::check_read(state, mark).await {
        Ok(()) => {
            state.receipts.mark(mark);
            Ok(())
        }
        Err(e) => Err(error_frame(
            e.errors()["detail"]
                .as_str()
                .unwrap_or("Invalid mark")
                .to_string(),
        )),
    }
}

/// Stores a message sent over the socket; the sender sees it arrive like everyone else.
async fn send(
    state: &SharedState,
    room: i64,
    user: i64,
    content: &Content,
    reply_to: Option<i64>,
) -> Result<(), Frame> {
    match state
        .store
        .post_reply(room, user, content.as_str(), None, reply_to)
        .await
    {
        Ok(_) => {
            state.metrics.message_stored();
            Ok(())
        }
        Err(StoreError::NotMember | StoreError::RoomNotFound) => {
            Err(error_frame("You are no longer a member of this chatroom"))
        }
        Err(e) => Err(error_frame(
            ApiError::from(e).errors()["detail"]
                .as_str()
                .unwrap_or("The message could not be stored")
                .to_string(),
        )),
    }
}
