//! `GET /ws/chat/<id>/`: the live feed of a room, and a way to send to it.
//!
//! The upgrade is done by hand rather than with `warp::ws()` so that each socket gets a 1 KiB
//! read buffer instead of tungstenite's 128 KiB one: idle sockets cost a few KiB each.

mod catch_up;
mod close;
pub mod handshake;
mod protocol;
mod session;

use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;

pub use handshake::{routes, MAX_CLIENT_MESSAGE};
pub use protocol::{ClientRequest, Start};

/// A client's socket once upgraded.
type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
