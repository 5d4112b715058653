//! How SQLite rows become messages: the one SELECT every message read uses, its row
//! mapping, and the check of what a reply may answer.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::domain::ReplyRef;
use crate::store::{Attachment, Message, StoreError, StoreResult};

pub(super) const MESSAGE_SELECT: &str =
    "SELECT m.id, m.room_id, m.sender_id, u.username, m.content, m.created_at,
            a.file_name, a.content_type, a.size, a.original_name, m.edited_at, m.deleted_at,
            r.id, r.sender_id, r.content, r.deleted_at
     FROM messages m JOIN users u ON u.id = m.sender_id
     LEFT JOIN attachments a ON a.message_id = m.id
     LEFT JOIN messages r ON r.id = m.reply_to";

/// `Ok` when message `id` is in `room` and not deleted: what a reply may answer.
pub(super) fn check_reply(conn: &Connection, room: i64, id: i64) -> StoreResult<()> {
    let fits: Option<bool> = conn
        .prepare_cached("SELECT room_id = ?2 AND deleted_at IS NULL FROM messages WHERE id = ?1")?
        .query_row(params![id, room], |row| row.get(0))
        .optional()?;
    match fits {
        Some(true) => Ok(()),
        _ => Err(StoreError::BadReply),
    }
}

pub(super) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let file_name: Option<String> = row.get(6)?;
    let attachment = match file_name {
        Some(file_name) => Some(Attachment {
            file_name,
            content_type: row.get(7)?,
            size: row.get::<_, i64>(8)? as u64,
            original_name: row.get(9)?,
        }),
        None => None,
    };
    Ok(Message {
        id: row.get(0)?,
        room_id: row.get(1)?,
        sender_id: row.get(2)?,
        sender_username: row.get(3)?,
        content: row.get(4)?,
        created_at: row.get(5)?,
        attachment,
        edited_at: row.get(10)?,
        deleted: row.get::<_, Option<String>>(11)?.is_some(),
        reply_to: match row.get::<_, Option<i64>>(12)? {
            Some(id) => Some(ReplyRef::new(
                id,
                row.get(13)?,
                &row.get::<_, String>(14)?,
                row.get::<_, Option<String>>(15)?.is_some(),
            )),
            None => None,
        },
    })
}
