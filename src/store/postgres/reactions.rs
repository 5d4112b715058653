//! The [`ReactionStore`] queries on PostgreSQL: the message's row is locked first (as an
//! edit or delete locks it), so reactions to it from several nodes, and its deletion, run
//! one after the other and each event carries the counts its commit left.

use async_trait::async_trait;
use chrono::Utc;
use deadpool_postgres::GenericClient;

use super::conversations::{blocked_in_direct, is_direct};
use super::rows::{check_member, enqueue, execute, query, query_opt};
use super::PostgresStore;
use crate::domain::events::RoomEvent;
use crate::domain::Reactions;
use crate::store::reactions::grouped;
use crate::store::{format_timestamp, ReactionStore, StoreError, StoreResult};

const COUNTS: &str = "SELECT r.message_id, r.emoji, COUNT(*), bool_or(r.user_id = $3)
     FROM reactions r JOIN messages m ON m.id = r.message_id
     WHERE m.room_id = $1 AND r.message_id = ANY($2)
     GROUP BY r.message_id, r.emoji ORDER BY r.message_id";

/// The reactions of `messages` of `room`, with `viewer`'s own.
async fn counts<C: GenericClient>(
    db: &C,
    room: i64,
    viewer: i64,
    messages: &[i64],
) -> StoreResult<Vec<Reactions>> {
    let rows = query(db, COUNTS, &[&room, &messages, &viewer]).await?;
    Ok(grouped(
        rows.iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
            .collect(),
    ))
}

/// Whether message `id` of `room` is there and not deleted, locking its row.
async fn lock_live_message<C: GenericClient>(db: &C, room: i64, id: i64) -> StoreResult<()> {
    let live = query_opt(
        db,
        "SELECT deleted_at IS NULL FROM messages WHERE id = $1 AND room_id = $2 FOR UPDATE",
        &[&id, &room],
    )
    .await?
    .map(|row| row.get::<_, bool>(0));
    match live {
        Some(true) => Ok(()),
        _ => Err(StoreError::MessageNotFound),
    }
}

#[async_trait]
impl ReactionStore for PostgresStore {
    async fn react(
        &self,
        room: i64,
        user: i64,
        id: i64,
        emoji: Option<&str>,
    ) -> StoreResult<Reactions> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        check_member(&tx, room, user).await?;
        lock_live_message(&tx, room, id).await?;
        // A reaction reaches the other person as a message does: a block stops it (taking
        // one back is still allowed).
        if emoji.is_some()
            && is_direct(&tx, room).await?
            && blocked_in_direct(&tx, room, user).await?
        {
            return Err(StoreError::Blocked);
        }
        let before: Option<String> = query_opt(
            &tx,
            "SELECT emoji FROM reactions WHERE message_id = $1 AND user_id = $2",
            &[&id, &user],
        )
        .await?
        .map(|row| row.get(0));
        let now = Utc::now();
        match emoji {
            Some(emoji) => {
                execute(
                    &tx,
                    "INSERT INTO reactions (message_id, user_id, emoji, created_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (message_id, user_id)
                     DO UPDATE SET emoji = excluded.emoji, created_at = excluded.created_at",
                    &[&id, &user, &emoji, &now],
                )
                .await?
            }
            None => {
                execute(
                    &tx,
                    "DELETE FROM reactions WHERE message_id = $1 AND user_id = $2",
                    &[&id, &user],
                )
                .await?
            }
        };
        let reactions = Reactions {
            message_id: id,
            counts: counts(&tx, room, user, &[id])
                .await?
                .pop()
                .map(|r| r.counts)
                .unwrap_or_default(),
            mine: emoji.map(str::to_string),
        };
        // Putting the same emoji again, or removing none, changes nothing the room must hear.
        if before.as_deref() != emoji {
            let event = RoomEvent::reaction(room, user, &reactions, &format_timestamp(now));
            enqueue(&tx, &event, now).await?;
        }
        tx.commit().await?;
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
        let db = self.pool.get().await?;
        counts(&db, room, viewer, &messages).await
    }
}
