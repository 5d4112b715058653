//! What can go wrong talking to a node: its answer (the error envelope, typed), or no answer.

use reqwest::StatusCode;
use serde_json::Value;

/// A node's error answer: `{"success": false, "errors": {...}}` with its status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// What the envelope holds under `"errors"`: `{"detail": "..."}` for most answers,
    /// `{"validations": {field: [...]}}` or per-field lists for invalid input.
    pub errors: Value,
    /// The `Retry-After` header of a 429 or 503, in seconds.
    pub retry_after: Option<u64>,
    /// Every header of the answer.
    pub headers: reqwest::header::HeaderMap,
}

impl ApiError {
    /// The one-sentence reason, when the node gave one.
    pub fn detail(&self) -> Option<&str> {
        self.errors["detail"].as_str()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.detail() {
            Some(detail) => write!(f, "{}: {detail}", self.status),
            None => write!(f, "{}: {}", self.status, self.errors),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node answered with its error envelope.
    #[error("the node refused: {0}")]
    Api(Box<ApiError>),
    /// No answer: connect, timeout, reset or a body cut short.
    #[error("{method} {url} got no answer")]
    Http {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not what the API documents (wrong status or shape).
    #[error("unexpected answer ({status}): {body:.300}")]
    Unexpected { status: StatusCode, body: String },
    /// The WebSocket failed (connect, handshake or a frame).
    #[error("WebSocket {what}")]
    WebSocket {
        what: &'static str,
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// The WebSocket handshake was refused with this answer.
    #[error("WebSocket handshake refused: {0}")]
    Refused(Box<ApiError>),
    /// A frame that is not JSON.
    #[error("frame is not JSON: {text:.200}")]
    Frame {
        text: String,
        #[source]
        source: serde_json::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// `chatnode serve` could not be started or stopped.
    #[error("node process: {what}")]
    Process {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The node exited (or never said where it listens) before it was ready.
    #[error("the node did not start: {reason}; its last log lines:\n{log}")]
    NotStarted { reason: String, log: String },
}

impl Error {
    /// The node's error envelope, when that is what this is.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(error) | Self::Refused(error) => Some(error),
            _ => None,
        }
    }

    /// The status the node answered with, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api(error) | Self::Refused(error) => Some(error.status),
            Self::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }
}
