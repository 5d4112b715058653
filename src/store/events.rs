//! The store's part of the room event log: every durable change to a room with its
//! position `seq`, kept for `--event-retention` so clients can replay changes exactly.
//! Every backend implements it; [`super::Store`] requires it. Positions are assigned where
//! the events are queued (`enqueue` of each backend), in the change's transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::events::RoomEvent;

/// Log entries removed per pruning transaction, so one prune holds the writer briefly.
pub const PRUNE_BATCH: u32 = 5000;

/// A page of a room's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    /// Events after the asked position, oldest first, each with its `seq`.
    pub events: Vec<RoomEvent>,
    /// The room's newest position when the page was read.
    pub last_seq: i64,
}

/// Why a position cannot be replayed from: answered with a `reset` (REST: 410), never
/// with a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayGap {
    /// The retention removed events after the position: only history can restore the room.
    Pruned { floor: i64 },
    /// The room never had this position (another database, a client's bug).
    Ahead { last_seq: i64 },
}

/// A read of the log: the page, or why there is none.
pub type LogRead = Result<LogPage, ReplayGap>;

#[async_trait]
pub trait EventLogStore: Send + Sync {
    /// Up to `limit` events of `room` after `after_seq`, oldest first, for a member
    /// (`RoomNotFound` / `NotMember` otherwise); read in one snapshot, so a page has no gap.
    async fn events_after(
        &self,
        room: i64,
        user: i64,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<LogRead>;

    /// Removes up to [`PRUNE_BATCH`] entries logged before `before`, raising each room's
    /// floor to the newest position removed; how many went.
    async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// The page `rows` make after `after_seq`, given the room's floor and newest position: rows
/// are `(seq, event JSON)`, oldest first.
pub fn page_from_rows(
    after_seq: i64,
    floor: i64,
    last_seq: i64,
    rows: Vec<(i64, String)>,
) -> StoreResult<LogRead> {
    if after_seq < floor {
        return Ok(Err(ReplayGap::Pruned { floor }));
    }
    if after_seq > last_seq {
        return Ok(Err(ReplayGap::Ahead { last_seq }));
    }
    let mut events = Vec::with_capacity(rows.len());
    for (seq, body) in rows {
        let mut event = RoomEvent::decode(body.as_bytes())
            .map_err(|e| super::StoreError::backend(format!("log entry {seq} is corrupt"), e))?;
        event.seq = Some(seq);
        events.push(event);
    }
    Ok(Ok(LogPage { events, last_seq }))
}

impl ReplayGap {
    /// Why, in words a client can show or log.
    pub fn reason(self) -> String {
        match self {
            ReplayGap::Pruned { floor } => {
                format!("events up to position {floor} are no longer kept; reload the history")
            }
            ReplayGap::Ahead { last_seq } => {
                format!("the room's newest position is {last_seq}; reload the history")
            }
        }
    }
}
