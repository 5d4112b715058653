//! The [`PresenceStore`] queries on SQLite. The single writer serialises every change, so
//! "was anyone holding this user" and the change that follows cannot interleave.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::queries::{user_from_row, USER_COLUMNS};
use super::SqliteStore;
use crate::store::presence::{PresenceChange, PresenceChanges, PresenceRoom, PresenceState};
use crate::store::{format_timestamp, now_timestamp, PresenceStore, StoreError, StoreResult, User};

/// Whether a live node (heartbeat not expired at `now`) holds a session of `user`.
fn held(conn: &Connection, user: i64, now: i64) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM presence_sessions s
                 JOIN presence_nodes n ON n.node_id = s.node_id
                 WHERE s.user_id = ?1 AND n.expires_at >= ?2)",
        )?
        .query_row(params![user, now], |row| row.get(0))?)
}

/// Stores `at` as `user`'s last_seen; their privacy setting, `None` for an unknown user.
fn went_offline(conn: &Connection, user: i64, at: &str) -> StoreResult<Option<PresenceChange>> {
    let show: Option<bool> = conn
        .prepare_cached("UPDATE users SET last_seen = ?2 WHERE id = ?1 RETURNING show_last_seen")?
        .query_row(params![user, at], |row| row.get(0))
        .optional()?;
    Ok(show.map(|show_last_seen| PresenceChange {
        user,
        last_seen: Some(at.to_string()),
        show_last_seen,
    }))
}

fn millis_timestamp(ms: i64) -> String {
    format_timestamp(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

fn apply(
    conn: &Connection,
    node: &str,
    now: i64,
    ttl_ms: i64,
    arrived: &[i64],
    left: &[i64],
) -> StoreResult<PresenceChanges> {
    let alive: Option<bool> = conn
        .prepare_cached("SELECT expires_at >= ?2 FROM presence_nodes WHERE node_id = ?1")?
        .query_row(params![node, now], |row| row.get(0))
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO presence_nodes (node_id, heartbeat_at, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (node_id) DO UPDATE
             SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
    )?
    .execute(params![node, now, now + ttl_ms])?;
    let mut changes = PresenceChanges {
        lapsed: alive != Some(true),
        ..PresenceChanges::default()
    };
    for &user in arrived {
        let show: Option<bool> = conn
            .prepare_cached("SELECT show_last_seen FROM users WHERE id = ?1")?
            .query_row([user], |row| row.get(0))
            .optional()?;
        // A user deleted meanwhile has nothing to announce.
        let Some(show_last_seen) = show else { continue };
        if !held(conn, user, now)? {
            changes.online.push(PresenceChange {
                user,
                last_seen: None,
                show_last_seen,
            });
        }
        conn.prepare_cached(
            "INSERT OR IGNORE INTO presence_sessions (node_id, user_id) VALUES (?1, ?2)",
        )?
        .execute(params![node, user])?;
    }
    let at = millis_timestamp(now);
    for &user in left {
        conn.prepare_cached("DELETE FROM presence_sessions WHERE node_id = ?1 AND user_id = ?2")?
            .execute(params![node, user])?;
        if !held(conn, user, now)? {
            changes.offline.extend(went_offline(conn, user, &at)?);
        }
    }
    Ok(changes)
}

fn sweep(conn: &Connection, now: i64, node: Option<&str>) -> StoreResult<Vec<PresenceChange>> {
    let dead: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT node_id, heartbeat_at FROM presence_nodes
             WHERE expires_at < ?1 OR node_id = ?2",
        )?
        .query_map(params![now, node], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    // Each user once, last seen at the latest heartbeat of their dead nodes (a stopping
    // node's users: now).
    let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
    for (dead_node, heartbeat) in dead {
        let seen = if Some(dead_node.as_str()) == node {
            now
        } else {
            heartbeat
        };
        let users: Vec<i64> = conn
            .prepare_cached("DELETE FROM presence_sessions WHERE node_id = ?1 RETURNING user_id")?
            .query_map([&dead_node], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        conn.prepare_cached("DELETE FROM presence_nodes WHERE node_id = ?1")?
            .execute([&dead_node])?;
        for user in users {
            let entry = latest.entry(user).or_insert(seen);
            *entry = (*entry).max(seen);
        }
    }
    let mut offline = Vec::new();
    for (user, seen) in latest {
        if !held(conn, user, now)? {
            offline.extend(went_offline(conn, user, &millis_timestamp(seen))?);
        }
    }
    Ok(offline)
}

fn presence_of(
    conn: &Connection,
    viewer: i64,
    subject: i64,
    now: i64,
) -> StoreResult<Option<PresenceState>> {
    let row: Option<(Option<String>, bool)> = conn
        .prepare_cached(
            "SELECT last_seen, show_last_seen FROM users WHERE id = ?2 AND (?1 = ?2 OR EXISTS(
                 SELECT 1 FROM room_members a JOIN room_members b ON b.room_id = a.room_id
                 WHERE a.user_id = ?1 AND b.user_id = ?2))",
        )?
        .query_row(params![viewer, subject], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((last_seen, show_last_seen)) = row else {
        return Ok(None);
    };
    Ok(Some(PresenceState {
        online: held(conn, subject, now)?,
        last_seen,
        show_last_seen,
    }))
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn presence_apply(
        &self,
        node: &str,
        now: i64,
        ttl_ms: i64,
        arrived: Vec<i64>,
        left: Vec<i64>,
    ) -> StoreResult<PresenceChanges> {
        let node = node.to_string();
        // The node's own bookkeeping: it waits for room rather than being shed.
        self.internal_write(move |conn| apply(conn, &node, now, ttl_ms, &arrived, &left))
            .await
    }

    async fn presence_sweep(
        &self,
        now: i64,
        node: Option<String>,
    ) -> StoreResult<Vec<PresenceChange>> {
        self.internal_write(move |conn| sweep(conn, now, node.as_deref()))
            .await
    }

    async fn presence_of(
        &self,
        viewer: i64,
        subject: i64,
        now: i64,
    ) -> StoreResult<Option<PresenceState>> {
        self.read(move |conn| presence_of(conn, viewer, subject, now))
            .await
    }

    async fn online_counts(&self, rooms: Vec<i64>, now: i64) -> StoreResult<Vec<(i64, i64)>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let rooms = serde_json::to_string(&rooms).expect("ids serialise");
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT m.room_id, COUNT(DISTINCT s.user_id) FROM room_members m
                     JOIN presence_sessions s ON s.user_id = m.user_id
                     JOIN presence_nodes n ON n.node_id = s.node_id AND n.expires_at >= ?2
                     WHERE m.room_id IN (SELECT value FROM json_each(?1))
                     GROUP BY m.room_id",
                )?
                .query_map(params![rooms, now], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn presence_rooms(&self, users: Vec<i64>) -> StoreResult<Vec<PresenceRoom>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let users = serde_json::to_string(&users).expect("ids serialise");
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(PRESENCE_ROOMS)?
                .query_map([users], |row| {
                    Ok(PresenceRoom {
                        user: row.get(0)?,
                        room: row.get(1)?,
                        members: row.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn set_show_last_seen(&self, user: i64, show: bool) -> StoreResult<User> {
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "UPDATE users SET show_last_seen = ?2, updated_at = ?3 WHERE id = ?1
                 RETURNING {USER_COLUMNS}"
            ))?
            .query_row(params![user, show, now_timestamp()], user_from_row)
            .optional()?
            .ok_or(StoreError::UserNotFound)
        })
        .await
    }
}

/// Each room is counted once, however many of the users are in it.
const PRESENCE_ROOMS: &str = "WITH mine AS (
        SELECT user_id, room_id FROM room_members
        WHERE user_id IN (SELECT value FROM json_each(?1))
    ), sizes AS (
        SELECT room_id, COUNT(*) AS members FROM room_members
        WHERE room_id IN (SELECT room_id FROM mine) GROUP BY room_id
    )
    SELECT mine.user_id, mine.room_id, sizes.members FROM mine JOIN sizes USING (room_id)";
