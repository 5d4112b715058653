//! What a soak measured, as reported in the table and the JSON line.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use serde::Serialize;

use super::memory::MemoryReport;
use super::shared::Soak;
use super::SoakOptions;
use crate::load::ReceiptFrames;
use crate::memory::MemorySample;
use crate::procstat::ProcessReport;
use crate::soak_ledger::Audit;

/// Actions done, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActionCounts {
    pub rest_sends: u64,
    pub ws_sends: u64,
    pub joins: u64,
    pub leaves: u64,
    pub reconnects: u64,
    /// Rooms marked read, over REST and over sockets.
    pub reads: u64,
    /// Of `reads`, those sent as a `mark_read` frame on the room's socket.
    pub reads_over_ws: u64,
}

impl ActionCounts {
    pub fn total(&self) -> u64 {
        self.rest_sends + self.ws_sends + self.joins + self.leaves + self.reconnects + self.reads
    }
}

/// Everything a soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub mode: &'static str,
    pub targets: Vec<String>,
    pub users: usize,
    pub rooms: usize,
    /// Seed of the users' choices; `--seed` repeats them.
    pub seed: u64,
    pub mix: String,
    /// Offered actions per second.
    pub offered_rate: f64,
    pub message_bytes: usize,
    pub duration_secs: f64,
    /// Registering users, creating rooms, opening the first sockets.
    pub setup_secs: f64,
    /// The soak itself, to the last user's last action.
    pub run_secs: f64,
    /// The wait for stragglers after it.
    pub drain_secs: f64,
    pub actions: ActionCounts,
    pub actions_per_sec: f64,
    /// Acknowledged messages.
    pub messages: u64,
    pub messages_per_sec: f64,
    /// First receipts of messages, over every user and room (owed or not).
    pub deliveries: u64,
    /// Receipt frames (`receipts` on connect, `receipt` delivered / read) over every socket;
    /// never counted as deliveries.
    pub receipt_frames: u64,
    pub receipt_frames_by_event: ReceiptFrames,
    /// Receipt frames on a socket whose position was below an earlier frame's for the same
    /// user and event (reported, not counted as an error).
    pub receipts_moved_back: u64,
    /// Every owed delivery arrived once, in order; nothing foreign, malformed or unacknowledged.
    pub complete: bool,
    pub completeness: Audit,
    /// Sum of `errors_by_kind`.
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub error_samples: Vec<String>,
    pub memory: MemoryReport,
    /// The nodes given by `--server-pid`, over the soak.
    pub servers: Vec<ProcessReport>,
    /// This process, over the soak.
    pub bench: ProcessReport,
}

/// What a soak measured beside the state its tasks shared.
pub(super) struct Measured {
    pub(super) setup_secs: f64,
    pub(super) run_secs: f64,
    pub(super) drain_secs: f64,
    pub(super) samples: Vec<MemorySample>,
    pub(super) servers: Vec<ProcessReport>,
    pub(super) bench: ProcessReport,
}

impl SoakReport {
    /// The report of a finished soak: every user has ended and closed its sockets.
    pub(super) fn of(options: &SoakOptions, soak: &Soak, measured: Measured) -> Self {
        let Measured {
            setup_secs,
            run_secs,
            drain_secs,
            samples,
            servers,
            bench,
        } = measured;
        let completeness = soak.ledger.audit();
        let errors_by_kind = soak
            .errors_by_kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let errors = errors_by_kind.values().sum();
        let error_samples = soak
            .error_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let per_sec = |n: u64| n as f64 / run_secs;
        let actions = soak.counters.actions();
        let total_actions = actions.total();
        let receipt_frames = soak.counters.receipts.counts();
        let memory = MemoryReport::of(samples, options);
        Self {
            mode: "soak",
            targets: options.targets.iter().map(|t| t.url.clone()).collect(),
            users: options.users,
            rooms: options.rooms,
            seed: options.seed,
            mix: options.mix.to_string(),
            offered_rate: options.rate,
            message_bytes: options.message_bytes,
            duration_secs: options.duration.as_secs_f64(),
            setup_secs,
            run_secs,
            drain_secs,
            actions_per_sec: per_sec(total_actions),
            actions,
            messages: completeness.messages,
            messages_per_sec: per_sec(completeness.messages),
            deliveries: soak.counters.deliveries.load(Ordering::Relaxed),
            receipt_frames: receipt_frames.total(),
            receipt_frames_by_event: receipt_frames,
            receipts_moved_back: soak.counters.receipts_moved_back.load(Ordering::Relaxed),
            complete: completeness.is_exact(),
            completeness,
            errors,
            errors_by_kind,
            error_samples,
            memory,
            servers,
            bench,
        }
    }
}
