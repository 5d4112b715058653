//! The [`EventLogStore`] queries on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::rows::{check_member, query, query_one};
use super::PostgresStore;
use crate::store::events::{page_from_rows, LogRead, PRUNE_BATCH};
use crate::store::{EventLogStore, StoreError, StoreResult};

/// The advisory lock a pruning transaction holds, so the nodes sharing the database take
/// turns instead of locking the same rooms in different orders.
const PRUNE_LOCK: i64 = 0x0063_6861_746c_6f67; // "chatlog"

#[async_trait]
impl EventLogStore for PostgresStore {
    async fn events_after(
        &self,
        room: i64,
        user: i64,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<LogRead> {
        let db = self.pool.get().await?;
        check_member(&db, room, user).await?;
        // One statement, one snapshot: the floor and the rows agree even while a prune runs.
        let rows = query(
            &db,
            "SELECT r.log_floor, r.last_seq, e.seq, e.event FROM rooms r
             LEFT JOIN room_events e ON e.room_id = r.id AND e.seq > $2
             WHERE r.id = $1 ORDER BY e.seq LIMIT $3",
            &[&room, &after_seq, &i64::from(limit.max(1))],
        )
        .await?;
        let head = rows.first().ok_or(StoreError::RoomNotFound)?;
        let (floor, last_seq): (i64, i64) = (head.get(0), head.get(1));
        let entries = rows
            .iter()
            .filter(|_| limit > 0)
            .filter_map(|row| Some((row.get::<_, Option<i64>>(2)?, row.get::<_, String>(3))))
            .collect();
        page_from_rows(after_seq, floor, last_seq, entries)
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        let turn: bool = query_one(&tx, "SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK])
            .await?
            .get(0);
        if !turn {
            return Ok(0);
        }
        let removed: i64 = query_one(
            &tx,
            "WITH gone AS (
                 DELETE FROM room_events WHERE (room_id, seq) IN (
                     SELECT room_id, seq FROM room_events WHERE created_at < $1
                     ORDER BY created_at LIMIT $2)
                 RETURNING room_id, seq
             ), floors AS (
                 SELECT room_id, MAX(seq) AS seq FROM gone GROUP BY room_id
             ), raised AS (
                 UPDATE rooms r SET log_floor = GREATEST(r.log_floor, f.seq)
                 FROM floors f WHERE r.id = f.room_id
             )
             SELECT COUNT(*) FROM gone",
            &[&before, &i64::from(PRUNE_BATCH)],
        )
        .await?
        .get(0);
        tx.commit().await?;
        Ok(removed as u64)
    }
}
