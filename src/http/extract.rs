//! What handlers take from a request: state, JSON bodies (typed, bounded, not too deep),
//! path ids, page sizes and the authenticated user.

use std::collections::HashMap;
use std::convert::Infallible;

use serde::de::DeserializeOwned;
use warp::http::header;
use warp::{Filter, Rejection};

use crate::auth::{AuthError, Claims, TokenKind};
use crate::state::SharedState;
use crate::store::{StoreError, TokenStanding, User};

use super::{ApiError, MAX_JSON_BODY, MAX_JSON_DEPTH};

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
                _ => Err(warp::reject::custom(ApiError::UnsupportedMediaType(
                    "The body must be sent as JSON with Content-Type: application/json".into(),
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
        warp::reject::custom(ApiError::PayloadTooLarge(format!(
            "Request body is larger than {max} bytes"
        )))
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
    token_owner(state, &claims).await
}

/// The user of a verified token, if the token still works: logout puts its id on the shared
/// denylist until it expires; `chatnode admin` disables accounts and revokes all their tokens.
pub async fn token_owner(state: &SharedState, claims: &Claims) -> Result<User, ApiError> {
    let found = state
        .store
        .token_user(claims.user_id, &claims.jti, claims.iat)
        .await?;
    match found {
        Some((user, TokenStanding::Live)) => Ok(user),
        Some((_, TokenStanding::Revoked)) => Err(AuthError::RevokedToken.into()),
        Some((_, TokenStanding::Disabled)) => Err(ApiError::forbidden(
            "This account is disabled; contact the operator of this server",
        )),
        None => Err(ApiError::unauthorized("User not found")),
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
