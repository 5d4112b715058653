//! `GET /ws/chat/<id>/`: the live feed of a room, and a way to send to it.
//!
//! The upgrade is done by hand rather than with `warp::ws()` so that each socket gets a 1 KiB
//! read buffer instead of tungstenite's 128 KiB one: idle sockets cost a few KiB each.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::WebSocketStream;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::messages::validate_content;
use super::shed::Slots;
use super::{bearer, check_json_depth, respond, room_id, user_for_token, with_state, ApiError};
use crate::events::RoomEvent;
use crate::hub::{self, CloseReason, Kick, Outgoing, CLOSE_LEFT_ROOM};
use crate::limits::SocketSlot;
use crate::state::SharedState;
use crate::store::{Page, StoreError, User};

/// Bytes read per syscall. Small because every socket holds one for good, and tungstenite
/// zero-fills it before each read attempt, which a socket makes at every wake-up (a delivery
/// included); a bigger client frame grows it as needed.
const READ_BUFFER: usize = 1024;
/// Largest frame or message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Outgoing frames written before one flush, so a burst costs one syscall.
const WRITE_BATCH: usize = 64;
/// How long a closing socket waits for its peer to take the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Messages read from the store per page of a catch-up.
const CATCH_UP_PAGE: u32 = 200;

const CLOSE_TOO_BIG: CloseReason = CloseReason {
    code: 1009,
    reason: "message too big",
};
/// After the error frame that answers a send over the user's message rate.
const CLOSE_RATE_LIMITED: CloseReason = CloseReason {
    code: 1008,
    reason: "rate limit exceeded: too many messages",
};
const CLOSE_STORE_DOWN: CloseReason = CloseReason {
    code: 1011,
    reason: "storage unavailable; reconnect with ?since=<last id>",
};

#[derive(Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    /// Replay every message after this id before live ones.
    since: Option<i64>,
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let connections = Slots::new(
        state.config.max_connections,
        "Too many open connections; try again shortly",
    );
    warp::path!("ws" / "chat" / String)
        .and(warp::get())
        .and(with_state(state))
        .and(warp::any().map(move || connections.clone()))
        .and(warp::header::headers_cloned())
        .and(warp::query::<WsQuery>())
        .and(warp::ext::optional::<OnUpgrade>())
        .then(handshake)
        .and_then(respond)
        .boxed()
}

/// Open a room's live feed (WebSocket).
#[utoipa::path(get, path = "/ws/chat/{id}/", tag = "websocket",
    params(("id" = i64, Path, description = "Chatroom id"),
           ("token" = Option<String>, Query, description = "Access token (or an Authorization header)"),
           ("since" = Option<i64>, Query, description = "Replay every message after this id first, then live ones, without gaps or duplicates")),
    responses((status = 101, description = "Upgraded: frames `{\"data\": {\"purpose\": \"new_chat_message\", ...}}`"),
              (status = 401, description = "Missing, invalid, expired or refresh token"),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom"),
              (status = 429, description = "Too many connection attempts, or too many open sockets, for this user",
               headers(("retry-after" = u64, description = "Seconds to wait"))),
              (status = 426, description = "Not a WebSocket upgrade request"),
              (status = 503, description = "The node has `--max-connections` sockets open; retry after `Retry-After` seconds")))]
pub async fn handshake(
    id: String,
    state: SharedState,
    connections: Slots,
    headers: HeaderMap,
    query: WsQuery,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    // Taken first, so a full node spends nothing on the refused handshake; held by the socket.
    let connection = connections.take()?;
    let token = match query.token.as_deref() {
        Some(token) => Some(token),
        None => bearer(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )?,
    };
    let user = user_for_token(&state, token).await?;
    // Counted before anything else is looked up, so refused attempts cost little.
    let slot = state.limits.open_socket(user.id)?;
    let room = room_id(&id)?;
    state.store.check_member(room, user.id).await?;
    // Without `since`, the feed starts at the handshake: everything stored after this point
    // reaches the client, even what commits before the room's subscription is in place.
    let since = match query.since {
        Some(since) => since,
        None => newest_message_id(&state, room, user.id).await?,
    };
    let upgrade_requested = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (Some(key), true, Some(on_upgrade)) = (
        headers.get(header::SEC_WEBSOCKET_KEY),
        upgrade_requested,
        on_upgrade,
    ) else {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "Expected a WebSocket upgrade request",
        ));
    };
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| ApiError::bad_request("Invalid Sec-WebSocket-Key"))?;

    let task_state = state.clone();
    state.tasks.spawn(async move {
        let _connection = connection;
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(READ_BUFFER)
                    .max_message_size(Some(MAX_CLIENT_MESSAGE))
                    .max_frame_size(Some(MAX_CLIENT_MESSAGE));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run_socket(socket, task_state, room, user, since, slot).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    });

    let mut response = Response::default();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

async fn newest_message_id(state: &SharedState, room: i64, user: i64) -> Result<i64, ApiError> {
    let page = Page {
        limit: 1,
        before: None,
        after: None,
    };
    let newest = state.store.messages(room, user, page).await?;
    Ok(newest.last().map_or(0, |m| m.id))
}

fn close_frame(reason: CloseReason) -> Frame {
    Frame::Close(Some(CloseFrame {
        code: CloseCode::from(reason.code),
        reason: reason.reason.into(),
    }))
}

fn error_frame(detail: impl Into<String>) -> Frame {
    let detail: String = detail.into();
    Frame::Text(
        json!({ "success": false, "errors": { "detail": detail } })
            .to_string()
            .into(),
    )
}

type Sink = SplitSink<Socket, Frame>;

/// How a socket ends: with a close frame and its reason, or dropped (peer gone or stalled).
type End = Option<CloseReason>;

/// What this socket has sent of its room: `cursor` is the newest message id the client has,
/// so replayed or re-published events are never sent twice.
struct Feed {
    state: SharedState,
    room: i64,
    user: i64,
    cursor: i64,
    /// A write that makes no progress for this long means the peer stopped reading.
    stall: Duration,
    /// Frames of the batch being written, kept between batches to spare an allocation each.
    frames: Vec<Frame>,
}

impl Feed {
    /// Writes and flushes `frames`, leaving the vector empty.
    async fn write(&self, sink: &mut Sink, frames: &mut Vec<Frame>) -> Result<(), End> {
        let write = async {
            for frame in frames.drain(..) {
                sink.feed(frame).await?;
            }
            sink.flush().await
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
            Ok(Err(_)) => Err(None),
            Err(_) => {
                tracing::debug!(
                    room = self.room,
                    user = self.user,
                    "dropping a peer that stopped reading"
                );
                Err(None)
            }
        }
    }

    /// Writes queued events (skipping messages the client already has) and runs a catch-up
    /// where the hub asks for one; leaves `batch` empty.
    async fn deliver(&mut self, sink: &mut Sink, batch: &mut Vec<Outgoing>) -> Result<(), End> {
        let mut frames = std::mem::take(&mut self.frames);
        for outgoing in batch.drain(..) {
            match outgoing {
                Outgoing::Frame { id: Some(id), .. } if id <= self.cursor => {}
                Outgoing::Frame { id, frame } => {
                    if let Some(id) = id {
                        self.cursor = id;
                    }
                    frames.push(Frame::Text(frame));
                }
                Outgoing::Resync => {
                    self.write(sink, &mut frames).await?;
                    let from = self.cursor;
                    self.catch_up(sink, from).await?;
                }
            }
        }
        self.write(sink, &mut frames).await?;
        self.frames = frames;
        Ok(())
    }

    /// Sends every message after `from`, oldest first, page by page.
    async fn catch_up(&mut self, sink: &mut Sink, mut from: i64) -> Result<(), End> {
        loop {
            let page = Page {
                limit: CATCH_UP_PAGE,
                before: None,
                after: Some(from),
            };
            let messages = match self.state.store.messages(self.room, self.user, page).await {
                Ok(messages) => messages,
                Err(StoreError::NotMember | StoreError::RoomNotFound) => {
                    return Err(Some(CLOSE_LEFT_ROOM))
                }
                Err(error) => {
                    tracing::warn!(room = self.room, %error, "catch-up failed");
                    return Err(Some(CLOSE_STORE_DOWN));
                }
            };
            let complete = messages.len() < CATCH_UP_PAGE as usize;
            let Some(last) = messages.last().map(|m| m.id) else {
                return Ok(());
            };
            let mut frames = messages
                .iter()
                .map(|m| Frame::Text(RoomEvent::message(m).frame_json().into()))
                .collect();
            self.write(sink, &mut frames).await?;
            from = last;
            self.cursor = self.cursor.max(last);
            if complete {
                return Ok(());
            }
        }
    }
}

/// Serves one socket until the peer leaves, goes quiet, falls behind, is evicted or the node
/// shuts down.
async fn run_socket(
    socket: Socket,
    state: SharedState,
    room: i64,
    user: User,
    since: i64,
    slot: SocketSlot,
) {
    let (queue, mut outgoing) = hub::queue(state.config.ws_queue);
    let kick = Kick::child_of(&state.shutdown);
    // Registered (and subscribed) before reading history, so nothing falls in between.
    let registration = state.hub.register(room, user.id, queue, kick.clone()).await;
    let (mut sink, mut stream) = socket.split();

    let ping_every = state.config.ws_ping_interval();
    let mut feed = Feed {
        state: state.clone(),
        room,
        user: user.id,
        cursor: since,
        stall: ping_every * 2,
        frames: Vec::new(),
    };
    // Fires on shutdown too. Waited on by every select below; made once, not once per wake-up
    // (each one registers with the token under its lock).
    let mut kicked = pin!(kick.clone().fired());
    let started = tokio::select! {
        started = feed.catch_up(&mut sink, since) => started,
        reason = &mut kicked => Err(Some(reason)),
    };

    let mut pings = interval_at(Instant::now() + ping_every, ping_every);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut batch = Vec::new();

    let close = match started {
        Err(end) => end,
        Ok(()) => loop {
            tokio::select! {
                reason = &mut kicked => break Some(reason),
                open = outgoing.recv_many(&mut batch, WRITE_BATCH) => {
                    if !open { break None }
                    // Stay responsive to kicks and shutdown while a slow peer blocks the write
                    // (tungstenite keeps a partly written frame buffered for the close).
                    tokio::select! {
                        done = feed.deliver(&mut sink, &mut batch) => if let Err(end) = done { break end },
                        reason = &mut kicked => break Some(reason),
                    }
                }
                incoming = stream.next() => {
                    last_heard = Instant::now();
                    let answered = match incoming {
                        Some(Ok(Frame::Text(text))) => {
                            match ClientRequest::parse(&text) {
                                Ok(ClientRequest::Send(content)) => match state.limits.send(user.id) {
                                    Ok(()) => match send(&state, room, user.id, &content).await {
                                        Ok(()) => Ok(()),
                                        Err(answer) => feed.write(&mut sink, &mut vec![answer]).await,
                                    },
                                    // Say why and when, then stop reading from a flooding client.
                                    Err(limited) => feed
                                        .write(&mut sink, &mut vec![error_frame(limited.to_string())])
                                        .await
                                        .and(Err(Some(CLOSE_RATE_LIMITED))),
                                },
                                Ok(ClientRequest::CatchUp(since)) => tokio::select! {
                                    done = feed.catch_up(&mut sink, since) => done,
                                    reason = &mut kicked => Err(Some(reason)),
                                },
                                Err(answer) => feed.write(&mut sink, &mut vec![answer]).await,
                            }
                        }
                        Some(Ok(Frame::Binary(_))) => {
                            let answer = error_frame("Binary frames are not supported; send JSON text");
                            feed.write(&mut sink, &mut vec![answer]).await
                        }
                        Some(Ok(Frame::Close(_))) | None => Err(None),
                        // Pings are answered by tungstenite; pongs only prove the peer is alive.
                        Some(Ok(_)) => Ok(()),
                        Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => Err(Some(CLOSE_TOO_BIG)),
                        Some(Err(_)) => Err(None),
                    };
                    if let Err(end) = answered {
                        break end;
                    }
                }
                _ = pings.tick() => {
                    if last_heard.elapsed() > ping_every * 2 {
                        tracing::debug!(room, user = user.id, "dropping a silent WebSocket peer");
                        break None;
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
    if let Some(reason) = close {
        // A peer that does not read its close frame must not hold shutdown up.
        let _ = timeout(CLOSE_TIMEOUT, async {
            let _ = sink.send(close_frame(reason)).await;
            let _ = sink.close().await;
        })
        .await;
    }
}

/// What a client may ask over its socket.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// `{"purpose": "send_chat_message", "message": "..."}`
    Send(String),
    /// `{"purpose": "catch_up", "since": <message id>}`
    CatchUp(i64),
}

#[derive(Deserialize)]
struct ClientFrame {
    purpose: Option<Value>,
    message: Option<Value>,
    since: Option<Value>,
}

impl ClientRequest {
    /// The request, or the error frame to answer it with.
    pub fn parse(text: &str) -> Result<Self, Frame> {
        check_json_depth(text.as_bytes())
            .map_err(|e| error_frame(e.errors["detail"].as_str().unwrap_or_default()))?;
        let frame: ClientFrame = match serde_json::from_str::<Value>(text) {
            Ok(value @ Value::Object(_)) => serde_json::from_value(value)
                .map_err(|e| error_frame(format!("Invalid frame: {e}")))?,
            Ok(_) => return Err(error_frame("A frame must be a JSON object")),
            Err(e) => return Err(error_frame(format!("Frame is not valid JSON: {e}"))),
        };
        match frame.purpose.as_ref().and_then(Value::as_str) {
            Some("send_chat_message") => match frame.message {
                Some(Value::String(content)) => {
                    validate_content(&content, false).map_err(error_frame)?;
                    Ok(Self::Send(content))
                }
                _ => Err(error_frame("\"message\" must be a string")),
            },
            Some("catch_up") => match frame.since.as_ref().and_then(Value::as_i64) {
                Some(since) if since >= 0 => Ok(Self::CatchUp(since)),
                _ => Err(error_frame(
                    "\"since\" must be a message id (a non-negative integer)",
                )),
            },
            Some(other) => Err(error_frame(format!("Unknown purpose: {other}"))),
            None => Err(error_frame(
                "Missing \"purpose\": expected \"send_chat_message\" or \"catch_up\"",
            )),
        }
    }
}

/// Stores a message sent over the socket; the sender sees it arrive like everyone else.
async fn send(state: &SharedState, room: i64, user: i64, content: &str) -> Result<(), Frame> {
    match state.store.post_message(room, user, content, None).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotMember | StoreError::RoomNotFound) => {
            Err(error_frame("You are no longer a member of this chatroom"))
        }
        Err(e) => Err(error_frame(
            ApiError::from(e).errors["detail"]
                .as_str()
                .unwrap_or("The message could not be stored")
                .to_string(),
        )),
    }
}
