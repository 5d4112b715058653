//! Listing, creating, entering and leaving chatrooms.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::messages::{HistoryEntry, MessageView, Tombstone};
use super::{
    authenticated, json_body, ok, page_limit, respond, room_id, with_state, ApiError, Detail,
};
use crate::domain::conversations::{ListCursor, ListPage, RoomKind};
use crate::domain::values::RoomName;
use crate::state::SharedState;
use crate::store::{Member, Room, User};

/// Most member ids one create request may name: each is added without being asked.
pub const MAX_MEMBERS_PER_REQUEST: usize = 100;

#[derive(Deserialize, ToSchema)]
pub struct CreateRoomRequest {
    /// Required; a missing name is answered as Django REST framework did:
    /// `{"name": ["This field is required."]}` under `errors`.
    #[schema(example = "Weekend plans", required = true)]
    pub name: Option<String>,
    /// Ids of users to add besides the creator, at most 100 per request.
    #[serde(default)]
    pub members: Vec<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub id: i64,
    pub username: String,
}

/// A person as other users see them (no email, no phone number).
#[derive(Serialize, ToSchema)]
pub struct PersonView {
    pub id: i64,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
}

impl From<Member> for PersonView {
    fn from(m: Member) -> Self {
        Self {
            id: m.id,
            username: m.username,
            first_name: m.first_name,
            last_name: m.last_name,
        }
    }
}

impl From<User> for PersonView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            first_name: u.first_name,
            last_name: u.last_name,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RoomView {
    pub id: i64,
    /// A direct conversation is named after the other person.
    pub name: String,
    /// The creator's user id.
    pub admin: i64,
    /// Every member; in the chat list, at most 10 (see `member_count` and `.../members/`).
    pub members: Vec<MemberView>,
    pub created_at: String,
    pub updated_at: String,
    pub kind: RoomKind,
    pub member_count: i64,
    /// Members with a socket open on any node now.
    pub online_count: i64,
    /// Direct conversations: the other person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PersonView>,
}

impl RoomView {
    /// The room as `viewer` sees it.
    pub fn new(room: Room, viewer: i64) -> Self {
        let peer = match room.kind {
            RoomKind::Direct => room.members.iter().find(|m| m.id != viewer).cloned(),
            RoomKind::Group => None,
        };
        let name = peer.as_ref().map_or(room.name, |p| p.username.clone());
        Self {
            id: room.id,
            name,
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
            kind: room.kind,
            member_count: room.member_count,
            online_count: 0,
            peer: peer.map(PersonView::from),
        }
    }
}

/// Sets each view's `online_count`, in one query for them all.
pub async fn count_online<'a>(
    state: &SharedState,
    views: impl IntoIterator<Item = &'a mut RoomView>,
) -> Result<(), ApiError> {
    let mut views: Vec<&mut RoomView> = views.into_iter().collect();
    let ids = views.iter().map(|view| view.id).collect();
    let now = chrono::Utc::now().timestamp_millis();
    let counts: HashMap<i64, i64> = state
        .store
        .online_counts(ids, now)
        .await?
        .into_iter()
        .collect();
    for view in &mut views {
        view.online_count = counts.get(&view.id).copied().unwrap_or(0);
    }
    Ok(())
}

/// A chat-list entry: the room and the caller's news in it.
#[derive(Serialize, ToSchema)]
pub struct ChatListEntry {
    #[serde(flatten)]
    pub room: RoomView,
    /// The newest message (its tombstone once deleted for everyone), or null.
    pub last_message: Option<HistoryEntry>,
    /// Messages after `last_read_id` that others sent.
    pub unread_count: i64,
    /// The caller's read position (a message id; 0: nothing read).
    pub last_read_id: i64,
}

/// What listing answers: a page, newest activity first.
#[derive(Serialize, ToSchema)]
pub struct RoomList {
    pub chatrooms: Vec<ChatListEntry>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next: Option<String>,
}

/// Most rooms per chat-list page, and the default.
pub const MAX_LIST_PAGE: u32 = 200;
pub const DEFAULT_LIST_PAGE: u32 = 50;

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
        .and(warp::query::<HashMap<String, String>>())
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

/// The caller's chat list: a page of their chatrooms, newest activity first, each with its
/// newest message and unread count.
#[utoipa::path(get, path = "/api/v1/chat/chatrooms/", tag = "rooms", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query, description = "Rooms per page: 1 to 200, default 50"),
           ("cursor" = Option<String>, Query, description = "The `next` of the previous page")),
    responses((status = 200, description = "A page of the caller's chatrooms", body = RoomList),
              (status = 400, description = "Invalid `limit` or `cursor`"),
              (status = 401, description = "Missing or invalid access token")))]
pub async fn list_rooms(
    state: SharedState,
    user: User,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let limit = page_limit(&query, DEFAULT_LIST_PAGE, MAX_LIST_PAGE)?;
    let after = match query.get("cursor") {
        None => None,
        Some(raw) => Some(ListCursor::parse(raw).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid query parameter `cursor`: expected the `next` of a previous page, got {raw:?}"
            ))
        })?),
    };
    let page = state
        .store
        .chat_list(user.id, ListPage { limit, after })
        .await?;
    let next = (page.len() == limit as usize)
        .then(|| page.last())
        .flatten()
        .map(|last| {
            ListCursor {
                activity: last.activity,
                room: last.room.id,
            }
            .encode()
        });
    let mut chatrooms: Vec<ChatListEntry> = page
        .into_iter()
        .map(|entry| ChatListEntry {
            room: RoomView::new(entry.room, user.id),
            last_message: entry.last_message.as_ref().map(|m| match m.deleted {
                true => HistoryEntry::Deleted(Tombstone::from(m)),
                false => {
                    HistoryEntry::Message(Box::new(MessageView::from(m).signed(&state.media_urls)))
                }
            }),
            unread_count: entry.unread_count,
            last_read_id: entry.last_read_id,
        })
        .collect();
    count_online(&state, chatrooms.iter_mut().map(|entry| &mut entry.room)).await?;
    Ok(ok(StatusCode::OK, RoomList { chatrooms, next }))
}

/// Create a chatroom; the creator is its admin and a member.
#[utoipa::path(post, path = "/api/v1/chat/chatrooms/create/", tag = "rooms", security(("bearer" = [])),
    request_body = CreateRoomRequest,
    responses((status = 201, description = "The new chatroom", body = CreatedRoom),
              (status = 400, description = "Missing name (`{\"name\": [\"This field is required.\"]}`), invalid name, unknown member ids, more than 100 member ids (`validations.members`) or too many members; nothing is created"),
              (status = 403, description = "A member named has blocked the caller; nothing is created"),
              (status = 401, description = "Missing or invalid access token"),
              (status = 415, description = "The body is not sent as `application/json`"),
              (status = 429, description = "Too many chatrooms created by this user",
               headers(("retry-after" = u64, description = "Seconds to wait")))))]
pub async fn create_room(
    state: SharedState,
    user: User,
    body: CreateRoomRequest,
) -> Result<Response, ApiError> {
    let Some(name) = body.name.as_deref() else {
        return Err(ApiError::FieldRequired("name"));
    };
    if body.members.len() > MAX_MEMBERS_PER_REQUEST {
        let mut fields = crate::auth::validate::FieldErrors::new();
        fields.insert(
            "members".into(),
            format!("At most {MAX_MEMBERS_PER_REQUEST} members may be added per request"),
        );
        return Err(ApiError::validations(fields));
    }
    let name = RoomName::parse(name)?;
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
    // Counted only for requests that would create a room.
    state.limits.create_room(user.id)?;
    let room = state
        .store
        .create_room(name.as_str(), user.id, &body.members, cap)
        .await?;
    let mut chatroom = RoomView::new(room, user.id);
    count_online(&state, [&mut chatroom]).await?;
    Ok(ok(StatusCode::CREATED, CreatedRoom { chatroom }))
}

/// Join a chatroom.
#[utoipa::path(post, path = "/api/v1/chat/chatrooms/{id}/enter/", tag = "rooms", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id")),
    responses((status = 200, description = "Joined; the room is told", body = Detail),
              (status = 400, description = "Already a member: `Chatroom already joined by you`"),
              (status = 403, description = "The room is at its member limit, or is a direct conversation"),
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
              (status = 403, description = "Not a member, or a direct conversation (which cannot be left)"),
              (status = 404, description = "No such chatroom")))]
pub async fn leave_room(id: String, state: SharedState, user: User) -> Result<Response, ApiError> {
    let id = room_id(&id)?;
    state.store.leave_room(id, user.id).await?;
    state.hub.evict(id, user.id);
    let detail = format!("{} have left the chatroom", user.username);
    Ok(ok(StatusCode::OK, Detail { detail }))
}
