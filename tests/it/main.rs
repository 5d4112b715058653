//! Black-box tests: each starts a real node on a random port and drives it over HTTP and
//! WebSocket, the way a client does.

mod admin;
mod answers;
mod asyncapi;
mod attachments;
mod auth;
#[cfg(feature = "postgres")]
mod backends;
mod bench;
mod bounds;
mod broker;
mod catchup;
mod cluster;
mod connection_floods;
mod connections;
mod conversations;
mod cors;
mod docs;
mod echo_bot;
mod edits;
mod errors;
mod events;
mod faults;
mod hashing;
mod health;
mod helpers;
mod holes;
mod jwt_keys;
mod lifecycle;
mod limits;
mod logs;
mod messages;
mod metrics;
mod presence;
mod properties;
mod replay_property;
mod room_limits;
mod rooms;
mod skips;
mod store;
mod takeover;
mod transport_suite;
mod typing;
mod ws;
mod ws_close;
mod ws_floods;
