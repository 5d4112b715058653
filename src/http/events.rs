//! `GET /api/v1/chat/chatrooms/<id>/events/`: a room's event log, paged, for polling
//! clients and bots; the same events a socket opened with `?after_seq=` replays.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{authenticated, ok, page_limit, respond, room_id, with_state, ApiError};
use crate::state::SharedState;
use crate::store::events::ReplayGap;
use crate::store::User;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this position (default 0: from the oldest kept).
    pub after_seq: Option<i64>,
    /// How many events (default 100, at most 500).
    pub limit: Option<u32>,
}

/// A page of the log, oldest first.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    /// Each event as its socket frame's `data`: `purpose` `new_chat_message` (with `event`
    /// `message`, `member_joined` or `member_left`) or `receipt`, and its `seq`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// The room's newest position: poll again with `after_seq` set to the last event's
    /// `seq` (or this, when `events` is empty).
    pub last_seq: i64,
    /// Whether more events follow this page.
    pub has_more: bool,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "events")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state))
        .and(warp::query::<HashMap<String, String>>())
        .then(events)
        .and_then(respond)
        .boxed()
}

/// A page of the room's event log: every change (messages, joins, leaves, receipts) after
/// `after_seq`, in order.
#[utoipa::path(get, path = "/api/v1/chat/chatrooms/{id}/events/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id"), EventsQuery),
    responses((status = 200, description = "Events after `after_seq`, oldest first", body = EventPage),
              (status = 400, description = "Invalid `after_seq` or `limit`, or a position beyond the room's newest"),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom"),
              (status = 410, description = "Events after `after_seq` are no longer kept (`--event-retention`): reload the history")))]
pub async fn events(
    id: String,
    state: SharedState,
    user: User,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let room = room_id(&id)?;
    let limit = page_limit(&query, DEFAULT_PAGE, MAX_PAGE)?;
    let after_seq = match query.get("after_seq") {
        None => 0,
        Some(raw) => raw.trim().parse::<i64>().ok().filter(|seq| *seq >= 0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid query parameter `after_seq`: expected a position (a whole number from 0), got {raw:?}"
            ))
        })?,
    };
    let read = state
        .store
        .events_after(room, user.id, after_seq, limit)
        .await?;
    let page = match read {
        Ok(page) => page,
        Err(gap @ ReplayGap::Pruned { .. }) => return Err(ApiError::Gone(gap.reason())),
        Err(gap @ ReplayGap::Ahead { .. }) => return Err(ApiError::bad_request(gap.reason())),
    };
    let has_more = page.events.last().and_then(|e| e.seq) < Some(page.last_seq);
    let events = page
        .events
        .into_iter()
        .map(|mut event| {
            event.file = event.file.map(|path| state.media_urls.mint(&path));
            event.frame_data(None)
        })
        .collect();
    Ok(ok(
        StatusCode::OK,
        EventPage {
            events,
            last_seq: page.last_seq,
            has_more,
        },
    ))
}
