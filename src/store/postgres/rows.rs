//! What the PostgreSQL queries share: query helpers that map errors once, the row mappers of
//! users, rooms and messages, and the room lock, membership check and outbox insert that
//! every write runs.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::domain::conversations::RoomKind;
use crate::domain::events::RoomEvent;
use crate::domain::ReplyRef;
use crate::store::{
    format_timestamp, Attachment, Member, Message, Room, StoreError, StoreResult, User,
};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) async fn query<C: GenericClient>(
    db: &C,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Vec<Row>> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query(&statement, params).await?)
}

pub(super) async fn query_one<C: GenericClient>(
    db: &C,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Row> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query_one(&statement, params).await?)
}

pub(super) async fn query_opt<C: GenericClient>(
    db: &C,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<Row>> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query_opt(&statement, params).await?)
}

pub(super) async fn execute<C: GenericClient>(
    db: &C,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<u64> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.execute(&statement, params).await?)
}

pub(super) fn timestamp(row: &Row, index: usize) -> String {
    format_timestamp(row.get::<_, DateTime<Utc>>(index))
}

pub(super) const USER_COLUMNS: &str =
    "id, email, username, phone_number, first_name, last_name, created_at, updated_at, show_last_seen";

pub(super) fn user_from_row(row: &Row) -> User {
    User {
        id: row.get(0),
        email: row.get(1),
        username: row.get(2),
        phone_number: row.get(3),
        first_name: row.get(4),
        last_name: row.get(5),
        created_at: timestamp(row, 6),
        updated_at: timestamp(row, 7),
        show_last_seen: row.get(8),
    }
}

pub(super) fn is_unique_violation(err: &tokio_postgres::Error, constraint: &str) -> bool {
    err.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && err.as_db_error().and_then(|e| e.constraint()) == Some(constraint)
}

/// Rooms with their members, one row per member (or one with NULL member columns for an
/// empty room); callers order by room, then join time and user id.
pub(super) const ROOM_SELECT: &str =
    "SELECT r.id, r.name, r.admin_id, r.created_at, r.updated_at, r.kind,
            u.id, u.username, u.first_name, u.last_name
     FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id
     LEFT JOIN users u ON u.id = m.user_id";

/// Groups [`ROOM_SELECT`] rows (ordered by room) into rooms.
pub(super) fn rooms_from_rows(rows: &[Row]) -> Vec<Room> {
    let mut rooms: Vec<Room> = Vec::new();
    for row in rows {
        let id: i64 = row.get(0);
        if rooms.last().is_none_or(|room| room.id != id) {
            rooms.push(Room {
                id,
                name: row.get(1),
                admin: row.get(2),
                kind: RoomKind::from_stored(row.get(5)),
                members: Vec::new(),
                member_count: 0,
                created_at: timestamp(row, 3),
                updated_at: timestamp(row, 4),
            });
        }
        if let Some(member) = row.get::<_, Option<i64>>(6) {
            let room = rooms.last_mut().expect("a room was pushed above");
            room.members.push(Member {
                id: member,
                username: row.get(7),
                first_name: row.get(8),
                last_name: row.get(9),
            });
            room.member_count += 1;
        }
    }
    rooms
}

pub(super) async fn load_room<C: GenericClient>(db: &C, room: i64) -> StoreResult<Option<Room>> {
    let rows = query(
        db,
        &format!("{ROOM_SELECT} WHERE r.id = $1 ORDER BY m.joined_at, u.id"),
        &[&room],
    )
    .await?;
    Ok(rooms_from_rows(&rows).pop())
}

pub(super) async fn check_member<C: GenericClient>(
    db: &C,
    room: i64,
    user: i64,
) -> StoreResult<()> {
    let state = query_opt(
        db,
        "SELECT EXISTS(SELECT 1 FROM room_members WHERE room_id = r.id AND user_id = $2)
         FROM rooms r WHERE r.id = $1",
        &[&room, &user],
    )
    .await?;
    match state.map(|row| row.get::<_, bool>(0)) {
        None => Err(StoreError::RoomNotFound),
        Some(false) => Err(StoreError::NotMember),
        Some(true) => Ok(()),
    }
}

/// Locks the room's row until the transaction ends. Every change to a room's members or
/// messages takes this lock first, so statements run after it see all earlier ones committed.
pub(super) async fn lock_room<C: GenericClient>(tx: &C, room: i64) -> StoreResult<()> {
    query_opt(tx, "SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", &[&room])
        .await?
        .map(|_| ())
        .ok_or(StoreError::RoomNotFound)
}

/// Queues `event`; the outbox trigger notifies every node's listener at commit.
pub(super) async fn enqueue<C: GenericClient>(
    tx: &C,
    event: &RoomEvent,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let mut event = event.stamped();
    if event.is_logged() {
        // Locks the room's row until commit: the next transaction of the room waits for
        // this one, so positions follow commit order whichever node writes.
        let seq: i64 = query_one(
            tx,
            "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
            &[&event.chat_id],
        )
        .await?
        .get(0);
        event.to_mut().seq = Some(seq);
    }
    let body =
        serde_json::to_string(&event).map_err(|e| StoreError::backend("encoding an event", e))?;
    if let Some(seq) = event.seq {
        let message = event.id.filter(|_| event.is_about_message());
        execute(
            tx,
            "INSERT INTO room_events (room_id, seq, message_id, event, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[&event.chat_id, &seq, &message, &body, &at],
        )
        .await?;
    }
    execute(
        tx,
        "INSERT INTO outbox (event, created_at) VALUES ($1, $2)",
        &[&body, &at],
    )
    .await?;
    Ok(())
}

pub(super) const MESSAGE_SELECT: &str =
    "SELECT m.id, m.room_id, m.sender_id, u.username, m.content, m.created_at,
            a.file_name, a.content_type, a.size, a.original_name, m.edited_at, m.deleted_at,
            r.id, r.sender_id, r.content, r.deleted_at
     FROM messages m JOIN users u ON u.id = m.sender_id
     LEFT JOIN attachments a ON a.message_id = m.id
     LEFT JOIN messages r ON r.id = m.reply_to";

pub(super) fn message_from_row(row: &Row) -> Message {
    let attachment = row.get::<_, Option<String>>(6).map(|file_name| Attachment {
        file_name,
        content_type: row.get(7),
        size: row.get::<_, i64>(8) as u64,
        original_name: row.get(9),
    });
    Message {
        id: row.get(0),
        room_id: row.get(1),
        sender_id: row.get(2),
        sender_username: row.get(3),
        content: row.get(4),
        created_at: timestamp(row, 5),
        attachment,
        edited_at: row
            .get::<_, Option<DateTime<Utc>>>(10)
            .map(format_timestamp),
        deleted: row.get::<_, Option<DateTime<Utc>>>(11).is_some(),
        reply_to: row.get::<_, Option<i64>>(12).map(|id| {
            let deleted = row.get::<_, Option<DateTime<Utc>>>(15).is_some();
            ReplyRef::new(id, row.get(13), row.get(14), deleted)
        }),
    }
}

/// What a reply to message `id` of `room` shows of it; `BadReply` unless the message is in
/// the room and not deleted.
pub(super) async fn answered<C: GenericClient>(
    db: &C,
    room: i64,
    id: i64,
) -> StoreResult<ReplyRef> {
    let row = query_opt(
        db,
        "SELECT sender_id, content FROM messages
         WHERE id = $1 AND room_id = $2 AND deleted_at IS NULL",
        &[&id, &room],
    )
    .await?
    .ok_or(StoreError::BadReply)?;
    Ok(ReplyRef::new(id, row.get(0), row.get(1), false))
}
