//! The HTTP face: routes, the response envelope and the one place errors become statuses.

pub mod auth;
pub mod conversations;
pub mod cors;
pub mod docs;
pub mod media;
pub mod messages;
pub mod receipts;
pub mod rooms;
pub mod server;
pub mod shed;
pub mod users;
pub mod ws;

use std::collections::HashMap;
use std::convert::Infallible;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::validate::FieldErrors;
use crate::auth::{AuthError, TokenKind};
use crate::limits::LimitError;
use crate::state::SharedState;
use crate::store::{StoreError, User};

/// Largest JSON body accepted anywhere.
pub const MAX_JSON_BODY: u64 = 64 * 1024;
/// Deepest nesting of arrays and objects accepted in JSON (bodies and WebSocket frames).
pub const MAX_JSON_DEPTH: usize = 32;
/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

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

pub fn with_state(
    state: SharedState,
) -> impl Filter<Extract = (SharedState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Passes only requests sent as `Content-Type: application/json` (parameters such as
/// `charset=utf-8` allowed), else 415: a cross-origin form cannot send that type without a
/// CORS preflight, so `text/plain` posts from other sites are refused.
pub fn json_content_type() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and_then(|content_type: Option<String>| async move {
            let essence = content_type
                .as_deref()
                .and_then(|ct| ct.split(';').next())
                .map(str::trim);
            match essence {
                Some(essence) if essence.eq_ignore_ascii_case("application/json") => Ok(()),
                _ => Err(warp::reject::custom(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "The body must be sent as JSON with Content-Type: application/json",
                ))),
            }
        })
        .untuple_one()
}

/// A JSON body of at most [`MAX_JSON_BODY`] bytes, with a clear message for each way it can be wrong.
pub fn json_body<T: DeserializeOwned + Send>(
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    json_content_type()
        .and(limited_body(MAX_JSON_BODY))
        .and_then(
            |body: bytes::Bytes| async move { parse_json(&body).map_err(warp::reject::custom) },
        )
}

/// The whole body, refused with 413 as soon as it passes `max` bytes. Unlike warp's
/// `content_length_limit`, it also accepts chunked bodies and bodies without a length.
pub fn limited_body(max: u64) -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |declared, stream| collect_body(declared, stream, max))
}

async fn collect_body<S, B>(
    declared: Option<u64>,
    stream: S,
    max: u64,
) -> Result<bytes::Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures_util::StreamExt;
    let too_large = || {
        warp::reject::custom(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {max} bytes"),
        ))
    };
    if declared.is_some_and(|length| length > max) {
        return Err(too_large());
    }
    let mut stream = std::pin::pin!(stream);
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            warp::reject::custom(ApiError::bad_request(format!("Cannot read the body: {e}")))
        })?;
        if body.len() + chunk.remaining() > max as usize {
            return Err(too_large());
        }
        body.extend_from_slice(chunk.chunk());
    }
    Ok(body.freeze())
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "Request body is empty; a JSON object is expected",
        ));
    }
    check_json_depth(body)?;
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "Malformed JSON"
        } else {
            "Invalid JSON body"
        };
        ApiError::bad_request(format!("{what}: {e}"))
    })
}

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`] before any parser recurses into it.
/// Brackets inside strings do not count; malformed input is left to the parser to report.
pub fn check_json_depth(json: &[u8]) -> Result<(), ApiError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ApiError::bad_request(format!(
                        "JSON is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and objects"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a numeric id from a path segment; anything else names no room.
pub fn room_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(ApiError::room_not_found)
}

/// Parses a numeric user id from a path segment; anything else names no user.
pub fn user_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::from(StoreError::UserNotFound))
}

/// A page's `limit` query parameter: `default` when absent, a whole number from 1 up
/// (larger than `max` is read as `max`).
pub fn page_limit(
    query: &HashMap<String, String>,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    let Some(raw) = query.get("limit") else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(limit) if limit >= 1 => Ok(u32::try_from(limit.min(u64::from(max))).unwrap_or(max)),
        _ => Err(ApiError::bad_request(format!(
            "Invalid query parameter `limit`: expected a whole number from 1 to {max} (larger is read as {max}), got {raw:?}"
        ))),
    }
}

/// The token of an `Authorization: Bearer <t>` (or `JWT <t>`) header.
pub fn bearer(header: Option<&str>) -> Result<Option<&str>, AuthError> {
    let Some(value) = header else {
        return Ok(None);
    };
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::InvalidToken)?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme == "JWT" {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        Ok(Some(token))
    } else {
        Err(AuthError::InvalidToken)
    }
}

/// Checks an access token and loads its user.
pub async fn user_for_token(state: &SharedState, token: Option<&str>) -> Result<User, ApiError> {
    let token = token.ok_or(AuthError::MissingToken)?;
    let claims = state.tokens.verify(token, TokenKind::Access)?;
    // Logout puts the access token's id on the shared denylist until it expires.
    match state.store.token_user(claims.user_id, &claims.jti).await? {
        Some((_, true)) => Err(AuthError::RevokedToken.into()),
        Some((user, false)) => Ok(user),
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "User not found")),
    }
}

/// The authenticated user of a REST call, from the `Authorization` header.
pub fn authenticated(
    state: SharedState,
) -> impl Filter<Extract = (User,), Error = Rejection> + Clone {
    with_state(state)
        .and(warp::header::headers_cloned())
        .and_then(
            |state: SharedState, headers: warp::http::HeaderMap| async move {
                let header = headers
                    .get(header::AUTHORIZATION)
                    .map(|v| v.to_str().map_err(|_| AuthError::InvalidToken))
                    .transpose()
                    .map_err(|e| warp::reject::custom(ApiError::from(e)))?;
                let token = bearer(header).map_err(|e| warp::reject::custom(ApiError::from(e)))?;
                user_for_token(&state, token)
                    .await
                    .map_err(warp::reject::custom)
            },
        )
}

/// Every route of the node, errors answered by [`recover`], one log line per request.
pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let api = auth::routes(state.clone())
        .or(rooms::routes(state.clone()))
        .unify()
        .or(messages::routes(state.clone()))
        .unify()
        .or(conversations::routes(state.clone()))
        .unify()
        .or(receipts::routes(state.clone()))
        .unify()
        .or(users::routes(state.clone()))
        .unify()
        .or(ws::routes(state.clone()))
        .unify()
        .or(media::routes(state.clone()))
        .unify()
        .or(docs::routes())
        .unify();
    // Every request but the health checks holds an in-flight slot while it is handled.
    let inflight = shed::Slots::new(
        state.config.max_inflight_requests,
        "The server is busy; try again shortly",
    );
    let api = inflight
        .gate()
        .and(api)
        .map(|_slot, response: Response| response);
    let cors = cors::Cors::new(&state.config.cors_origins);
    let api = health_routes(state)
        .or(cors.preflight())
        .unify()
        .or(api)
        .unify();
    // Only the path is logged: query strings carry tokens (`?token=`) and headers credentials.
    let log = warp::log::custom(|info: warp::log::Info<'_>| {
        tracing::info!(
            target: "chatnode::request",
            method = %info.method(),
            path = info.path(),
            status = info.status().as_u16(),
            latency_ms = info.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    warp::header::headers_cloned()
        .and(api.recover(recover).unify())
        .map(
            move |request: warp::http::HeaderMap, mut response: Response| {
                let headers = response.headers_mut();
                headers.insert(
                    "x-content-type-options",
                    HeaderValue::from_static("nosniff"),
                );
                headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
                headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
                cors.decorate(&request, response)
            },
        )
        .with(log)
        .map(Reply::into_response)
        .boxed()
}

fn health_routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let live = warp::path!("healthz").and(warp::get()).then(healthz);
    let ready = warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state))
        .then(readyz);
    live.or(ready).unify().boxed()
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The node is up")))]
pub async fn healthz() -> Response {
    ok(StatusCode::OK, json!({ "status": "ok" }))
}

/// Readiness: storage answers and accepts writes, the data directory accepts writes, and the
/// transport and its subscriber are running.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready to serve"),
              (status = 503, description = "A dependency is down or a disk is full or read-only; the body says which")))]
pub async fn readyz(state: SharedState) -> Response {
    let store = state.store.ping().await;
    let dirs = [state.config.data_dir.clone(), state.config.media_dir()];
    let data_dir = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .try_for_each(|dir| crate::store::probe_writable(dir))
    })
    .await
    .unwrap_or_else(|e| Err(StoreError::Backend(e.to_string())));
    let transport = state.transport.health();
    let subscriber = state.subscriber_up();
    let ready = store.is_ok() && data_dir.is_ok() && transport.is_ok() && subscriber;
    let body = json!({
        "store": match &store { Ok(()) => json!("ok"), Err(e) => json!(e.to_string()) },
        "data_dir": match &data_dir { Ok(()) => json!("ok"), Err(e) => json!(e.to_string()) },
        "transport": match &transport { Ok(kind) => json!(kind), Err(e) => json!(e) },
        "subscriber": if subscriber { "running" } else { "down" },
        "sockets": state.hub.socket_count(),
    });
    if ready {
        ok(StatusCode::OK, body)
    } else {
        warp::reply::with_status(
            warp::reply::json(&json!({ "success": false, "errors": body })),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response()
    }
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
