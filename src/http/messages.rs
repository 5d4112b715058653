//! A room's history and sending to it, as JSON or as a multipart upload with an attachment.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::media::{self, Upload};
use super::{authenticated, json_body, ok, respond, room_id, with_state, ApiError};
use crate::auth::media_url::MediaUrls;
use crate::domain::conversations::{MessageState, ReceiptKind, ReceiptMark};
use crate::domain::events::attachment_url;
use crate::domain::values::Content;
use crate::domain::{ReactionCount, ReplyRef};
use crate::state::SharedState;
use crate::store::{Message, Page, StoreError, User};

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;
const LIMIT_RANGE: &str = "a whole number from 1 to 200 (larger is read as 200)";

#[derive(Deserialize, ToSchema)]
pub struct SendRequest {
    #[schema(example = "Hello!")]
    pub content: String,
    /// The id of the message of this chatroom this one answers.
    pub reply_to: Option<i64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many messages (default 50, at most 200).
    pub limit: Option<u32>,
    /// Only messages older than this id: the newest `limit` of them.
    pub before: Option<i64>,
    /// Only messages newer than this id: the oldest `limit` of them.
    pub after: Option<i64>,
}

impl HistoryQuery {
    /// Each parameter checked on its own, so a bad one is named with what it may be.
    fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        fn number<T: std::str::FromStr + PartialOrd>(
            query: &HashMap<String, String>,
            name: &str,
            min: T,
            range: &str,
        ) -> Result<Option<T>, ApiError> {
            let Some(raw) = query.get(name) else {
                return Ok(None);
            };
            match raw.trim().parse::<T>() {
                Ok(value) if value >= min => Ok(Some(value)),
                _ => Err(ApiError::bad_request(format!(
                    "Invalid query parameter `{name}`: expected {range}, got {raw:?}"
                ))),
            }
        }
        let id = "a message id (a whole number)";
        Ok(Self {
            limit: number::<u64>(query, "limit", 1, LIMIT_RANGE)?
                .map(|limit| u32::try_from(limit.min(u64::from(MAX_PAGE))).unwrap_or(MAX_PAGE)),
            before: number(query, "before", i64::MIN, id)?,
            after: number(query, "after", i64::MIN, id)?,
        })
    }
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
    /// The caller's own messages: other members who have it delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_count: Option<i64>,
    /// The caller's own messages: other members who read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_count: Option<i64>,
    /// The caller's own messages in a direct conversation: `sent`, `delivered` or `read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// When its sender last edited it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// The message this one answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyRef>,
    /// Members' reactions, most used first (history only; absent when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    /// The caller's own reaction (history only; absent when they have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_reaction: Option<String>,
}

/// What history keeps of a message deleted for everyone.
#[derive(Serialize, ToSchema)]
pub struct Tombstone {
    pub id: i64,
    /// Always `true`.
    pub deleted: bool,
    /// Sender's user id.
    pub sender: i64,
    pub created_at: String,
}

impl From<&Message> for Tombstone {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id,
            deleted: true,
            sender: m.sender_id,
            created_at: m.created_at.clone(),
        }
    }
}

/// An entry of a history page: a message, or the tombstone of a deleted one.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum HistoryEntry {
    // Boxed: a message is several times the size of a tombstone.
    Message(Box<MessageView>),
    Deleted(Tombstone),
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
            delivered_count: None,
            read_count: None,
            status: None,
            edited_at: m.edited_at.clone(),
            reply_to: m.reply_to.clone(),
            reactions: Vec::new(),
            my_reaction: None,
        }
    }
}

impl MessageView {
    /// With its attachment URL minted for the member being answered.
    pub fn signed(mut self, urls: &MediaUrls) -> Self {
        self.attachment = self.attachment.map(|path| urls.mint(&path));
        self
    }

    /// The message with how far it got, as its sender sees it.
    fn with_state(m: &Message, state: MessageState) -> Self {
        Self {
            delivered_count: Some(state.delivered_count),
            read_count: Some(state.read_count),
            status: state.status,
            ..Self::from(m)
        }
    }
}

/// A page of history, oldest first.
#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub detail: Vec<HistoryEntry>,
}

/// What a send answers: the stored message.
#[derive(Serialize, ToSchema)]
pub struct SentMessage {
    pub detail: MessageView,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let history = warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "messages")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
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

/// The page's reactions, in one store query (tombstones have none).
async fn add_reactions(
    state: &SharedState,
    room: i64,
    viewer: i64,
    detail: &mut [HistoryEntry],
) -> Result<(), ApiError> {
    let ids = detail
        .iter()
        .filter_map(|entry| match entry {
            HistoryEntry::Message(m) => Some(m.id),
            HistoryEntry::Deleted(_) => None,
        })
        .collect();
    let mut counts = state
        .store
        .reaction_counts(room, viewer, ids)
        .await?
        .into_iter();
    let mut next = counts.next();
    // Both are in message id order, so one pass pairs them.
    for entry in detail.iter_mut() {
        if let (HistoryEntry::Message(m), Some(found)) = (entry, &next) {
            if m.id == found.message_id {
                let found = next.take().expect("matched above");
                (m.reactions, m.my_reaction) = (found.counts, found.mine);
                next = counts.next();
            }
        }
    }
    Ok(())
}

/// A page of the room's messages, oldest first.
#[utoipa::path(get, path = "/api/v1/chat/chatrooms/{id}/messages/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id"), HistoryQuery),
    responses((status = 200, description = "Messages, oldest first", body = MessagePage),
              (status = 400, description = "Invalid paging parameters; the message names the parameter and its allowed range"),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom")))]
pub async fn history(
    id: String,
    state: SharedState,
    user: User,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let id = room_id(&id)?;
    let query = HistoryQuery::parse(&query)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let page = Page {
        limit: limit.min(MAX_PAGE),
        before: query.before,
        after: query.after,
    };
    let messages = state.store.messages(id, user.id, page).await?;
    let positions = if messages.iter().any(|m| m.sender_id == user.id) {
        Some(state.store.positions(id).await?)
    } else {
        None
    };
    let mut detail: Vec<HistoryEntry> = messages
        .iter()
        .map(|m| match &positions {
            _ if m.deleted => HistoryEntry::Deleted(Tombstone::from(m)),
            Some(positions) if m.sender_id == user.id => HistoryEntry::Message(Box::new(
                MessageView::with_state(m, positions.state_of(m.id, user.id))
                    .signed(&state.media_urls),
            )),
            _ => HistoryEntry::Message(Box::new(MessageView::from(m).signed(&state.media_urls))),
        })
        .collect();
    add_reactions(&state, id, user.id, &mut detail).await?;
    // A page the caller was given counts as delivered to them.
    if let Some(newest) = messages.iter().rev().find(|m| m.sender_id != user.id) {
        state.receipts.mark(ReceiptMark {
            room: id,
            user: user.id,
            kind: ReceiptKind::Delivered,
            upto: newest.id,
        });
    }
    Ok(ok(StatusCode::OK, MessagePage { detail }))
}

/// The original answered a missing room on send with `{"error": ...}`; keep that key too.
fn send_error(err: StoreError) -> ApiError {
    match err {
        StoreError::RoomNotFound => ApiError::SendRoomNotFound,
        other => ApiError::from(other),
    }
}

/// The stored message, as its sender sees it: delivered to and read by no one yet.
fn created(message: &Message, urls: &MediaUrls) -> Response {
    let fresh = MessageState {
        delivered_count: 0,
        read_count: 0,
        status: None,
    };
    let detail = MessageView::with_state(message, fresh).signed(urls);
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
              (status = 403, description = "Not a member, or a direct conversation where one of the two blocked the other"),
              (status = 404, description = "No such chatroom"),
              (status = 411, description = "A multipart upload sent without Content-Length (chunked): `A Content-Length header is required`; send the form with its length"),
              (status = 413, description = "Attachment over the upload limit"),
              (status = 415, description = "A body that is neither `application/json` nor `multipart/form-data`"),
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
    let content = Content::parse(body.content, false)?;
    let message = state
        .store
        .post_reply(id, user.id, content.as_str(), None, body.reply_to)
        .await
        .map_err(send_error)?;
    state.metrics.message_stored();
    Ok(created(&message, &state.media_urls))
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
    let content = Content::parse(content.unwrap_or_default(), attachment.is_some())?;
    let stored = attachment.as_ref().map(|file| file.attachment.clone());
    let message = state
        .store
        .post_message(id, user.id, content.as_str(), stored)
        .await
        .map_err(send_error)?;
    state.metrics.message_stored();
    // Only now is the file referenced by a stored message; until here it is removed on error.
    if let Some(file) = attachment {
        file.keep();
    }
    Ok(created(&message, &state.media_urls))
}
