//! Passwords, JWTs and registration rules. Pure functions and keys; no HTTP here.

pub mod hasher;
pub mod media_url;
pub mod password;
pub mod tokens;
pub mod validate;

pub use tokens::{Claims, TokenKind, Tokens};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no_auth_error")]
    MissingToken,
    #[error("token is invalid")]
    InvalidToken,
    #[error("token has expired")]
    ExpiredToken,
    #[error("token is not an {0} token")]
    WrongTokenType(&'static str),
    #[error("token has been revoked")]
    RevokedToken,
    #[error("cannot use the JWT secret: {0}")]
    Secret(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}
