//! The response envelope, and the one place errors become statuses: `ApiError`, its
//! conversions from each seam's error, and `recover` for warp's rejections.

use std::convert::Infallible;

use serde::Serialize;
use serde_json::{json, Value};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::auth::validate::FieldErrors;
use crate::auth::AuthError;
use crate::domain::values::InvalidValue;
use crate::limits::LimitError;
use crate::store::StoreError;

use super::RETRY_AFTER_SECS;

/// An answer that is one sentence for the user.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Detail {
    pub detail: String,
}

/// Every answer that is not a success, by kind; [`ApiError::status`] and
/// [`ApiError::errors`] map each to its status and to what goes under `"errors"`.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `{"detail"}`.
    BadRequest(String),
    /// 400 `{"validations": {field: message}}`.
    Validation(FieldErrors),
    /// 400 `{field: ["This field is required."]}`, the original's shape for a missing field.
    FieldRequired(&'static str),
    /// 401.
    Unauthorized(String),
    /// 403.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 404 for a send to a missing room: the original answered `{"error"}`, kept with
    /// `{"detail"}`.
    SendRoomNotFound,
    /// 405.
    MethodNotAllowed,
    /// 410: what was asked for is no longer kept (a replay position the log has pruned).
    Gone(String),
    /// 411.
    LengthRequired,
    /// 413.
    PayloadTooLarge(String),
    /// 415.
    UnsupportedMediaType(String),
    /// 416.
    RangeNotSatisfiable(String),
    /// 426.
    UpgradeRequired,
    /// 429 with `Retry-After`.
    TooManyRequests { detail: String, retry_after: u64 },
    /// 503 with `Retry-After`: shed to keep memory and latency bounded, or storage is down.
    Unavailable(String),
    /// 507: the disk is full.
    InsufficientStorage(String),
    /// 500; what went wrong is logged, never answered.
    Internal(String),
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(detail.into())
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(detail.into())
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::Unauthorized(detail.into())
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(detail.into())
    }

    /// 503: the node sheds this request to keep its memory and latency bounded.
    pub fn overloaded(detail: impl Into<String>) -> Self {
        Self::Unavailable(detail.into())
    }

    pub fn room_not_found() -> Self {
        Self::not_found("Chatroom not found")
    }

    pub fn validations(fields: FieldErrors) -> Self {
        Self::Validation(fields)
    }

    fn internal(what: impl std::fmt::Display) -> Self {
        Self::Internal(what.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::Validation(_) | Self::FieldRequired(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::SendRoomNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Gone(_) => StatusCode::GONE,
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the envelope holds under `"errors"`.
    pub fn errors(&self) -> Value {
        let detail = match self {
            Self::Validation(fields) => return json!({ "validations": fields }),
            Self::FieldRequired(field) => return json!({ *field: ["This field is required."] }),
            Self::SendRoomNotFound => {
                return json!({ "detail": "Chatroom not found", "error": "Chatroom not found" })
            }
            Self::MethodNotAllowed => "Method not allowed on this route",
            Self::LengthRequired => "A Content-Length header is required",
            Self::UpgradeRequired => "Expected a WebSocket upgrade request",
            Self::Internal(_) => "Internal server error; it has been logged",
            Self::BadRequest(detail)
            | Self::Unauthorized(detail)
            | Self::Forbidden(detail)
            | Self::NotFound(detail)
            | Self::Gone(detail)
            | Self::PayloadTooLarge(detail)
            | Self::UnsupportedMediaType(detail)
            | Self::RangeNotSatisfiable(detail)
            | Self::TooManyRequests { detail, .. }
            | Self::Unavailable(detail)
            | Self::InsufficientStorage(detail) => detail,
        };
        json!({ "detail": detail })
    }

    /// Seconds for a `Retry-After` header: a 429's own, and every 503's (all are temporary).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::TooManyRequests { retry_after, .. } => Some(*retry_after),
            Self::Unavailable(_) => Some(RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

/// `{"success": false, "errors": errors}`: the error envelope, for answers, refused
/// handshakes, `/readyz` and socket frames alike.
pub fn failure(errors: Value) -> Value {
    json!({ "success": false, "errors": errors })
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::EmailTaken => {
                Self::bad_request("User account already exists. Please login.")
            }
            StoreError::RoomNotFound => Self::room_not_found(),
            StoreError::NotMember => Self::forbidden("User not in chatroom"),
            StoreError::AlreadyMember => Self::bad_request("Chatroom already joined by you"),
            StoreError::RoomFull => Self::forbidden("This chatroom has reached its member limit"),
            StoreError::UnknownUsers(ids) => {
                let mut fields = FieldErrors::new();
                fields.insert("members".into(), format!("Unknown user ids: {ids:?}"));
                Self::validations(fields)
            }
            StoreError::UserNotFound => Self::not_found("No such user"),
            StoreError::MessageNotFound => Self::not_found("No such message in this chatroom"),
            StoreError::BadReply => Self::bad_request(
                "`reply_to` must be the id of a message of this chatroom that was not deleted",
            ),
            StoreError::NotSender => Self::forbidden("Only its sender can change this message"),
            StoreError::ChangeWindowClosed => {
                Self::forbidden("This message is too old to be changed")
            }
            StoreError::Blocked => {
                Self::forbidden("You cannot message this user: one of you blocked the other")
            }
            StoreError::DirectRoom => Self::forbidden(
                "A direct conversation keeps its two members: it cannot be entered or left",
            ),
            StoreError::Overloaded => {
                Self::overloaded("The server is busy; nothing was changed, try again shortly")
            }
            StoreError::StorageFull { .. } => {
                tracing::error!(error = %err.chain(), "storage failure");
                Self::InsufficientStorage(
                    "Storage is full; nothing was stored, try again later".into(),
                )
            }
            StoreError::StorageReadOnly { .. } => {
                tracing::error!(error = %err.chain(), "storage failure");
                Self::Unavailable(
                    "Storage is read-only; nothing was stored, try again later".into(),
                )
            }
            StoreError::Backend { .. }
            | StoreError::UnsupportedUrl(_)
            | StoreError::Migration { .. } => {
                tracing::error!(error = %err.chain(), "storage failure");
                Self::Unavailable("Storage is unavailable; nothing was changed, try again".into())
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::MissingToken => Self::unauthorized("no_auth_error"),
            AuthError::InvalidToken => Self::unauthorized("Token is invalid"),
            AuthError::ExpiredToken => Self::unauthorized("Token has expired"),
            AuthError::WrongTokenType(kind) => {
                Self::unauthorized(format!("Token has wrong type: an {kind} token is required"))
            }
            AuthError::RevokedToken => Self::unauthorized("Token has been revoked"),
            AuthError::Secret(_) | AuthError::Hash(_) => Self::internal(err),
        }
    }
}

/// A value refused by its own parser is the caller's mistake: a 400 with the parser's words.
impl From<InvalidValue> for ApiError {
    fn from(err: InvalidValue) -> Self {
        Self::bad_request(err.to_string())
    }
}

impl From<LimitError> for ApiError {
    fn from(err: LimitError) -> Self {
        Self::TooManyRequests {
            detail: err.to_string(),
            retry_after: err.retry_after_secs(),
        }
    }
}

/// `{"success": true, "data": data}` with `status`.
pub fn ok(status: StatusCode, data: impl Serialize) -> Response {
    warp::reply::with_status(
        warp::reply::json(&json!({ "success": true, "data": data })),
        status,
    )
    .into_response()
}

pub fn error_response(err: &ApiError) -> Response {
    if let ApiError::Internal(what) = err {
        tracing::error!(error = %what, "internal error");
    }
    let mut response =
        warp::reply::with_status(warp::reply::json(&failure(err.errors())), err.status())
            .into_response();
    if let Some(seconds) = err.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Turns a handler's `ApiError` into a rejection for `.recover` to answer.
pub async fn respond(result: Result<Response, ApiError>) -> Result<Response, Rejection> {
    result.map_err(warp::reject::custom)
}

/// The single place rejections become answers, always in the error envelope.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject;
    let err = if let Some(api) = rejection.find::<ApiError>() {
        return Ok(error_response(api));
    } else if rejection.is_not_found() {
        ApiError::not_found("Not found: no such route")
    } else if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::bad_request(format!("Invalid JSON body: {e}"))
    } else if rejection.find::<reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge("Request body is too large".into())
    } else if rejection.find::<reject::LengthRequired>().is_some() {
        ApiError::LengthRequired
    } else if rejection.find::<reject::UnsupportedMediaType>().is_some() {
        ApiError::UnsupportedMediaType("Unsupported content type".into())
    } else if let Some(e) = rejection.find::<reject::InvalidQuery>() {
        ApiError::bad_request(format!("Invalid query string: {e}"))
    } else if let Some(e) = rejection.find::<reject::MissingHeader>() {
        ApiError::bad_request(format!("Missing header: {}", e.name()))
    } else if let Some(e) = rejection.find::<reject::InvalidHeader>() {
        ApiError::bad_request(format!("Invalid header: {}", e.name()))
    } else if rejection.find::<reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else {
        ApiError::internal(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(error_response(&err))
}
