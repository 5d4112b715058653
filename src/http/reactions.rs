//! Reactions: `PUT` and `DELETE /api/v1/chat/chatrooms/<id>/messages/<mid>/reaction/`, and
//! the socket's `react` frame, which shares [`react`]. One reaction per member per message.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::edits::message_id;
use super::{authenticated, json_body, ok, respond, room_id, with_state, ApiError};
use crate::domain::values::Emoji;
use crate::domain::{ReactionCount, Reactions};
use crate::state::SharedState;
use crate::store::User;

#[derive(Deserialize, ToSchema)]
pub struct ReactionRequest {
    /// Exactly one emoji (one grapheme, at most 32 bytes).
    #[schema(example = "\u{1F44D}")]
    pub emoji: String,
}

/// What a reaction change answers: the message's reactions and the caller's own.
#[derive(Serialize, ToSchema)]
pub struct ReactionState {
    pub message_id: i64,
    /// Most used first.
    pub reactions: Vec<ReactionCount>,
    /// The caller's reaction; `null` when they have none.
    pub my_reaction: Option<String>,
}

impl From<Reactions> for ReactionState {
    fn from(r: Reactions) -> Self {
        Self {
            message_id: r.message_id,
            reactions: r.counts,
            my_reaction: r.mine,
        }
    }
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let reaction = || {
        warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "messages" / String / "reaction")
            .and(with_state(state.clone()))
            .and(authenticated(state.clone()))
    };
    let put = reaction()
        .and(warp::put())
        .and(json_body())
        .then(put_reaction)
        .and_then(respond);
    let delete = reaction()
        .and(warp::delete())
        .then(delete_reaction)
        .and_then(respond);
    put.or(delete).unify().boxed()
}

/// Sets (`Some`, validated as one emoji) or removes `user`'s reaction to message `id` of
/// `room`; counted with sends, edits and deletes against the user's rate.
pub async fn react(
    state: &SharedState,
    room: i64,
    user: i64,
    id: i64,
    emoji: Option<&str>,
) -> Result<Reactions, ApiError> {
    state.limits.send(user)?;
    let emoji = emoji.map(Emoji::parse).transpose()?;
    let emoji = emoji.as_ref().map(Emoji::as_str);
    Ok(state.store.react(room, user, id, emoji).await?)
}

/// React to a message with one emoji; it replaces the caller's earlier reaction.
#[utoipa::path(put, path = "/api/v1/chat/chatrooms/{id}/messages/{mid}/reaction/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id"), ("mid" = i64, Path, description = "Message id")),
    request_body = ReactionRequest,
    responses((status = 200, description = "The message's reactions; a change sends `reaction` to the room", body = ReactionState),
              (status = 400, description = "Not exactly one emoji"),
              (status = 403, description = "Not a member of the chatroom, or a direct conversation where one blocked the other"),
              (status = 404, description = "No such chatroom, or no such (undeleted) message in it"),
              (status = 429, description = "Too many sends, edits, deletes and reactions from this user",
               headers(("retry-after" = u64, description = "Seconds to wait")))))]
pub async fn put_reaction(
    id: String,
    mid: String,
    state: SharedState,
    user: User,
    body: ReactionRequest,
) -> Result<Response, ApiError> {
    let (room, mid) = (room_id(&id)?, message_id(&mid)?);
    let reactions = react(&state, room, user.id, mid, Some(&body.emoji)).await?;
    Ok(ok(StatusCode::OK, ReactionState::from(reactions)))
}

/// Take back the caller's reaction to a message (a 200 with the counts even if there was none).
#[utoipa::path(delete, path = "/api/v1/chat/chatrooms/{id}/messages/{mid}/reaction/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id"), ("mid" = i64, Path, description = "Message id")),
    responses((status = 200, description = "The message's reactions; a change sends `reaction` to the room", body = ReactionState),
              (status = 403, description = "Not a member of the chatroom"),
              (status = 404, description = "No such chatroom, or no such (undeleted) message in it"),
              (status = 429, description = "Too many sends, edits, deletes and reactions from this user",
               headers(("retry-after" = u64, description = "Seconds to wait")))))]
pub async fn delete_reaction(
    id: String,
    mid: String,
    state: SharedState,
    user: User,
) -> Result<Response, ApiError> {
    let (room, mid) = (room_id(&id)?, message_id(&mid)?);
    let reactions = react(&state, room, user.id, mid, None).await?;
    Ok(ok(StatusCode::OK, ReactionState::from(reactions)))
}
