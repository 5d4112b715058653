//! The [`EditStore`] queries on PostgreSQL: the message's row is locked first, so an edit
//! and a delete of the same message from two nodes run one after the other.

use async_trait::async_trait;
use chrono::Utc;
use deadpool_postgres::GenericClient;

use super::rows::{
    check_member, enqueue, execute, message_from_row, query, query_one, query_opt, MESSAGE_SELECT,
};
use super::PostgresStore;
use crate::domain::events::RoomEvent;
use crate::store::edits::ChangeRule;
use crate::store::{format_timestamp, Attachment, EditStore, Message, StoreError, StoreResult};

/// Message `id` of `room`, not deleted, locked for this transaction, and the room's admin,
/// for `user`, a member.
async fn changeable<C: GenericClient>(
    db: &C,
    room: i64,
    user: i64,
    id: i64,
) -> StoreResult<(Message, i64)> {
    check_member(db, room, user).await?;
    let sql = format!("{MESSAGE_SELECT} WHERE m.id = $1 AND m.room_id = $2 FOR UPDATE OF m");
    let message = query_opt(db, &sql, &[&id, &room])
        .await?
        .map(|row| message_from_row(&row))
        .filter(|m| !m.deleted)
        .ok_or(StoreError::MessageNotFound)?;
    let admin = query_one(db, "SELECT admin_id FROM rooms WHERE id = $1", &[&room])
        .await?
        .get(0);
    Ok((message, admin))
}

/// Rewrites the log's events about message `id` without its content, and the replies to it
/// without their excerpt of it.
async fn redact<C: GenericClient>(db: &C, room: i64, id: i64) -> StoreResult<()> {
    const ABOUT: &str = "SELECT seq, event FROM room_events WHERE room_id = $1 AND message_id = $2";
    const REPLIES: &str = "SELECT e.seq, e.event FROM room_events e
         JOIN messages m ON m.id = e.message_id WHERE e.room_id = $1 AND m.reply_to = $2";
    rewrite(db, room, id, ABOUT, RoomEvent::redacted).await?;
    rewrite(db, room, id, REPLIES, RoomEvent::without_excerpt).await
}

/// Rewrites the log entries `select` finds with `change`.
async fn rewrite<C: GenericClient>(
    db: &C,
    room: i64,
    id: i64,
    select: &str,
    change: fn(RoomEvent) -> RoomEvent,
) -> StoreResult<()> {
    for entry in query(db, select, &[&room, &id]).await? {
        let (seq, body): (i64, String) = (entry.get(0), entry.get(1));
        let event = RoomEvent::decode(body.as_bytes())
            .map_err(|e| StoreError::backend(format!("log entry {seq} is corrupt"), e))?;
        let changed = String::from_utf8_lossy(&change(event).encode()).into_owned();
        execute(
            db,
            "UPDATE room_events SET event = $3 WHERE room_id = $1 AND seq = $2",
            &[&room, &seq, &changed],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl EditStore for PostgresStore {
    async fn edit_message(
        &self,
        room: i64,
        user: i64,
        id: i64,
        content: &str,
        rule: ChangeRule,
    ) -> StoreResult<Message> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        let (mut message, admin) = changeable(&tx, room, user, id).await?;
        let now = Utc::now();
        rule.check(&message, user, admin, now)?;
        execute(
            &tx,
            "UPDATE messages SET content = $2, edited_at = $3 WHERE id = $1",
            &[&id, &content, &now],
        )
        .await?;
        message.content = content.to_string();
        message.edited_at = Some(format_timestamp(now));
        enqueue(&tx, &RoomEvent::edited(&message), now).await?;
        tx.commit().await?;
        self.outbox.notify_one();
        Ok(message)
    }

    async fn delete_message(
        &self,
        room: i64,
        user: i64,
        id: i64,
        rule: ChangeRule,
    ) -> StoreResult<(Message, Option<Attachment>)> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        let (mut message, admin) = changeable(&tx, room, user, id).await?;
        let now = Utc::now();
        rule.check(&message, user, admin, now)?;
        execute(
            &tx,
            "UPDATE messages SET content = '', deleted_at = $2 WHERE id = $1",
            &[&id, &now],
        )
        .await?;
        execute(&tx, "DELETE FROM attachments WHERE message_id = $1", &[&id]).await?;
        execute(&tx, "DELETE FROM reactions WHERE message_id = $1", &[&id]).await?;
        redact(&tx, room, id).await?;
        message.content.clear();
        message.deleted = true;
        let attachment = message.attachment.take();
        enqueue(&tx, &RoomEvent::deleted(&message), now).await?;
        tx.commit().await?;
        self.outbox.notify_one();
        Ok((message, attachment))
    }
}
