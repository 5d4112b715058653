//! The typed endpoints, a file per part of the API, each a set of methods on [`Client`].
//!
//! [`Client`]: crate::Client

mod auth;
pub(crate) mod messages;
pub use messages::Attachment;
mod operations;
mod rooms;
mod users;

use serde::Deserialize;

/// `{"detail": "..."}`: an answer that is one sentence.
#[derive(Deserialize)]
pub(crate) struct Detail {
    pub detail: String,
}
