//! Direct conversations and a room's full member list.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::rooms::{count_online, CreatedRoom, PersonView, RoomView};
use super::{authenticated, json_body, ok, page_limit, respond, room_id, with_state, ApiError};
use crate::domain::conversations::MemberPage;
use crate::state::SharedState;
use crate::store::User;

pub const DEFAULT_MEMBER_PAGE: u32 = 100;
pub const MAX_MEMBER_PAGE: u32 = 500;

#[derive(Deserialize, ToSchema)]
pub struct DirectRequest {
    /// The other person's user id.
    pub user_id: i64,
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<PersonView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next: Option<String>,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let direct = warp::path!("api" / "v1" / "chat" / "direct")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .and(json_body())
        .then(direct)
        .and_then(respond);
    let members = warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "members")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state))
        .and(warp::query::<HashMap<String, String>>())
        .then(members)
        .and_then(respond);
    direct.or(members).unify().boxed()
}

/// Open the direct conversation with a person: made the first time (201), the same room
/// ever after from either side (200).
#[utoipa::path(post, path = "/api/v1/chat/direct/", tag = "rooms", security(("bearer" = [])),
    request_body = DirectRequest,
    responses((status = 201, description = "The new direct conversation", body = CreatedRoom),
              (status = 200, description = "The existing direct conversation", body = CreatedRoom),
              (status = 400, description = "Yourself"),
              (status = 403, description = "One of you blocked the other"),
              (status = 404, description = "No such user"),
              (status = 415, description = "The body is not sent as `application/json`")))]
pub async fn direct(
    state: SharedState,
    caller: User,
    body: DirectRequest,
) -> Result<Response, ApiError> {
    if body.user_id == caller.id {
        return Err(ApiError::bad_request(
            "A direct conversation needs another person",
        ));
    }
    let (room, created) = state.store.direct_room(caller.id, body.user_id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut chatroom = RoomView::new(room, caller.id);
    count_online(&state, [&mut chatroom]).await?;
    Ok(ok(status, CreatedRoom { chatroom }))
}

/// A page of a room's members, by user id, for its members.
#[utoipa::path(get, path = "/api/v1/chat/chatrooms/{id}/members/", tag = "rooms", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id"),
           ("limit" = Option<u32>, Query, description = "Members per page: 1 to 500, default 100"),
           ("cursor" = Option<String>, Query, description = "The `next` of the previous page")),
    responses((status = 200, description = "A page of members", body = MemberList),
              (status = 400, description = "Invalid `limit` or `cursor`"),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom")))]
pub async fn members(
    id: String,
    state: SharedState,
    caller: User,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let room = room_id(&id)?;
    let limit = page_limit(&query, DEFAULT_MEMBER_PAGE, MAX_MEMBER_PAGE)?;
    let after = match query.get("cursor") {
        None => None,
        Some(raw) => Some(raw.trim().parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid query parameter `cursor`: expected the `next` of a previous page, got {raw:?}"
            ))
        })?),
    };
    let page = state
        .store
        .room_members(room, caller.id, MemberPage { limit, after })
        .await?;
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|m| m.id.to_string()))
        .flatten();
    let members = page.into_iter().map(PersonView::from).collect();
    Ok(ok(StatusCode::OK, MemberList { members, next }))
}
