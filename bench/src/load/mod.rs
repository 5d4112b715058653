//! One load run: users and rooms (set up once, reusable across runs), receiving sockets,
//! timed sends over REST or WebSocket, a bounded wait for stragglers, and the report.

mod fixture;
mod receipts;
mod receivers;
mod report;
mod senders;
mod setup;
mod shared;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::ValueEnum;
use serde::Serialize;

use super::api::Target;

pub use fixture::Fixture;
pub use receipts::{ReceiptCounter, ReceiptFrames, ReceiptKind};
pub use report::LoadReport;
pub use setup::{
    create_rooms, open_sockets_on, register_users, tag, wait_for_sockets, OPEN_CONCURRENCY,
};

/// How long a socket may take to close at the end of a run.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the nodes may take to count sockets a handshake already answered.
const REGISTER_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendOver {
    /// `POST .../messages/send/`, one request at a time per sender; accepted on 201.
    Rest,
    /// `send_chat_message` frames on the sender's room socket; accepted once written.
    Ws,
}

impl SendOver {
    /// How the tables and the sweep chart name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rest => "REST",
            Self::Ws => "WebSocket",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Users, rooms and sockets are spread round-robin over these.
    pub targets: Vec<Target>,
    pub rooms: usize,
    /// Sockets per room.
    pub receivers: usize,
    pub senders: usize,
    /// Total over all rooms.
    pub messages: u64,
    pub send_over: SendOver,
    /// Offered messages per second over all senders; `None`: as fast as the senders go.
    pub rate: Option<f64>,
    pub message_bytes: usize,
    /// How long to wait for stragglers after the last send.
    pub drain: Duration,
    /// Nodes whose CPU time and memory are reported.
    pub server_pids: Vec<i32>,
    /// Progress bars on stderr for phases longer than a few seconds.
    pub progress: bool,
    /// Receivers mark their room read (a `mark_read` frame on their socket, `upto` the id
    /// just received) after every this many messages; `None`: they never do.
    pub mark_read_every: Option<u64>,
}

impl LoadOptions {
    /// Defaults for a run against `targets`: small enough for a shared machine.
    pub fn new(targets: Vec<Target>) -> Self {
        Self {
            targets,
            rooms: 10,
            receivers: 10,
            senders: 4,
            messages: 10_000,
            send_over: SendOver::Rest,
            rate: None,
            message_bytes: 100,
            drain: Duration::from_secs(10),
            server_pids: Vec::new(),
            progress: false,
            mark_read_every: None,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.targets.is_empty() {
            bail!("no target");
        }
        if self.rooms == 0 || self.receivers == 0 || self.senders == 0 || self.messages == 0 {
            bail!("--rooms, --receivers, --senders and --messages must be at least 1");
        }
        if self
            .rate
            .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
        {
            bail!("--rate must be a positive number of messages per second");
        }
        if self.message_bytes > 10_000 {
            bail!("--message-bytes: the node accepts at most 10000 characters");
        }
        if self.mark_read_every == Some(0) {
            bail!("--mark-read must be at least 1 (every message)");
        }
        Ok(())
    }
}

/// A finite number above zero (NaN is not).
pub(crate) fn is_positive(x: f64) -> bool {
    x > 0.0 && x.is_finite()
}

/// Sets up users and rooms, then does one run.
pub async fn run(options: &LoadOptions) -> anyhow::Result<LoadReport> {
    Fixture::setup(options).await?.run(options).await
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
