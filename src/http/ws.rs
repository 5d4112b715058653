//! `GET /ws/chat/<id>/`: the live feed of a room, and a way to send to it.
//!
//! The upgrade is done by hand rather than with `warp::ws()` so that each socket gets a 4 KiB
//! read buffer instead of tungstenite's 128 KiB one: idle sockets cost a few KiB each.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as Frame, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::messages::{post, validate_content};
use super::{bearer, respond, room_id, user_for_token, with_state, ApiError};
use crate::hub::{CloseReason, Kick};
use crate::state::SharedState;
use crate::store::{StoreError, User};

const READ_BUFFER: usize = 4096;
/// Largest frame or message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Outgoing frames written before one flush, so a burst costs one syscall.
const WRITE_BATCH: usize = 64;
/// How long a closing socket waits for its peer to take the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

const CLOSE_SHUTDOWN: CloseReason = CloseReason {
    code: 1001,
    reason: "server shutting down",
};
const CLOSE_TOO_BIG: CloseReason = CloseReason {
    code: 1009,
    reason: "message too big",
};

#[derive(Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    warp::path!("ws" / "chat" / String)
        .and(warp::get())
        .and(with_state(state))
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
           ("token" = Option<String>, Query, description = "Access token (or an Authorization header)")),
    responses((status = 101, description = "Upgraded: frames `{\"data\": {\"purpose\": \"new_chat_message\", ...}}`"),
              (status = 401, description = "Missing, invalid, expired or refresh token"),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom"),
              (status = 426, description = "Not a WebSocket upgrade request")))]
pub async fn handshake(
    id: String,
    state: SharedState,
    headers: HeaderMap,
    query: WsQuery,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    let token = match query.token.as_deref() {
        Some(token) => Some(token),
        None => bearer(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )?,
    };
    let user = user_for_token(&state, token).await?;
    let room = room_id(&id)?;
    state.store.check_member(room, user.id).await?;
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
                run_socket(socket, task_state, room, user).await;
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

/// Serves one socket until the peer leaves, goes quiet, falls behind, is evicted or the node
/// shuts down.
async fn run_socket(socket: Socket, state: SharedState, room: i64, user: User) {
    let (queue, mut outgoing) = mpsc::channel::<Utf8Bytes>(state.config.ws_queue.max(1));
    let kick = Kick::default();
    let registration = state.hub.register(room, user.id, queue, kick.clone());
    let (mut sink, mut stream) = socket.split();

    let ping_every = state.config.ws_ping_interval();
    let mut pings = interval_at(Instant::now() + ping_every, ping_every);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    let close = loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break Some(CLOSE_SHUTDOWN),
            reason = kick.fired() => break Some(reason),
            frame = outgoing.recv() => {
                let Some(frame) = frame else { break None };
                // A peer that stops reading blocks this write: stay responsive to kicks and
                // shutdown meanwhile (tungstenite keeps a partly written frame buffered).
                let write = async {
                    sink.feed(Frame::Text(frame)).await?;
                    for _ in 1..WRITE_BATCH {
                        let Ok(frame) = outgoing.try_recv() else { break };
                        sink.feed(Frame::Text(frame)).await?;
                    }
                    sink.flush().await
                };
                tokio::select! {
                    written = write => if written.is_err() { break None },
                    _ = state.shutdown.cancelled() => break Some(CLOSE_SHUTDOWN),
                    reason = kick.fired() => break Some(reason),
                    _ = tokio::time::sleep(ping_every * 2) => {
                        tracing::debug!(room, user = user.id, "dropping a peer that stopped reading");
                        break None;
                    }
                }
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Frame::Text(text))) => {
                        if let Some(answer) = handle_client_frame(&state, room, &user, &text).await {
                            if !matches!(tokio::time::timeout(ping_every, sink.send(answer)).await, Ok(Ok(()))) {
                                break None;
                            }
                        }
                    }
                    Some(Ok(Frame::Binary(_))) => {
                        let answer = error_frame("Binary frames are not supported; send JSON text");
                        if !matches!(tokio::time::timeout(ping_every, sink.send(answer)).await, Ok(Ok(()))) {
                            break None;
                        }
                    }
                    Some(Ok(Frame::Close(_))) | None => break None,
                    // Pings are answered by tungstenite; pongs only prove the peer is alive.
                    Some(Ok(_)) => {}
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => break Some(CLOSE_TOO_BIG),
                    Some(Err(_)) => break None,
                }
            }
            _ = pings.tick() => {
                if last_heard.elapsed() > ping_every * 2 {
                    tracing::debug!(room, user = user.id, "dropping a silent WebSocket peer");
                    break None;
                }
                let ping = sink.send(Frame::Ping(Default::default()));
                if !matches!(tokio::time::timeout(ping_every, ping).await, Ok(Ok(()))) {
                    break None;
                }
            }
        }
    };
    // Out of the room before the goodbye, which may wait on a slow peer.
    drop(registration);
    if let Some(reason) = close {
        // A peer that does not read its close frame must not hold shutdown up.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = sink.send(close_frame(reason)).await;
            let _ = sink.close().await;
        })
        .await;
    }
}

#[derive(Deserialize)]
struct ClientFrame {
    purpose: Option<Value>,
    message: Option<Value>,
}

/// Acts on one client frame; the answer is an error frame, or nothing when the message was
/// stored (the sender sees it arrive like everyone else).
async fn handle_client_frame(
    state: &SharedState,
    room: i64,
    user: &User,
    text: &str,
) -> Option<Frame> {
    let frame: ClientFrame = match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => match serde_json::from_value(value) {
            Ok(frame) => frame,
            Err(e) => return Some(error_frame(format!("Invalid frame: {e}"))),
        },
        Ok(_) => return Some(error_frame("A frame must be a JSON object")),
        Err(e) => return Some(error_frame(format!("Frame is not valid JSON: {e}"))),
    };
    match frame.purpose.as_ref().and_then(Value::as_str) {
        Some("send_chat_message") => {}
        Some(other) => return Some(error_frame(format!("Unknown purpose: {other}"))),
        None => {
            return Some(error_frame(
                "Missing \"purpose\": expected \"send_chat_message\"",
            ))
        }
    }
    let Some(Value::String(content)) = frame.message else {
        return Some(error_frame("\"message\" must be a string"));
    };
    if let Err(e) = validate_content(&content, false) {
        return Some(error_frame(e));
    }
    match post(state, room, user.id, &content, None).await {
        Ok(_) => None,
        Err(StoreError::NotMember | StoreError::RoomNotFound) => {
            Some(error_frame("You are no longer a member of this chatroom"))
        }
        Err(e) => Some(error_frame(ApiError::from(e).errors["detail"].to_string())),
    }
}
