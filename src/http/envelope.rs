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
use crate::limits::LimitError;
use crate::store::StoreError;

use super::RETRY_AFTER_SECS;

/// An answer that is one sentence for the user.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Detail {
    pub detail: String,
}

/// An error answer: a status and what goes under `"errors"` in the envelope.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub errors: Value,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            errors: json!({ "detail": detail.into() }),
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 503: the node sheds this request to keep its memory and latency bounded.
    pub fn overloaded(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    pub fn room_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Chatroom not found")
    }

    pub fn validations(fields: FieldErrors) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            errors: json!({ "validations": fields }),
            retry_after: None,
        }
    }

    fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error; it has been logged",
        )
    }
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
            StoreError::UserNotFound => Self::new(StatusCode::NOT_FOUND, "No such user"),
            StoreError::MessageNotFound => {
                Self::new(StatusCode::NOT_FOUND, "No such message in this chatroom")
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
            StoreError::StorageFull(_) => {
                tracing::error!(error = %err, "storage failure");
                Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "Storage is full; nothing was stored, try again later",
                )
            }
            StoreError::StorageReadOnly(_) => {
                tracing::error!(error = %err, "storage failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Storage is read-only; nothing was stored, try again later",
                )
            }
            StoreError::Backend(_)
            | StoreError::UnsupportedUrl(_)
            | StoreError::Migration { .. } => {
                tracing::error!(error = %err, "storage failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Storage is unavailable; nothing was changed, try again",
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let status = StatusCode::UNAUTHORIZED;
        match err {
            AuthError::MissingToken => Self::new(status, "no_auth_error"),
            AuthError::InvalidToken => Self::new(status, "Token is invalid"),
            AuthError::ExpiredToken => Self::new(status, "Token has expired"),
            AuthError::WrongTokenType(kind) => Self::new(
                status,
                format!("Token has wrong type: an {kind} token is required"),
            ),
            AuthError::RevokedToken => Self::new(status, "Token has been revoked"),
            AuthError::Secret(_) | AuthError::Hash(_) => Self::internal(err),
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(err: LimitError) -> Self {
        Self {
            retry_after: Some(err.retry_after_secs()),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, err.to_string())
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
    let mut response = warp::reply::with_status(
        warp::reply::json(&json!({ "success": false, "errors": err.errors })),
        err.status,
    )
    .into_response();
    // Every 503 is temporary (overload, storage down): tell clients when to come back.
    let retry_after = err
        .retry_after
        .or_else(|| (err.status == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_AFTER_SECS));
    if let Some(seconds) = retry_after {
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
        ApiError::new(StatusCode::NOT_FOUND, "Not found: no such route")
    } else if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::bad_request(format!("Invalid JSON body: {e}"))
    } else if rejection.find::<reject::PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
    } else if rejection.find::<reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "A Content-Length header is required",
        )
    } else if rejection.find::<reject::UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported content type",
        )
    } else if let Some(e) = rejection.find::<reject::InvalidQuery>() {
        ApiError::bad_request(format!("Invalid query string: {e}"))
    } else if let Some(e) = rejection.find::<reject::MissingHeader>() {
        ApiError::bad_request(format!("Missing header: {}", e.name()))
    } else if let Some(e) = rejection.find::<reject::InvalidHeader>() {
        ApiError::bad_request(format!("Invalid header: {}", e.name()))
    } else if rejection.find::<reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed on this route",
        )
    } else {
        ApiError::internal(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(error_response(&err))
}
