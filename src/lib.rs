//! chatnode: a WhatsApp-style chat server in one binary.
//!
//! Seams: [`store::Store`] (SQLite embedded) and [`transport::Transport`] (in-process bus
//! embedded). A message is stored together with its event in the outbox; the [`fanout::relay`]
//! publishes it, and the subscriber hands it to the room's local sockets through the
//! [`hub::Hub`].

pub mod admin;
pub mod auth;
pub mod config;
pub mod domain;
pub mod fanout;
pub mod http;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod node_id;
pub mod receipts;
pub mod retention;
pub mod signals;
pub mod startup;
pub mod state;
pub mod store;
pub mod transport;

pub use config::Config;
pub use startup::Application;

/// `error` and each of its sources, joined by ": ".
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
