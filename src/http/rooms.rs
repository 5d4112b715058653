//! Listing, creating, entering and leaving chatrooms.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{authenticated, json_body, ok, respond, room_id, with_state, ApiError, Detail};
use crate::state::SharedState;
use crate::store::{Room, User};

pub const MAX_ROOM_NAME_CHARS: usize = 255;

#[derive(Deserialize, ToSchema)]
pub struct CreateRoomRequest {
    #[schema(example = "Weekend plans")]
    pub name: String,
    /// Ids of users to add besides the creator.
    #[serde(default)]
    pub members: Vec<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub id: i64,
    pub username: String,
}

#[derive(Serialize, ToSchema)]
pub struct RoomView {
    pub id: i64,
    pub name: String,
    /// The creator's user id.
    pub admin: i64,
    pub members: Vec<MemberView>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Room> for RoomView {
    fn from(room: Room) -> Self {
        Self {
            id: room.id,
            name: room.name,
            admin: room.admin,
            members: room
                .members
                .into_iter()
                .map(|m| MemberView {
                    id: m.id,
                    username: m.username,
                })
                .collect(),
            created_at: room.created_at,
            updated_at: room.updated_at,
        }
    }
}

/// What listing answers.
#[derive(Serialize, ToSchema)]
pub struct RoomList {
    pub chatrooms: Vec<RoomView>,
}

/// What creating answers.
#[derive(Serialize, ToSchema)]
pub struct CreatedRoom {
    pub chatroom: RoomView,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let list = warp::path!("api" / "v1" / "chat" / "chatrooms")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .then(list_rooms)
        .and_then(respond);
    let create = warp::path!("api" / "v1" / "chat" / "chatrooms" / "create")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .and(json_body())
        .then(create_room)
        .and_then(respond);
    let enter = warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "enter")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .then(enter_room)
        .and_then(respond);
    let leave = warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "leave")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(authenticated(state))
        .then(leave_room)
        .and_then(respond);
    list.or(create)
        .unify()
        .or(enter)
        .unify()
        .or(leave)
        .unify()
        .boxed()
}

/// The chatrooms the caller is a member of.
#[utoipa::path(get, path = "/api/v1/chat/chatrooms/", tag = "rooms", security(("bearer" = [])),
    responses((status = 200, description = "The caller's chatrooms", body = RoomList),
              (status = 401, description = "Missing or invalid access token")))]
pub async fn list_rooms(state: SharedState, user: User) -> Result<Response, ApiError> {
    let chatrooms = state
        .store
        .rooms_of(user.id)
        .await?
        .into_iter()
        .map(RoomView::from)
        .collect();
    Ok(ok(StatusCode::OK, RoomList { chatrooms }))
}

/// Create a chatroom; the creator is its admin and a member.
#[utoipa::path(post, path = "/api/v1/chat/chatrooms/create/", tag = "rooms", security(("bearer" = [])),
    request_body = CreateRoomRequest,
    responses((status = 201, description = "The new chatroom", body = CreatedRoom),
              (status = 400, description = "Invalid name, unknown member ids or too many members; nothing is created"),
              (status = 401, description = "Missing or invalid access token")))]
pub async fn create_room(
    state: SharedState,
    user: User,
    body: CreateRoomRequest,
) -> Result<Response, ApiError> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("The chatroom name may not be blank"));
    }
    if name.chars().count() > MAX_ROOM_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "The chatroom name may have at most {MAX_ROOM_NAME_CHARS} characters"
        )));
    }
    let mut everyone: Vec<i64> = body.members.clone();
    everyone.push(user.id);
    everyone.sort_unstable();
    everyone.dedup();
    let cap = state.config.max_room_members;
    if everyone.len() > cap {
        return Err(ApiError::bad_request(format!(
            "A chatroom may have at most {cap} members"
        )));
    }
    let room = state
        .store
        .create_room(name, user.id, &body.members, cap)
        .await?;
    let chatroom = RoomView::from(room);
    Ok(ok(StatusCode::CREATED, CreatedRoom { chatroom }))
}

/// Join a chatroom.
#[utoipa::path(post, path = "/api/v1/chat/chatrooms/{id}/enter/", tag = "rooms", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id")),
    responses((status = 200, description = "Joined; the room is told", body = Detail),
              (status = 400, description = "Already a member"),
              (status = 403, description = "The room is at its member limit"),
              (status = 404, description = "No such chatroom")))]
pub async fn enter_room(id: String, state: SharedState, user: User) -> Result<Response, ApiError> {
    let id = room_id(&id)?;
    let room = state
        .store
        .join_room(id, user.id, state.config.max_room_members)
        .await?;
    let detail = format!("You have successfully joined the chatroom: {}", room.name);
    Ok(ok(StatusCode::OK, Detail { detail }))
}

/// Leave a chatroom; the user's open sockets in it are closed at once.
#[utoipa::path(post, path = "/api/v1/chat/chatrooms/{id}/leave/", tag = "rooms", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id")),
    responses((status = 200, description = "Left; the room is told", body = Detail),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom")))]
pub async fn leave_room(id: String, state: SharedState, user: User) -> Result<Response, ApiError> {
    let id = room_id(&id)?;
    state.store.leave_room(id, user.id).await?;
    state.hub.evict(id, user.id);
    let detail = format!("{} have left the chatroom", user.username);
    Ok(ok(StatusCode::OK, Detail { detail }))
}
