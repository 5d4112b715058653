//! Registration, login, token refresh and logout.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{
    json_body, limited_body, ok, parse_json, respond, with_state, ApiError, Detail, MAX_JSON_BODY,
};
use crate::auth::hasher::HashError;
use crate::auth::validate::{self, FieldErrors, REQUIRED};
use crate::auth::TokenKind;
use crate::domain::values::{Email, PhoneNumber};
use crate::state::SharedState;
use crate::store::{NewUser, User};

/// Validated by [`RegisterRequest::parse`], which reports every field's problem at once.
#[derive(ToSchema)]
pub struct RegisterRequest {
    #[schema(value_type = String, example = "alice@example.com")]
    pub email: Email,
    #[schema(value_type = String, example = "+14155552671")]
    pub phone_number: PhoneNumber,
    #[schema(example = "a-long-passphrase")]
    pub password: String,
    pub first_name: String,
    pub last_name: String,
}

#[derive(ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// A refresh token from register or login.
    pub refresh: String,
}

/// A fresh token pair.
#[derive(Serialize, ToSchema)]
pub struct Credentials {
    pub access: String,
    pub refresh: String,
}

/// What register and login answer.
#[derive(Serialize, ToSchema)]
pub struct Session {
    pub user: User,
    pub credentials: Credentials,
}

/// What refresh answers.
#[derive(Serialize, ToSchema)]
pub struct AccessToken {
    pub access: String,
}

pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let raw_body = || super::json_content_type().and(limited_body(MAX_JSON_BODY));
    let register = warp::path!("api" / "v1" / "auth" / "register")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(super::server::client_address())
        .and(raw_body())
        .then(register)
        .and_then(respond);
    let login = warp::path!("api" / "v1" / "auth" / "login")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(super::server::client_address())
        .and(raw_body())
        .then(login)
        .and_then(respond);
    let refresh = warp::path!("api" / "v1" / "auth" / "refresh")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(json_body())
        .then(refresh)
        .and_then(respond);
    let logout = warp::path!("api" / "v1" / "auth" / "logout")
        .and(warp::post())
        .and(with_state(state))
        .and(warp::header::optional::<String>("authorization"))
        .and(json_body())
        .then(logout)
        .and_then(respond);
    register
        .or(login)
        .unify()
        .or(refresh)
        .unify()
        .or(logout)
        .unify()
        .boxed()
}

/// Reads string fields one by one so every problem is reported per field, as the original did.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: FieldErrors,
}

impl<'a> Fields<'a> {
    fn parse(body: &'a Value) -> Result<Self, ApiError> {
        let object = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("The body must be a JSON object"))?;
        Ok(Self {
            object,
            errors: FieldErrors::new(),
        })
    }

    fn text(&mut self, name: &str) -> Option<&'a str> {
        match self.object.get(name) {
            None | Some(Value::Null) => self.fail(name, REQUIRED),
            Some(Value::String(s)) if s.trim().is_empty() => self.fail(name, REQUIRED),
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => self.fail(name, "Not a valid string."),
        }
    }

    fn check<T, E: std::fmt::Display>(&mut self, name: &str, result: Result<T, E>) -> Option<T> {
        result
            .map_err(|message| self.fail::<()>(name, &message.to_string()))
            .ok()
    }

    fn fail<T>(&mut self, name: &str, message: &str) -> Option<T> {
        self.errors.insert(name.to_string(), message.to_string());
        None
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validations(self.errors))
        }
    }
}

impl RegisterRequest {
    /// A registration body with every field validated and normalised (email lower-cased,
    /// phone number in international format, names trimmed), or every problem per field.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let body: Value = parse_json(body)?;
        let mut fields = Fields::parse(&body)?;
        let email = fields
            .text("email")
            .and_then(|v| fields.check("email", Email::parse(v)));
        let phone_number = fields
            .text("phone_number")
            .and_then(|v| fields.check("phone_number", PhoneNumber::parse(v)));
        let password = fields.text("password");
        if let Some(p) = password {
            fields.check("password", validate::password(p));
        }
        let first_name = fields
            .text("first_name")
            .and_then(|v| fields.check("first_name", validate::name(v)));
        let last_name = fields
            .text("last_name")
            .and_then(|v| fields.check("last_name", validate::name(v)));
        fields.finish()?;
        match (email, phone_number, password, first_name, last_name) {
            (
                Some(email),
                Some(phone_number),
                Some(password),
                Some(first_name),
                Some(last_name),
            ) => Ok(Self {
                email,
                phone_number,
                password: password.to_string(),
                first_name,
                last_name,
            }),
            _ => Err(ApiError::bad_request("Invalid registration")),
        }
    }
}

impl LoginRequest {
    /// A login body with both fields present and non-blank.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let body: Value = parse_json(body)?;
        let mut fields = Fields::parse(&body)?;
        let email = fields.text("email");
        let password = fields.text("password");
        fields.finish()?;
        match (email, password) {
            (Some(email), Some(password)) => Ok(Self {
                email: email.to_string(),
                password: password.to_string(),
            }),
            _ => Err(ApiError::bad_request("Invalid login")),
        }
    }
}

impl From<HashError> for ApiError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => Self::overloaded(
                "Too many password checks in progress; nothing was changed, try again shortly",
            ),
            HashError::Failed(e) => e.into(),
        }
    }
}

/// `hashed`, a full hashing queue counted as shed on its way to becoming a 503.
fn shed_counted<T>(state: &SharedState, hashed: Result<T, HashError>) -> Result<T, HashError> {
    if matches!(hashed, Err(HashError::Busy)) {
        state.metrics.shed(crate::metrics::Shed::HashQueue).inc();
    }
    hashed
}

fn session(state: &SharedState, user: User) -> Result<Session, ApiError> {
    let credentials = Credentials {
        access: state.tokens.issue(user.id, TokenKind::Access)?,
        refresh: state.tokens.issue(user.id, TokenKind::Refresh)?,
    };
    Ok(Session { user, credentials })
}

/// Register a new account.
#[utoipa::path(post, path = "/api/v1/auth/register/", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, description = "The user and a fresh access/refresh token pair", body = Session),
              (status = 400, description = "Validation errors per field, or the email is taken"),
              (status = 415, description = "The body is not sent as `application/json`"),
              (status = 429, description = "Too many attempts from this address or for this email",
               headers(("retry-after" = u64, description = "Seconds to wait"))),
              (status = 503, description = "Every password-hashing worker is busy and the queue (`--hash-queue`) is full; nothing was changed",
               headers(("retry-after" = u64, description = "Seconds to wait")))))]
pub async fn register(
    state: SharedState,
    client: Option<SocketAddr>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    state.limits.register_from(client)?;
    let RegisterRequest {
        email,
        phone_number,
        password: plain,
        first_name,
        last_name,
    } = RegisterRequest::parse(&body)?;
    state.limits.register_for(email.as_str())?;
    let password_hash = shed_counted(&state, state.hasher.hash(plain).await)?;
    let user = state
        .store
        .create_user(NewUser {
            username: validate::username_for(email.as_str()),
            email,
            phone_number,
            first_name,
            last_name,
            password_hash,
        })
        .await?;
    Ok(ok(StatusCode::CREATED, session(&state, user)?))
}

/// Log in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login/", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "The user and a fresh access/refresh token pair", body = Session),
              (status = 400, description = "Missing fields"),
              (status = 401, description = "Wrong email or password"),
              (status = 403, description = "The account is disabled (`chatnode admin users disable`)"),
              (status = 415, description = "The body is not sent as `application/json`"),
              (status = 429, description = "Too many attempts from this address or for this email",
               headers(("retry-after" = u64, description = "Seconds to wait"))),
              (status = 503, description = "Every password-hashing worker is busy and the queue (`--hash-queue`) is full; nothing was changed",
               headers(("retry-after" = u64, description = "Seconds to wait")))))]
pub async fn login(
    state: SharedState,
    client: Option<SocketAddr>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    state.limits.login_from(client)?;
    let LoginRequest {
        email,
        password: plain,
    } = LoginRequest::parse(&body)?;
    state.limits.login_for(&email)?;
    let found = state
        .store
        .credentials(&email.trim().to_lowercase())
        .await?;
    // Exactly one argon2 verification of the same cost whether or not the account exists.
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matches = shed_counted(&state, state.hasher.verify(plain, hash).await)?;
    let user = user.filter(|_| matches);
    let user = user.ok_or_else(|| ApiError::unauthorized("Invalid email or password"))?;
    if state.store.is_disabled(user.id).await? {
        return Err(ApiError::forbidden(
            "This account is disabled; contact the operator of this server",
        ));
    }
    Ok(ok(StatusCode::OK, session(&state, user)?))
}

async fn live_refresh_claims(
    state: &SharedState,
    token: &str,
) -> Result<crate::auth::Claims, ApiError> {
    let claims = state.tokens.verify(token, TokenKind::Refresh)?;
    super::extract::token_owner(state, &claims).await?;
    Ok(claims)
}

/// Exchange a refresh token for a new access token.
#[utoipa::path(post, path = "/api/v1/auth/refresh/", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "A new access token", body = AccessToken),
              (status = 401, description = "Invalid, expired, revoked or non-refresh token"),
              (status = 403, description = "The account is disabled (`chatnode admin users disable`)"),
              (status = 415, description = "The body is not sent as `application/json`")))]
pub async fn refresh(state: SharedState, body: RefreshRequest) -> Result<Response, ApiError> {
    let claims = live_refresh_claims(&state, &body.refresh).await?;
    let access = state.tokens.issue(claims.user_id, TokenKind::Access)?;
    Ok(ok(StatusCode::OK, AccessToken { access }))
}

/// Revoke a refresh token, and the access token of the `Authorization` header if one is sent.
#[utoipa::path(post, path = "/api/v1/auth/logout/", tag = "auth", request_body = RefreshRequest,
    params(("authorization" = Option<String>, Header,
            description = "`Bearer <access>`: that access token is revoked too (on every node sharing the database) until it expires")),
    responses((status = 200, description = "The refresh token, and the access token sent, no longer work", body = Detail),
              (status = 401, description = "Invalid, expired, already revoked or non-refresh token"),
              (status = 415, description = "The body is not sent as `application/json`")))]
pub async fn logout(
    state: SharedState,
    authorization: Option<String>,
    body: RefreshRequest,
) -> Result<Response, ApiError> {
    let claims = live_refresh_claims(&state, &body.refresh).await?;
    state.store.revoke_token(&claims.jti, claims.exp).await?;
    // An expired or foreign access token needs no revoking; logout still succeeds.
    let access = super::bearer(authorization.as_deref())
        .ok()
        .flatten()
        .and_then(|token| state.tokens.verify(token, TokenKind::Access).ok())
        .filter(|access| access.user_id == claims.user_id);
    if let Some(access) = access {
        state.store.revoke_token(&access.jti, access.exp).await?;
    }
    let detail = "Successfully logged out.".to_string();
    Ok(ok(StatusCode::OK, Detail { detail }))
}
