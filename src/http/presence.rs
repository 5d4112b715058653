//! Presence over REST: a person's online state and last seen, and the caller's own account
//! with its privacy setting.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{authenticated, json_body, ok, respond, user_id, with_state, ApiError};
use crate::state::SharedState;
use crate::store::{StoreError, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Offline,
}

#[derive(Serialize, ToSchema)]
pub struct PresenceView {
    pub user_id: i64,
    pub status: Status,
    /// When they were last online; null while online, when never seen, or when they (or
    /// the caller) hide it.
    pub last_seen: Option<String>,
}

/// A change to the caller's own account; every field is optional.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountChange {
    /// `false` hides the caller's last seen from others, and theirs from the caller.
    pub show_last_seen: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct Account {
    pub user: User,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let presence = warp::path!("api" / "v1" / "users" / String / "presence")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state.clone()))
        .then(presence)
        .and_then(respond);
    let me = warp::path!("api" / "v1" / "users" / "me")
        .and(warp::get())
        .and(authenticated(state.clone()))
        .then(me)
        .and_then(respond);
    let change = warp::path!("api" / "v1" / "users" / "me")
        .and(warp::patch())
        .and(with_state(state.clone()))
        .and(authenticated(state))
        .and(json_body::<AccountChange>())
        .then(change_me)
        .and_then(respond);
    presence.or(me).unify().or(change).unify().boxed()
}

/// A person's presence: for the caller themself and people who share a room with them.
#[utoipa::path(get, path = "/api/v1/users/{id}/presence/", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "Online or offline, and when last seen", body = PresenceView),
              (status = 404, description = "No such user, or no room shared with the caller")))]
pub async fn presence(id: String, state: SharedState, caller: User) -> Result<Response, ApiError> {
    let subject = user_id(&id)?;
    let now = chrono::Utc::now().timestamp_millis();
    let found = state.store.presence_of(caller.id, subject, now).await?;
    let found = found.ok_or(StoreError::UserNotFound)?;
    // WhatsApp's rule: who hides their last seen sees no one's; one's own is always shown.
    let visible = subject == caller.id || (found.show_last_seen && caller.show_last_seen);
    let view = PresenceView {
        user_id: subject,
        status: if found.online {
            Status::Online
        } else {
            Status::Offline
        },
        last_seen: found.last_seen.filter(|_| visible && !found.online),
    };
    Ok(ok(StatusCode::OK, view))
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/users/me/", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = Account)))]
pub async fn me(caller: User) -> Result<Response, ApiError> {
    Ok(ok(StatusCode::OK, Account { user: caller }))
}

/// Change the caller's own account: today, whether others see their last seen.
#[utoipa::path(patch, path = "/api/v1/users/me/", tag = "users", security(("bearer" = [])),
    request_body = AccountChange,
    responses((status = 200, description = "The caller, changed", body = Account),
              (status = 400, description = "An unknown field, a field of the wrong type, or nothing to change"),
              (status = 415, description = "The body is not sent as `application/json`")))]
pub async fn change_me(
    state: SharedState,
    caller: User,
    change: AccountChange,
) -> Result<Response, ApiError> {
    let Some(show) = change.show_last_seen else {
        return Err(ApiError::bad_request(
            "Nothing to change: give `show_last_seen` (true or false)",
        ));
    };
    let user = state.store.set_show_last_seen(caller.id, show).await?;
    Ok(ok(StatusCode::OK, Account { user }))
}
