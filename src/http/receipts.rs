//! Read receipts over REST, and who got and read a message.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{authenticated, json_body, ok, respond, room_id, with_state, ApiError};
use crate::domain::conversations::{MessageReceipt, ReceiptKind, ReceiptMark};
use crate::state::SharedState;
use crate::store::{StoreError, User};

#[derive(Deserialize, ToSchema)]
pub struct ReadRequest {
    /// Everything up to this message id is read.
    pub upto: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ReadPosition {
    pub chat_id: i64,
    /// The caller's read position now (a lower `upto` leaves it where it was).
    pub upto: i64,
    pub unread_count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ReadAnswer {
    pub read: ReadPosition,
}

#[derive(Serialize, ToSchema)]
pub struct ReceiptList {
    /// One per other member of the room.
    pub receipts: Vec<MessageReceipt>,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let read = warp::path!("api" / "v1" / "chat" / "chatrooms" / String / "read")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .and(json_body())
        .then(mark_read)
        .and_then(respond);
    let receipts = warp::path!(
        "api" / "v1" / "chat" / "chatrooms" / String / "messages" / String / "receipts"
    )
    .and(warp::get())
    .and(with_state(state.clone()))
    .and(authenticated(state))
    .then(message_receipts)
    .and_then(respond);
    read.or(receipts).unify().boxed()
}

/// Refuses a read mark of a non-member, or past the room's newest message.
pub async fn check_read(state: &SharedState, mark: ReceiptMark) -> Result<(), ApiError> {
    if mark.upto < 0 {
        return Err(ApiError::bad_request("`upto` must be a message id"));
    }
    let newest = state.store.newest_message_id(mark.room, mark.user).await?;
    if mark.upto > newest {
        return Err(ApiError::bad_request(format!(
            "`upto` {} is past the chatroom's newest message ({newest})",
            mark.upto
        )));
    }
    Ok(())
}

/// Move the caller's read position forward; the room's sockets get a `receipt` frame.
#[utoipa::path(post, path = "/api/v1/chat/chatrooms/{id}/read/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id")),
    request_body = ReadRequest,
    responses((status = 200, description = "The caller's read position", body = ReadAnswer),
              (status = 400, description = "`upto` past the room's newest message"),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom"),
              (status = 415, description = "The body is not sent as `application/json`")))]
pub async fn mark_read(
    id: String,
    state: SharedState,
    user: User,
    body: ReadRequest,
) -> Result<Response, ApiError> {
    let room = room_id(&id)?;
    let mark = ReceiptMark {
        room,
        user: user.id,
        kind: ReceiptKind::Read,
        upto: body.upto,
    };
    check_read(&state, mark).await?;
    let upto = state.receipts.mark_and_wait(mark).await?;
    let unread_count = state.store.unread_count(room, user.id).await?;
    let read = ReadPosition {
        chat_id: room,
        upto,
        unread_count,
    };
    Ok(ok(StatusCode::OK, ReadAnswer { read }))
}

/// When each other member got and read a message.
#[utoipa::path(get, path = "/api/v1/chat/chatrooms/{id}/messages/{mid}/receipts/", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Chatroom id"), ("mid" = i64, Path, description = "Message id")),
    responses((status = 200, description = "Receipts, by user id", body = ReceiptList),
              (status = 403, description = "Not a member"),
              (status = 404, description = "No such chatroom, or no such message in it")))]
pub async fn message_receipts(
    id: String,
    mid: String,
    state: SharedState,
    user: User,
) -> Result<Response, ApiError> {
    let room = room_id(&id)?;
    let message = mid
        .parse::<i64>()
        .map_err(|_| ApiError::from(StoreError::MessageNotFound))?;
    let receipts = state.store.message_receipts(room, user.id, message).await?;
    Ok(ok(StatusCode::OK, ReceiptList { receipts }))
}
