//! What one run measured, as reported in the table and the JSON line.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::receipts::ReceiptFrames;
use super::shared::Shared;
use super::{LoadOptions, SendOver};
use crate::histogram::LatencySummary;
use crate::ledger::{Completeness, Tally};
use crate::procstat::ProcessReport;

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub mode: &'static str,
    pub send_over: SendOver,
    pub targets: Vec<String>,
    pub rooms: usize,
    pub receivers_per_room: usize,
    pub receiver_sockets: usize,
    pub senders: usize,
    /// Sockets the WebSocket senders send on (they receive their rooms' frames too).
    pub sender_sockets: usize,
    pub messages: u64,
    pub message_bytes: usize,
    /// Offered messages per second; `null`: as fast as possible.
    pub offered_rate: Option<f64>,
    /// Registering users and creating rooms.
    pub setup_secs: f64,
    /// Opening this run's sockets.
    pub socket_secs: f64,
    /// First send to last send's answer.
    pub send_secs: f64,
    /// First send to the end of the wait for stragglers.
    pub run_secs: f64,
    pub sent: u64,
    pub accepted: u64,
    pub send_errors: u64,
    pub accepted_per_sec: f64,
    /// Distinct accepted messages received, over all receivers.
    pub deliveries: u64,
    /// Deliveries over the time from the first send to the last delivery.
    pub deliveries_per_sec: f64,
    /// End to end: accepted messages over the time from the first send to the last delivery.
    /// Unlike `accepted_per_sec` it is not inflated by WebSocket sends that only fill buffers.
    pub messages_per_sec: f64,
    /// Receipt frames (`receipts` on connect, `receipt` delivered / read) on every socket of
    /// the run; never counted as deliveries.
    pub receipt_frames: u64,
    pub receipt_frames_by_event: ReceiptFrames,
    /// `--mark-read`: receivers marked read after every this many messages (`null`: never).
    pub mark_read_every: Option<u64>,
    /// `mark_read` frames the receivers wrote.
    pub reads_sent: u64,
    /// Error frames on receivers' sockets (a refused `mark_read`).
    pub refused_frames: u64,
    /// Every receiver got every accepted message of its room exactly once, nothing else.
    pub complete: bool,
    pub completeness: Completeness,
    /// Send to receipt, over every first delivery.
    pub latency_ms: LatencySummary,
    pub socket_closes: u64,
    /// Failed sends, sockets closed early, malformed frames, refused frames.
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// The nodes given by `--server-pid`, over the run.
    pub servers: Vec<ProcessReport>,
    /// This process, over the run (it shares the machine with the nodes).
    pub bench: ProcessReport,
}

/// What a run measured beside the counters the tasks shared.
pub(super) struct Measured {
    pub(super) setup_secs: f64,
    pub(super) socket_secs: f64,
    pub(super) send_secs: f64,
    pub(super) run_secs: f64,
    /// The wall clock when the sends started, for the rates up to the last delivery.
    pub(super) started_unix: u64,
    pub(super) receiver_sockets: usize,
    pub(super) sender_sockets: usize,
    /// Accepted messages once the senders were done.
    pub(super) accepted: u64,
    pub(super) servers: Vec<ProcessReport>,
    pub(super) bench: ProcessReport,
}

impl LoadReport {
    /// The report of a finished run: every task has ended and handed in its tally.
    pub(super) fn of(
        options: &LoadOptions,
        shared: &Shared,
        tallies: &[Tally],
        measured: Measured,
    ) -> Self {
        let Measured {
            setup_secs,
            socket_secs,
            send_secs,
            run_secs,
            started_unix,
            receiver_sockets,
            sender_sockets,
            accepted,
            servers,
            bench,
        } = measured;
        let completeness = Completeness::of(&shared.plan, &shared.accepted, tallies);
        let last_delivery = shared.last_delivery_unix.load(Ordering::Relaxed);
        let delivery_secs = last_delivery.saturating_sub(started_unix) as f64 / 1e9;
        let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let send_errors = shared.send_errors.load(Ordering::Relaxed);
        let socket_closes = shared.socket_closes.load(Ordering::Relaxed);
        let refused_frames = shared.refused_frames.load(Ordering::Relaxed);
        let receipt_frames = shared.receipts.counts();
        Self {
            mode: "load",
            send_over: options.send_over,
            targets: options.targets.iter().map(|t| t.url.clone()).collect(),
            rooms: options.rooms,
            receivers_per_room: options.receivers,
            receiver_sockets,
            senders: options.senders,
            sender_sockets,
            messages: options.messages,
            message_bytes: options.message_bytes,
            offered_rate: options.rate,
            setup_secs,
            socket_secs,
            send_secs,
            run_secs,
            sent: shared.sent.load(Ordering::Relaxed),
            accepted,
            send_errors,
            accepted_per_sec: per_sec(accepted, send_secs),
            deliveries: completeness.delivered,
            deliveries_per_sec: per_sec(completeness.delivered, delivery_secs),
            messages_per_sec: per_sec(accepted, delivery_secs),
            receipt_frames: receipt_frames.total(),
            receipt_frames_by_event: receipt_frames,
            mark_read_every: options.mark_read_every,
            reads_sent: shared.reads_sent.load(Ordering::Relaxed),
            refused_frames,
            complete: completeness.is_exact(),
            completeness: completeness.clone(),
            latency_ms: shared.latency.summary_ms(),
            socket_closes,
            errors: send_errors + socket_closes + completeness.malformed + refused_frames,
            error_samples: shared.samples.lock().map(|s| s.clone()).unwrap_or_default(),
            servers,
            bench,
        }
    }
}
