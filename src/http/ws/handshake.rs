//! The upgrade of `GET /ws/chat/<id>/`: authentication, membership and the socket's buffers.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::protocol::Start;
use crate::http::shed::Slots;
use crate::http::{bearer, respond, room_id, user_for_token, with_state, ApiError};
use crate::state::SharedState;
use crate::store::Page;

/// Bytes read per syscall. Small because every socket holds one for good, and tungstenite
/// zero-fills it before each read attempt, which a socket makes at every wake-up (a delivery
/// included); a bigger client frame grows it as needed.
const READ_BUFFER: usize = 1024;
/// Largest frame or message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Bytes tungstenite gathers before writing to the socket (its default).
const WRITE_BUFFER: usize = 128 * 1024;
/// The most tungstenite may hold unwritten: `WRITE_BUFFER` plus room for the largest frame
/// (a 10,000-character message, escaped, is under 64 KiB). Past it, a write fails and the
/// socket is dropped, and the pong owed to a ping waits in tungstenite's single slot, where
/// a newer one replaces it: a peer that floods pings and never reads cannot grow this.
const MAX_WRITE_BUFFER: usize = 2 * WRITE_BUFFER;

#[derive(Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    /// Replay every message after this id before live ones.
    since: Option<i64>,
    /// Replay every event of the room's log after this position before live ones.
    after_seq: Option<i64>,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let connections = Slots::new(
        state.config.max_connections,
        "Too many open connections; try again shortly",
        state.metrics.shed(crate::metrics::Shed::Sockets).clone(),
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
///
/// The first frame is `{"data": {"purpose": "receipts", "chat_id", "positions": [{user_id,
/// delivered_upto, read_upto}]}}`: every member's positions. Then messages, and
/// `{"data": {"purpose": "receipt", "event": "delivered"|"read", "chat_id", "user_id", "upto"}}`
/// when a member's position moves (coalesced: one per member and kind per interval, 200 ms
/// in a room of up to 10 sockets, longer in bigger ones, at most 2 s). The
/// caller's own messages carry `delivered_count`, `read_count` and, in direct rooms, `status`.
///
/// Client frames: `{"purpose": "send_chat_message", "message": "..."}`,
/// `{"purpose": "mark_read", "upto": <message id>}` and
/// `{"purpose": "catch_up", "since": <message id>}`, which replays every message after `since`
/// (paged through the socket: no gap, no duplicate), and `{"purpose": "catch_up",
/// "after_seq": <seq>}`, which replays every event of the room's log after that position.
/// Durable frames carry the room's `seq`; a position the log no longer keeps (or never had)
/// is answered `{"data": {"purpose": "reset", "chat_id", "reason"}}`: reload the history. `catch_up` frames are limited per user
/// (`--rate-limit-catch-up`); one over the limit, like any bad frame, is answered
/// `{"success": false, "errors": {"detail": "..."}}` and the socket stays open. A client's
/// close frame is echoed with its code; the server closes with 1001 (shutdown), 1002
/// (protocol error), 1007 (invalid UTF-8), 1008 (policy: left the room, send rate, slow
/// reader), 1009 (frame or message over 64 KiB) or 1011 (storage unavailable).
#[utoipa::path(get, path = "/ws/chat/{id}/", tag = "websocket",
    params(("id" = i64, Path, description = "Chatroom id"),
           ("token" = Option<String>, Query, description = "Access token (or an Authorization header)"),
           ("since" = Option<i64>, Query, description = "Replay every message after this id first, then live ones, without gaps or duplicates"),
           ("after_seq" = Option<i64>, Query, description = "Replay every event of the room's log after this position first (not with `since`), then live ones, without gaps or duplicates")),
    responses((status = 101, description = "Upgraded: frames `{\"data\": {\"purpose\": \"new_chat_message\", ...}}`"),
              (status = 400, description = "Both `since` and `after_seq`, or a negative one"),
              (status = 401, description = "Missing, invalid, expired or refresh token"),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom"),
              (status = 429, description = "Too many connection attempts, or too many open sockets, for this user",
               headers(("retry-after" = u64, description = "Seconds to wait"))),
              (status = 426, description = "Not a WebSocket upgrade request"),
              (status = 503, description = "The node has `--max-connections` sockets open, or is draining (`chatnode admin node drain`); retry after `Retry-After` seconds")))]
pub async fn handshake(
    id: String,
    state: SharedState,
    connections: Slots,
    headers: HeaderMap,
    query: WsQuery,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    if state.hub.is_draining() {
        return Err(ApiError::overloaded(
            "This node is restarting; connect to another node",
        ));
    }
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
    // Without `since` or `after_seq`, the feed starts at the handshake: everything stored
    // after this point reaches the client, even what commits before the room's subscription
    // is in place.
    let start = match Start::parse(query.since, query.after_seq).map_err(ApiError::bad_request)? {
        Some(start) => start,
        None => Start::Since(newest_message_id(&state, room, user.id).await?),
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
        return Err(ApiError::UpgradeRequired);
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
                    .write_buffer_size(WRITE_BUFFER)
                    .max_write_buffer_size(MAX_WRITE_BUFFER)
                    .max_message_size(Some(MAX_CLIENT_MESSAGE))
                    .max_frame_size(Some(MAX_CLIENT_MESSAGE));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                super::session::run_socket(socket, task_state, room, user, start, slot).await;
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
