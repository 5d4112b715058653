//! What every task of a soak shares: the ledger, the room and user ids, the counters and
//! the errors by kind.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::mix::{Action, ACTIONS};
use super::report::ActionCounts;
use crate::load::ReceiptCounter;
use crate::soak_ledger::Ledger;

/// Error messages kept for the report.
const ERROR_SAMPLES: usize = 10;

#[derive(Default)]
pub(super) struct Counters {
    actions: [AtomicU64; 6],
    pub(super) reads_over_ws: AtomicU64,
    /// Fresh deliveries over all users.
    pub(super) deliveries: AtomicU64,
    /// Receipt frames over all sockets, by kind.
    pub(super) receipts: ReceiptCounter,
    /// Receipt frames whose position was below an earlier one for the same user and event
    /// on the same socket.
    pub(super) receipts_moved_back: AtomicU64,
    pub(super) errors: AtomicU64,
}

impl Counters {
    pub(super) fn count(&self, action: Action) {
        let slot = ACTIONS.iter().position(|(a, _)| *a == action).unwrap_or(0);
        self.actions[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn actions(&self) -> ActionCounts {
        let n = |i: usize| self.actions[i].load(Ordering::Relaxed);
        ActionCounts {
            rest_sends: n(0),
            ws_sends: n(1),
            joins: n(2),
            leaves: n(3),
            reconnects: n(4),
            reads: n(5),
            reads_over_ws: self.reads_over_ws.load(Ordering::Relaxed),
        }
    }
}

/// What every task of a soak shares.
pub(super) struct Soak {
    pub(super) run: u32,
    pub(super) ledger: Ledger,
    /// Room ids, by room index.
    pub(super) rooms: Vec<i64>,
    /// User ids, by user index.
    pub(super) user_ids: Vec<i64>,
    pub(super) message_bytes: usize,
    pub(super) drain: Duration,
    pub(super) stop: CancellationToken,
    pub(super) counters: Counters,
    pub(super) errors_by_kind: Mutex<BTreeMap<String, u64>>,
    pub(super) error_samples: Mutex<Vec<String>>,
}

impl Soak {
    /// Counts an error under `kind` (few distinct values) and keeps the first few details.
    pub(super) fn error(&self, kind: impl Into<String>, detail: impl fmt::Display) {
        let kind = kind.into();
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self
            .error_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if samples.len() < ERROR_SAMPLES {
            samples.push(format!("{kind}: {detail:.300}"));
        }
        drop(samples);
        *self
            .errors_by_kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
    }
}
