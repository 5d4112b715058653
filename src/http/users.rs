//! Finding people (by exact email or phone number) and blocking them.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::rooms::PersonView;
use super::{authenticated, ok, respond, user_id, with_state, ApiError};
use crate::domain::conversations::UserLookup;
use crate::domain::values::PhoneNumber;
use crate::state::SharedState;
use crate::store::{StoreError, User};

#[derive(Serialize, ToSchema)]
pub struct FoundUser {
    pub user: PersonView,
}

#[derive(Serialize, ToSchema)]
pub struct BlockedUser {
    pub blocked: PersonView,
}

#[derive(Serialize, ToSchema)]
pub struct UnblockedUser {
    pub unblocked: PersonView,
}

#[derive(Serialize, ToSchema)]
pub struct BlockedList {
    pub users: Vec<PersonView>,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let lookup = warp::path!("api" / "v1" / "users" / "lookup")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .then(lookup)
        .and_then(respond);
    let blocked = warp::path!("api" / "v1" / "users" / "blocked")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .then(blocked)
        .and_then(respond);
    let block = warp::path!("api" / "v1" / "users" / String / "block")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .then(block)
        .and_then(respond);
    let unblock = warp::path!("api" / "v1" / "users" / String / "unblock")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(authenticated(state))
        .then(unblock)
        .and_then(respond);
    lookup
        .or(blocked)
        .unify()
        .or(block)
        .unify()
        .or(unblock)
        .unify()
        .boxed()
}

/// What a lookup asks for: exactly one of `email` and `phone`.
fn parse_lookup(query: &HashMap<String, String>) -> Result<UserLookup, ApiError> {
    match (query.get("email"), query.get("phone")) {
        (Some(email), None) => Ok(UserLookup::Email(email.trim().to_string())),
        (None, Some(phone)) => PhoneNumber::parse(phone)
            .map(|phone| UserLookup::Phone(phone.into_inner()))
            .map_err(|_| ApiError::bad_request(format!("Invalid phone number: {phone:?}"))),
        _ => Err(ApiError::bad_request(
            "Give exactly one of the query parameters `email` and `phone`",
        )),
    }
}

/// Find a person by their exact email or phone number (any format libphonenumber reads).
#[utoipa::path(get, path = "/api/v1/users/lookup/", tag = "users", security(("bearer" = [])),
    params(("email" = Option<String>, Query, description = "Exact email (letter case ignored)"),
           ("phone" = Option<String>, Query, description = "Phone number in international form, any formatting")),
    responses((status = 200, description = "The person", body = FoundUser),
              (status = 400, description = "Neither or both parameters, or an invalid phone number"),
              (status = 404, description = "No such user"),
              (status = 429, description = "Too many lookups by this user",
               headers(("retry-after" = u64, description = "Seconds to wait")))))]
pub async fn lookup(
    state: SharedState,
    caller: User,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let lookup = parse_lookup(&query)?;
    state.limits.lookup(caller.id)?;
    let user = state
        .store
        .find_user(lookup)
        .await?
        .ok_or(StoreError::UserNotFound)?;
    let user = PersonView::from(user);
    Ok(ok(StatusCode::OK, FoundUser { user }))
}

/// The people the caller blocked.
#[utoipa::path(get, path = "/api/v1/users/blocked/", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "Blocked people, by id", body = BlockedList)))]
pub async fn blocked(state: SharedState, caller: User) -> Result<Response, ApiError> {
    let users = state.store.blocked_users(caller.id).await?;
    let users = users.into_iter().map(PersonView::from).collect();
    Ok(ok(StatusCode::OK, BlockedList { users }))
}

fn target(raw: &str, caller: &User) -> Result<i64, ApiError> {
    let id = user_id(raw)?;
    if id == caller.id {
        return Err(ApiError::bad_request(
            "You cannot block or unblock yourself",
        ));
    }
    Ok(id)
}

/// Block a person: they can no longer open a direct conversation with the caller, write in
/// it, or add the caller to a room. Idempotent.
#[utoipa::path(post, path = "/api/v1/users/{id}/block/", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "Blocked", body = BlockedUser),
              (status = 400, description = "Yourself"),
              (status = 404, description = "No such user")))]
pub async fn block(id: String, state: SharedState, caller: User) -> Result<Response, ApiError> {
    let id = target(&id, &caller)?;
    let user = state.store.set_block(caller.id, id, true).await?;
    let blocked = PersonView::from(user);
    Ok(ok(StatusCode::OK, BlockedUser { blocked }))
}

/// Unblock a person. Idempotent.
#[utoipa::path(post, path = "/api/v1/users/{id}/unblock/", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "Unblocked", body = UnblockedUser),
              (status = 400, description = "Yourself"),
              (status = 404, description = "No such user")))]
pub async fn unblock(id: String, state: SharedState, caller: User) -> Result<Response, ApiError> {
    let id = target(&id, &caller)?;
    let user = state.store.set_block(caller.id, id, false).await?;
    let unblocked = PersonView::from(user);
    Ok(ok(StatusCode::OK, UnblockedUser { unblocked }))
}
