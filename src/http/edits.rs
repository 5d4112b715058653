//! Editing a message and deleting it for everyone: `PATCH` and `DELETE
//! /api/v1/chat/chatrooms/<id>/messages/<mid>/`, and the socket's `edit_message` and
//! `delete_message` frames, which share [`edit`] and [`delete`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::messages::{MessageView, Tombstone};
use super::{authenticated, json_body, ok, respond, room_id, with_state, ApiError};
use crate::domain::values::Content;
use crate::state::SharedState;
use crate::store::edits::ChangeRule;
use crate::store::{Message, StoreError, User};

#[derive(Deserialize, ToSchema)]
pub struct EditRequest {
    #[schema(example = "Hello, fixed!")]
    pub content: String,
}

/// What an edit answers: the message as it now is.
#[derive(Serialize, ToSchema)]
pub struct EditedMessage {
    pub message: MessageView,
}

/// What a delete answers: the tombstone history keeps.
#[derive(Serialize, ToSchema)]
pub struct DeletedMessage {
    pub deleted: Tombstone,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let message = || {
        warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "messages" / String)
            .and(with_state(state.clone()))
            .and(authenticated(state.clone()))
    };
    let patch = message()
        .and(warp::patch())
        .and(json_body())
        .then(patch_message)
        .and_then(respond);
    let delete = message()
        .and(warp::delete())
        .then(delete_message)
        .and_then(respond);
    patch.or(delete).unify().boxed()
}

pub(super) fn message_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::from(StoreError::MessageNotFound))
}

/// Edits message `id` of `room` for `user`: the content rules of a send, then the store's
/// (the sender only, within `--edit-window`).
pub async fn edit(
    state: &SharedState,
    room: i64,
    user: i64,
    id: i64,
    content: String,
) -> Result<Message, ApiError> {
    state.limits.send(user)?;
    let content = Content::parse(content, false)?;
    let rule = ChangeRule {
        window_secs: i64::from(state.config.edit_window_secs),
        admin_any_time: false,
    };
    Ok(state
        .store
        .edit_message(room, user, id, content.as_str(), rule)
        .await?)
}

/// Deletes message `id` of `room` for everyone as `user` (its sender within
/// `--delete-window`, the room's admin at any time), and its file.
pub async fn delete(
    state: &SharedState,
    room: i64,
    user: i64,
    id: i64,
) -> Result<Message, ApiError> {
    state.limits.send(user)?;
    let rule = ChangeRule {
        window_secs: i64::from(state.config.delete_window_secs),
        admin_any_time: true,
    };
    let (tombstone, attachment) = state.store.delete_message(room, user, id, rule).await?;
    if let Some(file) = attachment {
        // The row is gone, so the file is served to no one already; this frees the disk.
        let path = state.config.media_dir().join(&file.file_name);
        if let Err(error) = tokio::fs::remove_file(&path).await {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, file = %file.file_name, "removing a deleted message's file failed");
            }
        }
    }
    Ok(tombstone)
}

/// Edit a message: its sender, within `--edit-window` (15 minutes) of sending.
#[utoipa::path(patch, path = "/api/v1/chat/chatrooms/{id}/messages/{mid}/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id"), ("mid" = i64, Path, description = "Message id")),
    request_body = EditRequest,
    responses((status = 200, description = "The edited message (`edited_at` set); `message_edited` goes to the room", body = EditedMessage),
              (status = 400, description = "Blank or oversized content"),
              (status = 403, description = "Not a member, not the sender, or past the edit window"),
              (status = 404, description = "No such chatroom, or no such (undeleted) message in it"),
              (status = 429, description = "Too many sends, edits and deletes from this user",
               headers(("retry-after" = u64, description = "Seconds to wait")))))]
pub async fn patch_message(
    id: String,
    mid: String,
    state: SharedState,
    user: User,
    body: EditRequest,
) -> Result<Response, ApiError> {
    let (room, mid) = (room_id(&id)?, message_id(&mid)?);
    let edited = edit(&state, room, user.id, mid, body.content).await?;
    let message = MessageView::from(&edited).signed(&state.media_urls);
    Ok(ok(StatusCode::OK, EditedMessage { message }))
}

/// Delete a message for everyone: its sender within `--delete-window` (2 days), or the
/// room's admin at any time. Its content and file are removed; history keeps a tombstone.
#[utoipa::path(delete, path = "/api/v1/chat/chatrooms/{id}/messages/{mid}/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id"), ("mid" = i64, Path, description = "Message id")),
    responses((status = 200, description = "The tombstone; `message_deleted` goes to the room", body = DeletedMessage),
              (status = 403, description = "Not a member, neither the sender nor the room's admin, or past the delete window"),
              (status = 404, description = "No such chatroom, or no such (undeleted) message in it"),
              (status = 429, description = "Too many sends, edits and deletes from this user",
               headers(("retry-after" = u64, description = "Seconds to wait")))))]
pub async fn delete_message(
    id: String,
    mid: String,
    state: SharedState,
    user: User,
) -> Result<Response, ApiError> {
    let (room, mid) = (room_id(&id)?, message_id(&mid)?);
    let tombstone = delete(&state, room, user.id, mid).await?;
    Ok(ok(
        StatusCode::OK,
        DeletedMessage {
            deleted: Tombstone::from(&tombstone),
        },
    ))
}
