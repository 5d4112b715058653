//! The [`EventLogStore`] queries on SQLite.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::queries::check_member;
use super::SqliteStore;
use crate::domain::events::RoomEvent;
use crate::store::events::{page_from_rows, LogRead, PRUNE_BATCH};
use crate::store::{format_timestamp, EventLogStore, StoreError, StoreResult};

/// Queues `event` for the relay and, if the room's log keeps it, gives it the room's next
/// `seq` and logs it: one writer, so positions follow commit order.
pub(super) fn enqueue(conn: &Connection, event: &RoomEvent) -> StoreResult<()> {
    let mut event = event.stamped();
    if event.is_logged() {
        let seq: i64 = conn
            .prepare_cached(
                "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
            )?
            .query_row([event.chat_id], |row| row.get(0))?;
        event.to_mut().seq = Some(seq);
    }
    let body =
        serde_json::to_string(&event).map_err(|e| StoreError::backend("encoding an event", e))?;
    if let Some(seq) = event.seq {
        let message = event.id.filter(|_| event.is_about_message());
        conn.prepare_cached(
            "INSERT INTO room_events (room_id, seq, message_id, event, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![event.chat_id, seq, message, body, event.created_at])?;
    }
    conn.prepare_cached("INSERT INTO outbox (event, created_at) VALUES (?1, ?2)")?
        .execute(params![body, event.created_at])?;
    Ok(())
}

fn events_after(
    conn: &Connection,
    room: i64,
    user: i64,
    after_seq: i64,
    limit: u32,
) -> StoreResult<LogRead> {
    check_member(conn, room, user)?;
    // One statement, one snapshot: the floor and the rows agree even while a prune runs.
    let mut rows = conn.prepare_cached(
        "SELECT r.log_floor, r.last_seq, e.seq, e.event FROM rooms r
         LEFT JOIN room_events e ON e.room_id = r.id AND e.seq > ?2
         WHERE r.id = ?1 ORDER BY e.seq LIMIT ?3",
    )?;
    let mut head = None;
    let mut entries = Vec::new();
    let mut query = rows.query(params![room, after_seq, limit.max(1)])?;
    while let Some(row) = query.next()? {
        head = Some((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?));
        if let Some(seq) = row.get::<_, Option<i64>>(2)? {
            entries.push((seq, row.get::<_, String>(3)?));
        }
    }
    let (floor, last_seq) = head.ok_or(StoreError::RoomNotFound)?;
    if limit == 0 {
        entries.clear();
    }
    page_from_rows(after_seq, floor, last_seq, entries)
}

fn prune(conn: &Connection, before: &str) -> StoreResult<u64> {
    let doomed: Vec<(i64, i64)> = conn
        .prepare_cached(
            "SELECT room_id, seq FROM room_events WHERE created_at < ?1
             ORDER BY created_at LIMIT ?2",
        )?
        .query_map(params![before, PRUNE_BATCH], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut floors = BTreeMap::new();
    let mut delete =
        conn.prepare_cached("DELETE FROM room_events WHERE room_id = ?1 AND seq = ?2")?;
    for &(room, seq) in &doomed {
        delete.execute(params![room, seq])?;
        let floor = floors.entry(room).or_insert(seq);
        *floor = (*floor).max(seq);
    }
    let mut raise =
        conn.prepare_cached("UPDATE rooms SET log_floor = MAX(log_floor, ?2) WHERE id = ?1")?;
    for (room, floor) in floors {
        raise.execute(params![room, floor])?;
    }
    Ok(doomed.len() as u64)
}

#[async_trait]
impl EventLogStore for SqliteStore {
    async fn events_after(
        &self,
        room: i64,
        user: i64,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<LogRead> {
        self.read(move |conn| events_after(conn, room, user, after_seq, limit))
            .await
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let before = format_timestamp(before);
        // The node's own housekeeping: it waits for room rather than being shed.
        self.internal_write(move |conn| prune(conn, &before)).await
    }
}
