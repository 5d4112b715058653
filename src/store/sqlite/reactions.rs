//! The [`ReactionStore`] queries on SQLite: the single writer serialises a reaction with
//! every other change, so the counts it answers are those its event carries.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::events::enqueue;
use super::queries::{blocked_in_direct, check_member, is_direct};
use super::SqliteStore;
use crate::domain::events::RoomEvent;
use crate::domain::{ReactionCount, Reactions};
use crate::store::reactions::{grouped, CountRow};
use crate::store::{now_timestamp, ReactionStore, StoreError, StoreResult};

fn counts(conn: &Connection, id: i64) -> StoreResult<Vec<ReactionCount>> {
    let rows = conn
        .prepare_cached(
            "SELECT message_id, emoji, COUNT(*), 0 FROM reactions WHERE message_id = ?1
             GROUP BY emoji",
        )?
        .query_map([id], count_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(grouped(rows).pop().map(|r| r.counts).unwrap_or_default())
}

fn count_row(row: &rusqlite::Row) -> rusqlite::Result<CountRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn react(
    conn: &Connection,
    room: i64,
    user: i64,
    id: i64,
    emoji: Option<&str>,
) -> StoreResult<Reactions> {
    check_member(conn, room, user)?;
    let deleted: Option<bool> = conn
        .prepare_cached(
            "SELECT deleted_at IS NOT NULL FROM messages WHERE id = ?1 AND room_id = ?2",
        )?
        .query_row(params![id, room], |row| row.get(0))
        .optional()?;
    if deleted != Some(false) {
        return Err(StoreError::MessageNotFound);
    }
    // A reaction reaches the other person as a message does: a block stops it (taking one
    // back is still allowed).
    if emoji.is_some() && is_direct(conn, room)? && blocked_in_direct(conn, room, user)? {
        return Err(StoreError::Blocked);
    }
    let before: Option<String> = conn
        .prepare_cached("SELECT emoji FROM reactions WHERE message_id = ?1 AND user_id = ?2")?
        .query_row(params![id, user], |row| row.get(0))
        .optional()?;
    let now = now_timestamp();
    match emoji {
        Some(emoji) => conn
            .prepare_cached(
                "INSERT INTO reactions (message_id, user_id, emoji, created_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (message_id, user_id)
                 DO UPDATE SET emoji = excluded.emoji, created_at = excluded.created_at",
            )?
            .execute(params![id, user, emoji, now])?,
        None => conn
            .prepare_cached("DELETE FROM reactions WHERE message_id = ?1 AND user_id = ?2")?
            .execute(params![id, user])?,
    };
    let reactions = Reactions {
        message_id: id,
        counts: counts(conn, id)?,
        mine: emoji.map(str::to_string),
    };
    // Putting the same emoji again, or removing none, changes nothing the room must hear.
    if before.as_deref() != emoji {
        enqueue(conn, &RoomEvent::reaction(room, user, &reactions, &now))?;
    }
    Ok(reactions)
}

#[async_trait]
impl ReactionStore for SqliteStore {
    async fn react(
        &self,
        room: i64,
        user: i64,
        id: i64,
        emoji: Option<&str>,
    ) -> StoreResult<Reactions> {
        let emoji = emoji.map(str::to_string);
        let reactions = self
            .write(move |conn| react(conn, room, user, id, emoji.as_deref()))
            .await?;
        self.outbox.notify_one();
        Ok(reactions)
    }

    async fn reaction_counts(
        &self,
        room: i64,
        viewer: i64,
        messages: Vec<i64>,
    ) -> StoreResult<Vec<Reactions>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |conn| {
            // The ids come from the store's own page (integers), so they are inlined.
            let ids = messages
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let rows = conn
                .prepare(&format!(
                    "SELECT r.message_id, r.emoji, COUNT(*), MAX(r.user_id = ?2) FROM reactions r
                     JOIN messages m ON m.id = r.message_id
                     WHERE m.room_id = ?1 AND r.message_id IN ({ids})
                     GROUP BY r.message_id, r.emoji ORDER BY r.message_id"
                ))?
                .query_map(params![room, viewer], count_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(grouped(rows))
        })
        .await
    }
}
