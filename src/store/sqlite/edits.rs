//! The [`EditStore`] queries on SQLite: the single writer serialises a change with every
//! other, so the checks and the change cannot interleave with another edit or delete.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::events::enqueue;
use super::queries::{check_member, message_from_row, MESSAGE_SELECT};
use super::SqliteStore;
use crate::domain::events::RoomEvent;
use crate::store::edits::ChangeRule;
use crate::store::{now_timestamp, Attachment, EditStore, Message, StoreError, StoreResult};

/// Message `id` of `room`, not deleted, and the room's admin, for `user`, a member.
fn changeable(conn: &Connection, room: i64, user: i64, id: i64) -> StoreResult<(Message, i64)> {
    check_member(conn, room, user)?;
    let message = conn
        .prepare_cached(&format!(
            "{MESSAGE_SELECT} WHERE m.id = ?1 AND m.room_id = ?2"
        ))?
        .query_row(params![id, room], message_from_row)
        .optional()?
        .filter(|m| !m.deleted)
        .ok_or(StoreError::MessageNotFound)?;
    let admin = conn.query_row("SELECT admin_id FROM rooms WHERE id = ?1", [room], |row| {
        row.get(0)
    })?;
    Ok((message, admin))
}

fn edit(
    conn: &Connection,
    room: i64,
    user: i64,
    id: i64,
    content: &str,
    rule: ChangeRule,
) -> StoreResult<Message> {
    let (mut message, admin) = changeable(conn, room, user, id)?;
    rule.check(&message, user, admin, chrono::Utc::now())?;
    let now = now_timestamp();
    conn.prepare_cached("UPDATE messages SET content = ?2, edited_at = ?3 WHERE id = ?1")?
        .execute(params![id, content, now])?;
    message.content = content.to_string();
    message.edited_at = Some(now);
    enqueue(conn, &RoomEvent::edited(&message))?;
    Ok(message)
}

fn delete(
    conn: &Connection,
    room: i64,
    user: i64,
    id: i64,
    rule: ChangeRule,
) -> StoreResult<(Message, Option<Attachment>)> {
    let (mut message, admin) = changeable(conn, room, user, id)?;
    rule.check(&message, user, admin, chrono::Utc::now())?;
    conn.prepare_cached("UPDATE messages SET content = '', deleted_at = ?2 WHERE id = ?1")?
        .execute(params![id, now_timestamp()])?;
    conn.prepare_cached("DELETE FROM attachments WHERE message_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM reactions WHERE message_id = ?1")?
        .execute([id])?;
    redact(conn, room, id)?;
    message.content.clear();
    message.deleted = true;
    let attachment = message.attachment.take();
    enqueue(conn, &RoomEvent::deleted(&message))?;
    Ok((message, attachment))
}

/// Rewrites the log's events about message `id` without its content, and the replies to it
/// without their excerpt of it.
fn redact(conn: &Connection, room: i64, id: i64) -> StoreResult<()> {
    const ABOUT: &str = "SELECT seq, event FROM room_events WHERE room_id = ?1 AND message_id = ?2";
    const REPLIES: &str = "SELECT e.seq, e.event FROM room_events e
         JOIN messages m ON m.id = e.message_id WHERE e.room_id = ?1 AND m.reply_to = ?2";
    rewrite(conn, room, id, ABOUT, RoomEvent::redacted)?;
    rewrite(conn, room, id, REPLIES, RoomEvent::without_excerpt)
}

/// Rewrites the log entries `select` finds with `change`.
fn rewrite(
    conn: &Connection,
    room: i64,
    id: i64,
    select: &str,
    change: fn(RoomEvent) -> RoomEvent,
) -> StoreResult<()> {
    let entries: Vec<(i64, String)> = conn
        .prepare_cached(select)?
        .query_map(params![room, id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update =
        conn.prepare_cached("UPDATE room_events SET event = ?3 WHERE room_id = ?1 AND seq = ?2")?;
    for (seq, body) in entries {
        let event = RoomEvent::decode(body.as_bytes())
            .map_err(|e| StoreError::backend(format!("log entry {seq} is corrupt"), e))?;
        update.execute(params![
            room,
            seq,
            String::from_utf8_lossy(&change(event).encode())
        ])?;
    }
    Ok(())
}

#[async_trait]
impl EditStore for SqliteStore {
    async fn edit_message(
        &self,
        room: i64,
        user: i64,
        id: i64,
        content: &str,
        rule: ChangeRule,
    ) -> StoreResult<Message> {
        let content = content.to_string();
        let edited = self
            .write(move |conn| edit(conn, room, user, id, &content, rule))
            .await?;
        self.outbox.notify_one();
        Ok(edited)
    }

    async fn delete_message(
        &self,
        room: i64,
        user: i64,
        id: i64,
        rule: ChangeRule,
    ) -> StoreResult<(Message, Option<Attachment>)> {
        let deleted = self
            .write(move |conn| delete(conn, room, user, id, rule))
            .await?;
        self.outbox.notify_one();
        Ok(deleted)
    }
}
