//! The [`ConversationStore`] queries on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::events::enqueue;
use super::queries::{
    activity_now, check_member, load_room, member_from_row, message_from_row, user_from_row,
    MESSAGE_SELECT, USER_COLUMNS,
};
use super::SqliteStore;
use crate::domain::conversations::{
    direct_key, ListPage, MemberPage, MessageReceipt, Position, ReceiptKind, ReceiptMark, RoomKind,
    RoomPositions, RoomSummary, UserLookup, INLINE_MEMBERS,
};
use crate::domain::events::RoomEvent;
use crate::store::{now_timestamp, ConversationStore, Member, Room, StoreError, StoreResult, User};

fn user_by_id(conn: &Connection, id: i64) -> StoreResult<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], user_from_row)
        .optional()?)
}

fn blocked_either_way(conn: &Connection, a: i64, b: i64) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM blocks WHERE (blocker_id = ?1 AND blocked_id = ?2)
                                                OR (blocker_id = ?2 AND blocked_id = ?1))",
        )?
        .query_row(params![a, b], |row| row.get(0))?)
}

fn direct_room(conn: &Connection, caller: i64, peer: i64) -> StoreResult<(Room, bool)> {
    if user_by_id(conn, peer)?.is_none() {
        return Err(StoreError::UserNotFound);
    }
    if blocked_either_way(conn, caller, peer)? {
        return Err(StoreError::Blocked);
    }
    let key = direct_key(caller, peer);
    let existing: Option<i64> = conn
        .prepare_cached("SELECT id FROM rooms WHERE direct_key = ?1")?
        .query_row([&key], |row| row.get(0))
        .optional()?;
    if let Some(room) = existing {
        return Ok((
            load_room(conn, room)?.ok_or(StoreError::RoomNotFound)?,
            false,
        ));
    }
    let now = now_timestamp();
    conn.execute(
        "INSERT INTO rooms (name, admin_id, created_at, updated_at, kind, direct_key, activity)
         VALUES ('', ?1, ?2, ?2, 'direct', ?3, ?4)",
        params![caller, now, key, activity_now()],
    )?;
    let room = conn.last_insert_rowid();
    let mut add = conn.prepare_cached(
        "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
    )?;
    add.execute(params![room, caller, now])?;
    add.execute(params![room, peer, now])?;
    Ok((
        load_room(conn, room)?.ok_or(StoreError::RoomNotFound)?,
        true,
    ))
}

const LIST_SELECT: &str = "
    SELECT r.id, r.name, r.admin_id, r.created_at, r.updated_at, r.kind, r.activity,
           m.read_upto,
           (SELECT COUNT(*) FROM room_members c WHERE c.room_id = r.id),
           (SELECT COUNT(*) FROM messages x
            WHERE x.room_id = r.id AND x.id > m.read_upto AND x.sender_id != ?1),
           r.last_message_id
    FROM room_members m JOIN rooms r ON r.id = m.room_id
    WHERE m.user_id = ?1 AND (r.activity < ?2 OR (r.activity = ?2 AND r.id < ?3))
    ORDER BY r.activity DESC, r.id DESC LIMIT ?4";

fn chat_list(conn: &Connection, user: i64, page: ListPage) -> StoreResult<Vec<RoomSummary>> {
    let (activity, after_room) = page
        .after
        .map_or((i64::MAX, i64::MAX), |c| (c.activity, c.room));
    let mut rows: Vec<(RoomSummary, Option<i64>)> = conn
        .prepare_cached(LIST_SELECT)?
        .query_map(
            params![user, activity, after_room, i64::from(page.limit)],
            |row| {
                let room = Room {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    admin: row.get(2)?,
                    kind: RoomKind::from_stored(&row.get::<_, String>(5)?),
                    members: Vec::new(),
                    member_count: row.get(8)?,
                    created_at: row.get(3)?,
                    updated_at: row.get(4)?,
                };
                let summary = RoomSummary {
                    room,
                    last_message: None,
                    unread_count: row.get(9)?,
                    last_read_id: row.get(7)?,
                    activity: row.get(6)?,
                };
                Ok((summary, row.get(10)?))
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Integers only, so the lists are safe to inline; one query each for the whole page.
    let join = |ids: &mut dyn Iterator<Item = i64>| {
        ids.map(|id| id.to_string()).collect::<Vec<_>>().join(",")
    };
    let room_ids = join(&mut rows.iter().map(|(s, _)| s.room.id));
    let mut members = conn.prepare(&format!(
        "SELECT room_id, id, username, first_name, last_name FROM (
             SELECT m.room_id, u.id, u.username, u.first_name, u.last_name,
                    ROW_NUMBER() OVER (PARTITION BY m.room_id ORDER BY m.joined_at, u.id) AS n
             FROM room_members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id IN ({room_ids}))
         WHERE n <= {INLINE_MEMBERS} ORDER BY room_id, n"
    ))?;
    let members = members
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                Member {
                    id: row.get(1)?,
                    username: row.get(2)?,
                    first_name: row.get(3)?,
                    last_name: row.get(4)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (room, member) in members {
        if let Some((summary, _)) = rows.iter_mut().find(|(s, _)| s.room.id == room) {
            summary.room.members.push(member);
        }
    }
    let message_ids = join(&mut rows.iter().filter_map(|(_, last)| *last));
    if !message_ids.is_empty() {
        let mut last = conn.prepare(&format!("{MESSAGE_SELECT} WHERE m.id IN ({message_ids})"))?;
        let messages = last
            .query_map([], message_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for message in messages {
            if let Some((summary, _)) = rows.iter_mut().find(|(s, _)| s.room.id == message.room_id)
            {
                summary.last_message = Some(message);
            }
        }
    }
    Ok(rows.into_iter().map(|(summary, _)| summary).collect())
}

/// Applies one mark; returns the position after it (0: not a member).
fn apply_receipt(conn: &Connection, mark: &ReceiptMark) -> StoreResult<i64> {
    let current: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT delivered_upto, read_upto FROM room_members WHERE room_id = ?1 AND user_id = ?2",
        )?
        .query_row(params![mark.room, mark.user], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((delivered, read)) = current else {
        return Ok(0);
    };
    let now = now_timestamp();
    let mut log = conn.prepare_cached(
        "INSERT OR IGNORE INTO receipt_moves (room_id, user_id, kind, upto, at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let moves_delivered = mark.upto > delivered;
    if moves_delivered {
        conn.prepare_cached(
            "UPDATE room_members SET delivered_upto = ?3 WHERE room_id = ?1 AND user_id = ?2",
        )?
        .execute(params![mark.room, mark.user, mark.upto])?;
        log.execute(params![mark.room, mark.user, "delivered", mark.upto, now])?;
    }
    let position = match mark.kind {
        ReceiptKind::Read if mark.upto > read => {
            conn.prepare_cached(
                "UPDATE room_members SET read_upto = ?3 WHERE room_id = ?1 AND user_id = ?2",
            )?
            .execute(params![mark.room, mark.user, mark.upto])?;
            log.execute(params![mark.room, mark.user, "read", mark.upto, now])?;
            enqueue(
                conn,
                &RoomEvent::receipt(mark.room, mark.user, ReceiptKind::Read, mark.upto, &now),
            )?;
            return Ok(mark.upto);
        }
        ReceiptKind::Read => read,
        ReceiptKind::Delivered => delivered.max(mark.upto),
    };
    if moves_delivered {
        let event = RoomEvent::receipt(
            mark.room,
            mark.user,
            ReceiptKind::Delivered,
            mark.upto,
            &now,
        );
        enqueue(conn, &event)?;
    }
    Ok(position)
}

fn positions(conn: &Connection, room: i64) -> StoreResult<RoomPositions> {
    let kind: String = conn
        .prepare_cached("SELECT kind FROM rooms WHERE id = ?1")?
        .query_row([room], |row| row.get(0))
        .optional()?
        .ok_or(StoreError::RoomNotFound)?;
    let positions = conn
        .prepare_cached(
            "SELECT user_id, delivered_upto, read_upto FROM room_members WHERE room_id = ?1
             ORDER BY user_id",
        )?
        .query_map([room], |row| {
            Ok(Position {
                user_id: row.get(0)?,
                delivered_upto: row.get(1)?,
                read_upto: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(RoomPositions {
        kind: RoomKind::from_stored(&kind),
        positions,
    })
}

fn message_receipts(
    conn: &Connection,
    room: i64,
    message: i64,
) -> StoreResult<Vec<MessageReceipt>> {
    let sender: i64 = conn
        .prepare_cached("SELECT sender_id FROM messages WHERE id = ?1 AND room_id = ?2")?
        .query_row(params![message, room], |row| row.get(0))
        .optional()?
        .ok_or(StoreError::MessageNotFound)?;
    // The first move of each kind past the message: positions only grow, so its time is
    // when the message was delivered or read.
    let first_move = "SELECT at FROM receipt_moves WHERE room_id = ?1 AND user_id = m.user_id
                      AND kind = ?4 AND upto >= ?2 ORDER BY upto LIMIT 1";
    Ok(conn
        .prepare_cached(&format!(
            "SELECT m.user_id, u.username, ({first_move}), ({})
             FROM room_members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = ?1 AND m.user_id != ?3 ORDER BY m.user_id",
            first_move.replace("?4", "?5")
        ))?
        .query_map(params![room, message, sender, "delivered", "read"], |row| {
            Ok(MessageReceipt {
                user_id: row.get(0)?,
                username: row.get(1)?,
                delivered_at: row.get(2)?,
                read_at: row.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn find_user(&self, lookup: UserLookup) -> StoreResult<Option<User>> {
        self.read(move |conn| {
            let (column, value) = match lookup {
                UserLookup::Email(email) => ("email", email),
                UserLookup::Phone(phone) => ("phone_number", phone),
            };
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE {column} = ?1 ORDER BY id LIMIT 1"
                ))?
                .query_row([value], user_from_row)
                .optional()?)
        })
        .await
    }

    async fn direct_room(&self, caller: i64, peer: i64) -> StoreResult<(Room, bool)> {
        self.write(move |conn| direct_room(conn, caller, peer))
            .await
    }

    async fn set_block(&self, blocker: i64, blocked: i64, on: bool) -> StoreResult<User> {
        self.write(move |conn| {
            let user = user_by_id(conn, blocked)?.ok_or(StoreError::UserNotFound)?;
            if on {
                conn.execute(
                    "INSERT OR IGNORE INTO blocks (blocker_id, blocked_id, created_at)
                     VALUES (?1, ?2, ?3)",
                    params![blocker, blocked, now_timestamp()],
                )?;
            } else {
                conn.execute(
                    "DELETE FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2",
                    params![blocker, blocked],
                )?;
            }
            Ok(user)
        })
        .await
    }

    async fn blocked_users(&self, blocker: i64) -> StoreResult<Vec<User>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id IN
                     (SELECT blocked_id FROM blocks WHERE blocker_id = ?1) ORDER BY id"
                ))?
                .query_map([blocker], user_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn chat_list(&self, user: i64, page: ListPage) -> StoreResult<Vec<RoomSummary>> {
        self.read(move |conn| chat_list(conn, user, page)).await
    }

    async fn room_members(
        &self,
        room: i64,
        user: i64,
        page: MemberPage,
    ) -> StoreResult<Vec<Member>> {
        self.read(move |conn| {
            check_member(conn, room, user)?;
            Ok(conn
                .prepare_cached(
                    "SELECT u.id, u.username, u.first_name, u.last_name FROM room_members m
                     JOIN users u ON u.id = m.user_id WHERE m.room_id = ?1 AND u.id > ?2
                     ORDER BY u.id LIMIT ?3",
                )?
                .query_map(
                    params![room, page.after.unwrap_or(i64::MIN), i64::from(page.limit)],
                    member_from_row,
                )?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn newest_message_id(&self, room: i64, user: i64) -> StoreResult<i64> {
        self.read(move |conn| {
            check_member(conn, room, user)?;
            Ok(conn
                .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM messages WHERE room_id = ?1")?
                .query_row([room], |row| row.get(0))?)
        })
        .await
    }

    async fn apply_receipts(&self, marks: Vec<ReceiptMark>) -> StoreResult<Vec<i64>> {
        let moved = self
            .internal_write(move |conn| marks.iter().map(|m| apply_receipt(conn, m)).collect())
            .await?;
        self.outbox.notify_one();
        Ok(moved)
    }

    async fn unread_count(&self, room: i64, user: i64) -> StoreResult<i64> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM messages x JOIN room_members m
                         ON m.room_id = x.room_id AND m.user_id = ?2
                     WHERE x.room_id = ?1 AND x.id > m.read_upto AND x.sender_id != ?2",
                )?
                .query_row(params![room, user], |row| row.get(0))?)
        })
        .await
    }

    async fn positions(&self, room: i64) -> StoreResult<RoomPositions> {
        self.read(move |conn| positions(conn, room)).await
    }

    async fn message_receipts(
        &self,
        room: i64,
        user: i64,
        message: i64,
    ) -> StoreResult<Vec<MessageReceipt>> {
        self.read(move |conn| {
            check_member(conn, room, user)?;
            message_receipts(conn, room, message)
        })
        .await
    }
}
