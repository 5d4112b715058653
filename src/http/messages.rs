//! A room's history and sending to it, as JSON or as a multipart upload with an attachment.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::media::{self, Upload};
use super::{authenticated, json_body, ok, respond, room_id, with_state, ApiError};
use crate::events::attachment_url;
use crate::state::SharedState;
use crate::store::{Message, Page, StoreError, User};

pub const MAX_CONTENT_CHARS: usize = 10_000;
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

#[derive(Deserialize, ToSchema)]
pub struct SendRequest {
    #[schema(example = "Hello!")]
    pub content: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many messages (default 50, at most 200).
    pub limit: Option<u32>,
    /// Only messages older than this id: the newest `limit` of them.
    pub before: Option<i64>,
    /// Only messages newer than this id: the oldest `limit` of them.
    pub after: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    pub id: i64,
    pub content: String,
    /// Sender's user id.
    pub sender: i64,
    /// Chatroom id.
    pub chatroom: i64,
    /// URL of the attachment, if any.
    pub attachment: Option<String>,
    pub created_at: String,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id,
            content: m.content.clone(),
            sender: m.sender_id,
            chatroom: m.room_id,
            attachment: m.attachment.as_ref().map(attachment_url),
            created_at: m.created_at.clone(),
        }
    }
}

/// A page of history, oldest first.
#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub detail: Vec<MessageView>,
}

/// What a send answers: the stored message.
#[derive(Serialize, ToSchema)]
pub struct SentMessage {
    pub detail: MessageView,
}

/// Message text as stored: non-blank unless a file carries the message, and bounded.
pub fn validate_content(content: &str, has_attachment: bool) -> Result<(), String> {
    if content.trim().is_empty() && !has_attachment {
        return Err("Message content may not be blank".into());
    }
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(format!(
            "Message content may have at most {MAX_CONTENT_CHARS} characters"
        ));
    }
    Ok(())
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let history = warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "messages")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .and(warp::query::<HistoryQuery>())
        .then(history)
        .and_then(respond);
    let send_path = |is_multipart: bool| {
        warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "messages" / "send")
            .and(warp::post())
            .and(multipart(is_multipart))
            .and(with_state(state.clone()))
            .and(authenticated(state.clone()))
    };
    let send_json = send_path(false)
        .and(json_body())
        .then(send_json)
        .and_then(respond);
    let upload_limit = state.config.max_upload_bytes + media::FORM_OVERHEAD;
    let send_multipart = send_path(true)
        .and(warp::multipart::form().max_length(upload_limit))
        .then(send_multipart)
        .and_then(respond);
    history
        .or(send_multipart)
        .unify()
        .or(send_json)
        .unify()
        .boxed()
}

/// Passes only requests whose body is (`true`) or is not (`false`) multipart form data.
fn multipart(wanted: bool) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and_then(move |ct: Option<String>| async move {
            let is_multipart = ct
                .map(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"))
                .unwrap_or(false);
            if is_multipart == wanted {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// A page of the room's messages, oldest first.
#[utoipa::path(get, path = "/api/v1/chat/chatrooms/{id}/messages/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id"), HistoryQuery),
    responses((status = 200, description = "Messages, oldest first", body = MessagePage),
              (status = 400, description = "Invalid paging parameters"),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom")))]
pub async fn history(
    id: String,
    state: SharedState,
    user: User,
    query: HistoryQuery,
) -> Result<Response, ApiError> {
    let id = room_id(&id)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 {
        return Err(ApiError::bad_request("limit must be at least 1"));
    }
    let page = Page {
        limit: limit.min(MAX_PAGE),
        before: query.before,
        after: query.after,
    };
    let messages = state.store.messages(id, user.id, page).await?;
    let detail = messages.iter().map(MessageView::from).collect();
    Ok(ok(StatusCode::OK, MessagePage { detail }))
}

/// The original answered a missing room on send with `{"error": ...}`; keep that key too.
fn send_error(err: StoreError) -> ApiError {
    let mut api = ApiError::from(err);
    if api.status == StatusCode::NOT_FOUND {
        api.errors["error"] = json!("Chatroom not found");
    }
    api
}

fn created(message: &Message) -> Response {
    let detail = MessageView::from(message);
    ok(StatusCode::CREATED, SentMessage { detail })
}

/// Send a message (JSON `{content}`, or multipart `content` + `attachment`).
#[utoipa::path(post, path = "/api/v1/chat/chatrooms/{id}/messages/send/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id")),
    request_body(content(
        (SendRequest = "application/json"),
        (media::UploadForm = "multipart/form-data"))),
    responses((status = 201, description = "The stored message; broadcast to the room", body = SentMessage),
              (status = 400, description = "Blank or oversized content, or an attachment that is not an image or video"),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom"),
              (status = 413, description = "Attachment over the upload limit"),
              (status = 429, description = "Too many messages from this user (REST and WebSocket sends together)",
               headers(("retry-after" = u64, description = "Seconds to wait"))),
              (status = 503, description = "Storage is unavailable or read-only; nothing was stored"),
              (status = 507, description = "Storage is full; nothing was stored")))]
pub async fn send_json(
    id: String,
    state: SharedState,
    user: User,
    body: SendRequest,
) -> Result<Response, ApiError> {
    let id = room_id(&id).map_err(|_| send_error(StoreError::RoomNotFound))?;
    state.limits.send(user.id)?;
    validate_content(&body.content, false).map_err(ApiError::bad_request)?;
    let message = state
        .store
        .post_message(id, user.id, &body.content, None)
        .await
        .map_err(send_error)?;
    Ok(created(&message))
}

pub async fn send_multipart(
    id: String,
    state: SharedState,
    user: User,
    form: warp::multipart::FormData,
) -> Result<Response, ApiError> {
    let id = room_id(&id).map_err(|_| send_error(StoreError::RoomNotFound))?;
    state.limits.send(user.id)?;
    // Refuse outsiders before a single byte of their upload is written.
    state
        .store
        .check_member(id, user.id)
        .await
        .map_err(send_error)?;
    let Upload {
        content,
        attachment,
    } = media::receive(
        form,
        &state.config.media_dir(),
        state.config.max_upload_bytes,
    )
    .await?;
    let content = content.unwrap_or_default();
    validate_content(&content, attachment.is_some()).map_err(ApiError::bad_request)?;
    let stored = attachment.as_ref().map(|file| file.attachment.clone());
    let message = state
        .store
        .post_message(id, user.id, &content, stored)
        .await
        .map_err(send_error)?;
    // Only now is the file referenced by a stored message; until here it is removed on error.
    if let Some(file) = attachment {
        file.keep();
    }
    Ok(created(&message))
}
