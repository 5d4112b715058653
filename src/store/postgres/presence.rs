//! The [`PresenceStore`] queries on PostgreSQL. Several nodes change presence at once, so
//! each transaction locks the users it decides about (in id order, so two never deadlock)
//! before asking whether anyone else holds them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::rows::{execute, query, query_one, query_opt, user_from_row, USER_COLUMNS};
use super::PostgresStore;
use crate::store::presence::{PresenceChange, PresenceChanges, PresenceRoom, PresenceState};
use crate::store::{format_timestamp, PresenceStore, StoreError, StoreResult, User};

const HELD: &str = "SELECT EXISTS(SELECT 1 FROM presence_sessions s
     JOIN presence_nodes n ON n.node_id = s.node_id
     WHERE s.user_id = $1 AND n.expires_at >= $2)";

async fn held<C: GenericClient>(db: &C, user: i64, now: i64) -> StoreResult<bool> {
    Ok(query_one(db, HELD, &[&user, &now]).await?.get(0))
}

/// Locks `users` for this transaction; the ones that exist, with their privacy setting.
async fn lock_users<C: GenericClient>(db: &C, users: &[i64]) -> StoreResult<Vec<(i64, bool)>> {
    let rows = query(
        db,
        "SELECT id, show_last_seen FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&users],
    )
    .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

async fn went_offline<C: GenericClient>(
    db: &C,
    user: i64,
    at: DateTime<Utc>,
) -> StoreResult<Option<PresenceChange>> {
    let row = query_opt(
        db,
        "UPDATE users SET last_seen = $2 WHERE id = $1 RETURNING show_last_seen",
        &[&user, &at],
    )
    .await?;
    Ok(row.map(|row| PresenceChange {
        user,
        last_seen: Some(format_timestamp(at)),
        show_last_seen: row.get(0),
    }))
}

fn at_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[async_trait]
impl PresenceStore for PostgresStore {
    async fn presence_apply(
        &self,
        node: &str,
        now: i64,
        ttl_ms: i64,
        arrived: Vec<i64>,
        left: Vec<i64>,
    ) -> StoreResult<PresenceChanges> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        // Locked, so a sweeper deciding it is dead waits and then sees it renewed.
        let alive = query_opt(
            &tx,
            "SELECT expires_at >= $2 FROM presence_nodes WHERE node_id = $1 FOR UPDATE",
            &[&node, &now],
        )
        .await?
        .map(|row| row.get::<_, bool>(0));
        execute(
            &tx,
            "INSERT INTO presence_nodes (node_id, heartbeat_at, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (node_id) DO UPDATE
                 SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
            &[&node, &now, &(now + ttl_ms)],
        )
        .await?;
        let everyone: Vec<i64> = arrived.iter().chain(&left).copied().collect();
        let known = lock_users(&tx, &everyone).await?;
        let mut changes = PresenceChanges {
            lapsed: alive != Some(true),
            ..PresenceChanges::default()
        };
        for (user, show_last_seen) in known.iter().filter(|(u, _)| arrived.contains(u)) {
            if !held(&tx, *user, now).await? {
                changes.online.push(PresenceChange {
                    user: *user,
                    last_seen: None,
                    show_last_seen: *show_last_seen,
                });
            }
            execute(
                &tx,
                "INSERT INTO presence_sessions (node_id, user_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&node, user],
            )
            .await?;
        }
        for user in left {
            execute(
                &tx,
                "DELETE FROM presence_sessions WHERE node_id = $1 AND user_id = $2",
                &[&node, &user],
            )
            .await?;
            if !held(&tx, user, now).await? {
                changes
                    .offline
                    .extend(went_offline(&tx, user, at_millis(now)).await?);
            }
        }
        tx.commit().await?;
        Ok(changes)
    }

    async fn presence_sweep(
        &self,
        now: i64,
        node: Option<String>,
    ) -> StoreResult<Vec<PresenceChange>> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        // Deleting claims each dead node for this caller only; the select still sees the
        // sessions the cascade removes (one snapshot for the whole statement).
        let rows = query(
            &tx,
            "WITH dead AS (DELETE FROM presence_nodes WHERE expires_at < $1 OR node_id = $2
                           RETURNING node_id, heartbeat_at)
             SELECT s.user_id, d.node_id, d.heartbeat_at
             FROM presence_sessions s JOIN dead d ON d.node_id = s.node_id",
            &[&now, &node],
        )
        .await?;
        // Each user once, last seen at the latest heartbeat of their dead nodes (a stopping
        // node's users: now).
        let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
        for row in &rows {
            let (user, dead_node): (i64, String) = (row.get(0), row.get(1));
            let seen = if Some(&dead_node) == node.as_ref() {
                now
            } else {
                row.get(2)
            };
            let entry = latest.entry(user).or_insert(seen);
            *entry = (*entry).max(seen);
        }
        let users: Vec<i64> = latest.keys().copied().collect();
        lock_users(&tx, &users).await?;
        let mut offline = Vec::new();
        for (user, seen) in latest {
            if !held(&tx, user, now).await? {
                offline.extend(went_offline(&tx, user, at_millis(seen)).await?);
            }
        }
        tx.commit().await?;
        Ok(offline)
    }

    async fn presence_of(
        &self,
        viewer: i64,
        subject: i64,
        now: i64,
    ) -> StoreResult<Option<PresenceState>> {
        let db = self.pool.get().await?;
        let row = query_opt(
            &db,
            "SELECT last_seen, show_last_seen FROM users WHERE id = $2 AND ($1 = $2 OR EXISTS(
                 SELECT 1 FROM room_members a JOIN room_members b ON b.room_id = a.room_id
                 WHERE a.user_id = $1 AND b.user_id = $2))",
            &[&viewer, &subject],
        )
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PresenceState {
            online: held(&db, subject, now).await?,
            last_seen: row.get::<_, Option<DateTime<Utc>>>(0).map(format_timestamp),
            show_last_seen: row.get(1),
        }))
    }

    async fn online_counts(&self, rooms: Vec<i64>, now: i64) -> StoreResult<Vec<(i64, i64)>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.pool.get().await?;
        let rows = query(
            &db,
            "SELECT m.room_id, COUNT(DISTINCT s.user_id) FROM room_members m
             JOIN presence_sessions s ON s.user_id = m.user_id
             JOIN presence_nodes n ON n.node_id = s.node_id AND n.expires_at >= $2
             WHERE m.room_id = ANY($1)
             GROUP BY m.room_id",
            &[&rooms, &now],
        )
        .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    async fn presence_rooms(&self, users: Vec<i64>) -> StoreResult<Vec<PresenceRoom>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.pool.get().await?;
        // Each room is counted once, however many of the users are in it.
        let rows = query(
            &db,
            "WITH mine AS (
                 SELECT user_id, room_id FROM room_members WHERE user_id = ANY($1)
             ), sizes AS (
                 SELECT room_id, COUNT(*) AS members FROM room_members
                 WHERE room_id IN (SELECT room_id FROM mine) GROUP BY room_id
             )
             SELECT mine.user_id, mine.room_id, sizes.members FROM mine JOIN sizes USING (room_id)",
            &[&users],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|row| PresenceRoom {
                user: row.get(0),
                room: row.get(1),
                members: row.get(2),
            })
            .collect())
    }

    async fn set_show_last_seen(&self, user: i64, show: bool) -> StoreResult<User> {
        let db = self.pool.get().await?;
        let sql = format!(
            "UPDATE users SET show_last_seen = $2, updated_at = now() WHERE id = $1
             RETURNING {USER_COLUMNS}"
        );
        query_opt(&db, &sql, &[&user, &show])
            .await?
            .as_ref()
            .map(user_from_row)
            .ok_or(StoreError::UserNotFound)
    }
}
