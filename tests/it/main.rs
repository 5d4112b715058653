//! Black-box tests: each starts a real node on a random port and drives it over HTTP and
//! WebSocket, the way a client does.

mod attachments;
mod auth;
#[cfg(feature = "postgres")]
mod backends;
mod bench;
mod bounds;
mod broker;
mod catchup;
mod cluster;
mod cors;
mod docs;
mod errors;
mod faults;
mod helpers;
mod lifecycle;
mod limits;
mod logs;
mod messages;
mod properties;
mod rooms;
mod store;
mod ws;
