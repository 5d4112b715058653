//! The [`ConversationStore`] queries on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::rows::{
    check_member, enqueue, execute, load_room, lock_room, message_from_row, query, query_one,
    query_opt, timestamp, user_from_row, MESSAGE_SELECT, USER_COLUMNS,
};
use super::PostgresStore;
use crate::domain::conversations::{
    direct_key, ListPage, MemberPage, MessageReceipt, Position, ReceiptKind, ReceiptMark, RoomKind,
    RoomPositions, RoomSummary, UserLookup, INLINE_MEMBERS,
};
use crate::domain::events::RoomEvent;
use crate::store::{
    format_timestamp, ConversationStore, Member, Room, StoreError, StoreResult, User,
};

pub(super) async fn is_direct<C: GenericClient>(db: &C, room: i64) -> StoreResult<bool> {
    let kind = query_opt(db, "SELECT kind FROM rooms WHERE id = $1", &[&room]).await?;
    Ok(kind.is_some_and(|row| RoomKind::from_stored(row.get(0)) == RoomKind::Direct))
}

/// Whether `sender` and the other member of direct room `room` blocked one another.
pub(super) async fn blocked_in_direct<C: GenericClient>(
    db: &C,
    room: i64,
    sender: i64,
) -> StoreResult<bool> {
    let row = query_one(
        db,
        "SELECT EXISTS(SELECT 1 FROM room_members m JOIN blocks b
             ON (b.blocker_id = $2 AND b.blocked_id = m.user_id)
             OR (b.blocker_id = m.user_id AND b.blocked_id = $2)
         WHERE m.room_id = $1 AND m.user_id <> $2)",
        &[&room, &sender],
    )
    .await?;
    Ok(row.get(0))
}

async fn user_by_id<C: GenericClient>(db: &C, id: i64) -> StoreResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    Ok(query_opt(db, &sql, &[&id])
        .await?
        .as_ref()
        .map(user_from_row))
}

fn member_from_row(row: &Row, at: usize) -> Member {
    Member {
        id: row.get(at),
        username: row.get(at + 1),
        first_name: row.get(at + 2),
        last_name: row.get(at + 3),
    }
}

const LIST_SELECT: &str = "
    SELECT r.id, r.name, r.admin_id, r.created_at, r.updated_at, r.kind, r.activity,
           m.read_upto,
           (SELECT COUNT(*) FROM room_members c WHERE c.room_id = r.id),
           (SELECT COUNT(*) FROM messages x
            WHERE x.room_id = r.id AND x.id > m.read_upto AND x.sender_id <> $1),
           r.last_message_id
    FROM room_members m JOIN rooms r ON r.id = m.room_id
    WHERE m.user_id = $1 AND (r.activity, r.id) < ($2, $3)
    ORDER BY r.activity DESC, r.id DESC LIMIT $4";

async fn chat_list<C: GenericClient>(
    db: &C,
    user: i64,
    page: ListPage,
) -> StoreResult<Vec<RoomSummary>> {
    let (activity, after_room) = page
        .after
        .map_or((i64::MAX, i64::MAX), |c| (c.activity, c.room));
    let limit = i64::from(page.limit);
    let rows = query(db, LIST_SELECT, &[&user, &activity, &after_room, &limit]).await?;
    let mut list: Vec<(RoomSummary, Option<i64>)> = rows
        .iter()
        .map(|row| {
            let room = Room {
                id: row.get(0),
                name: row.get(1),
                admin: row.get(2),
                kind: RoomKind::from_stored(row.get(5)),
                members: Vec::new(),
                member_count: row.get(8),
                created_at: timestamp(row, 3),
                updated_at: timestamp(row, 4),
            };
            let summary = RoomSummary {
                room,
                last_message: None,
                unread_count: row.get(9),
                last_read_id: row.get(7),
                activity: row.get(6),
            };
            (summary, row.get(10))
        })
        .collect();
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let room_ids: Vec<i64> = list.iter().map(|(s, _)| s.room.id).collect();
    let inline = INLINE_MEMBERS as i64;
    let members = query(
        db,
        "SELECT room_id, id, username, first_name, last_name FROM (
             SELECT m.room_id, u.id, u.username, u.first_name, u.last_name,
                    ROW_NUMBER() OVER (PARTITION BY m.room_id ORDER BY m.joined_at, u.id) AS n
             FROM room_members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = ANY($1)) AS ranked
         WHERE n <= $2 ORDER BY room_id, n",
        &[&room_ids, &inline],
    )
    .await?;
    for row in &members {
        let room: i64 = row.get(0);
        if let Some((summary, _)) = list.iter_mut().find(|(s, _)| s.room.id == room) {
            summary.room.members.push(member_from_row(row, 1));
        }
    }
    let message_ids: Vec<i64> = list.iter().filter_map(|(_, last)| *last).collect();
    if !message_ids.is_empty() {
        let sql = format!("{MESSAGE_SELECT} WHERE m.id = ANY($1)");
        for row in query(db, &sql, &[&message_ids]).await? {
            let message = message_from_row(&row);
            if let Some((summary, _)) = list.iter_mut().find(|(s, _)| s.room.id == message.room_id)
            {
                summary.last_message = Some(message);
            }
        }
    }
    Ok(list.into_iter().map(|(summary, _)| summary).collect())
}

/// Applies one mark; returns the position after it (0: not a member).
async fn apply_receipt<C: GenericClient>(tx: &C, mark: &ReceiptMark) -> StoreResult<i64> {
    let current = query_opt(
        tx,
        "SELECT delivered_upto, read_upto FROM room_members
         WHERE room_id = $1 AND user_id = $2 FOR UPDATE",
        &[&mark.room, &mark.user],
    )
    .await?;
    let Some(current) = current else {
        return Ok(0);
    };
    let (delivered, read): (i64, i64) = (current.get(0), current.get(1));
    let at: DateTime<Utc> = Utc::now();
    let log = "INSERT INTO receipt_moves (room_id, user_id, kind, upto, at)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
    let moves_delivered = mark.upto > delivered;
    if moves_delivered {
        execute(
            tx,
            "UPDATE room_members SET delivered_upto = $3 WHERE room_id = $1 AND user_id = $2",
            &[&mark.room, &mark.user, &mark.upto],
        )
        .await?;
        execute(
            tx,
            log,
            &[&mark.room, &mark.user, &"delivered", &mark.upto, &at],
        )
        .await?;
    }
    let moved = match mark.kind {
        ReceiptKind::Read if mark.upto > read => {
            execute(
                tx,
                "UPDATE room_members SET read_upto = $3 WHERE room_id = $1 AND user_id = $2",
                &[&mark.room, &mark.user, &mark.upto],
            )
            .await?;
            execute(tx, log, &[&mark.room, &mark.user, &"read", &mark.upto, &at]).await?;
            Some(ReceiptKind::Read)
        }
        ReceiptKind::Read => return Ok(read),
        ReceiptKind::Delivered => moves_delivered.then_some(ReceiptKind::Delivered),
    };
    if let Some(kind) = moved {
        let event =
            RoomEvent::receipt(mark.room, mark.user, kind, mark.upto, &format_timestamp(at));
        enqueue(tx, &event, at).await?;
    }
    Ok(match mark.kind {
        ReceiptKind::Read => mark.upto,
        ReceiptKind::Delivered => delivered.max(mark.upto),
    })
}

#[async_trait]
impl ConversationStore for PostgresStore {
    async fn find_user(&self, lookup: UserLookup) -> StoreResult<Option<User>> {
        let db = self.pool.get().await?;
        let (condition, value) = match lookup {
            UserLookup::Email(email) => ("lower(email) = lower($1)", email),
            UserLookup::Phone(phone) => ("phone_number = $1", phone),
        };
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {condition} ORDER BY id LIMIT 1");
        Ok(query_opt(&db, &sql, &[&value])
            .await?
            .as_ref()
            .map(user_from_row))
    }

    async fn direct_room(&self, caller: i64, peer: i64) -> StoreResult<(Room, bool)> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        if user_by_id(&tx, peer).await?.is_none() {
            return Err(StoreError::UserNotFound);
        }
        let blocked = query_one(
            &tx,
            "SELECT EXISTS(SELECT 1 FROM blocks WHERE (blocker_id = $1 AND blocked_id = $2)
                                                OR (blocker_id = $2 AND blocked_id = $1))",
            &[&caller, &peer],
        )
        .await?;
        if blocked.get::<_, bool>(0) {
            return Err(StoreError::Blocked);
        }
        let key = direct_key(caller, peer);
        // A second request for the pair waits here on the first one's row, then finds it.
        let inserted = query_opt(
            &tx,
            "INSERT INTO rooms (name, admin_id, created_at, updated_at, kind, direct_key, activity)
             VALUES ('', $1, now(), now(), 'direct', $2, (extract(epoch FROM now()) * 1000000)::bigint)
             ON CONFLICT (direct_key) WHERE direct_key IS NOT NULL DO NOTHING RETURNING id",
            &[&caller, &key],
        )
        .await?;
        let (room, created) = match inserted {
            Some(row) => {
                let room: i64 = row.get(0);
                execute(
                    &tx,
                    "INSERT INTO room_members (room_id, user_id, joined_at)
                     VALUES ($1, $2, now()), ($1, $3, now())",
                    &[&room, &caller, &peer],
                )
                .await?;
                (room, true)
            }
            None => {
                let row =
                    query_one(&tx, "SELECT id FROM rooms WHERE direct_key = $1", &[&key]).await?;
                (row.get(0), false)
            }
        };
        let loaded = load_room(&tx, room)
            .await?
            .ok_or(StoreError::RoomNotFound)?;
        tx.commit().await?;
        Ok((loaded, created))
    }

    async fn set_block(&self, blocker: i64, blocked: i64, on: bool) -> StoreResult<User> {
        let db = self.pool.get().await?;
        let user = user_by_id(&db, blocked)
            .await?
            .ok_or(StoreError::UserNotFound)?;
        let sql = if on {
            "INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2"
        };
        execute(&db, sql, &[&blocker, &blocked]).await?;
        Ok(user)
    }

    async fn blocked_users(&self, blocker: i64) -> StoreResult<Vec<User>> {
        let db = self.pool.get().await?;
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN
             (SELECT blocked_id FROM blocks WHERE blocker_id = $1) ORDER BY id"
        );
        Ok(query(&db, &sql, &[&blocker])
            .await?
            .iter()
            .map(user_from_row)
            .collect())
    }

    async fn chat_list(&self, user: i64, page: ListPage) -> StoreResult<Vec<RoomSummary>> {
        let db = self.pool.get().await?;
        chat_list(&db, user, page).await
    }

    async fn room_members(
        &self,
        room: i64,
        user: i64,
        page: MemberPage,
    ) -> StoreResult<Vec<Member>> {
        let db = self.pool.get().await?;
        check_member(&db, room, user).await?;
        let rows = query(
            &db,
            "SELECT u.id, u.username, u.first_name, u.last_name FROM room_members m
             JOIN users u ON u.id = m.user_id WHERE m.room_id = $1 AND u.id > $2
             ORDER BY u.id LIMIT $3",
            &[
                &room,
                &page.after.unwrap_or(i64::MIN),
                &i64::from(page.limit),
            ],
        )
        .await?;
        Ok(rows.iter().map(|row| member_from_row(row, 0)).collect())
    }

    async fn newest_message_id(&self, room: i64, user: i64) -> StoreResult<i64> {
        let db = self.pool.get().await?;
        check_member(&db, room, user).await?;
        let sql = "SELECT COALESCE(MAX(id), 0) FROM messages WHERE room_id = $1";
        Ok(query_one(&db, sql, &[&room]).await?.get(0))
    }

    async fn apply_receipts(&self, marks: Vec<ReceiptMark>) -> StoreResult<Vec<i64>> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        let mut positions = Vec::with_capacity(marks.len());
        for mark in &marks {
            // Under the room's lock, like every other change to it: events stay in order.
            if lock_room(&tx, mark.room).await.is_err() {
                positions.push(0);
                continue;
            }
            positions.push(apply_receipt(&tx, mark).await?);
        }
        tx.commit().await?;
        self.outbox.notify_one();
        Ok(positions)
    }

    async fn unread_count(&self, room: i64, user: i64) -> StoreResult<i64> {
        let db = self.pool.get().await?;
        let row = query_one(
            &db,
            "SELECT COUNT(*) FROM messages x JOIN room_members m
                 ON m.room_id = x.room_id AND m.user_id = $2
             WHERE x.room_id = $1 AND x.id > m.read_upto AND x.sender_id <> $2",
            &[&room, &user],
        )
        .await?;
        Ok(row.get(0))
    }

    async fn positions(&self, room: i64) -> StoreResult<RoomPositions> {
        let db = self.pool.get().await?;
        let kind = query_opt(&db, "SELECT kind FROM rooms WHERE id = $1", &[&room])
            .await?
            .ok_or(StoreError::RoomNotFound)?;
        let rows = query(
            &db,
            "SELECT user_id, delivered_upto, read_upto FROM room_members WHERE room_id = $1
             ORDER BY user_id",
            &[&room],
        )
        .await?;
        Ok(RoomPositions {
            kind: RoomKind::from_stored(kind.get(0)),
            positions: rows
                .iter()
                .map(|row| Position {
                    user_id: row.get(0),
                    delivered_upto: row.get(1),
                    read_upto: row.get(2),
                })
                .collect(),
        })
    }

    async fn message_receipts(
        &self,
        room: i64,
        user: i64,
        message: i64,
    ) -> StoreResult<Vec<MessageReceipt>> {
        let db = self.pool.get().await?;
        check_member(&db, room, user).await?;
        let sender: i64 = query_opt(
            &db,
            "SELECT sender_id FROM messages WHERE id = $1 AND room_id = $2",
            &[&message, &room],
        )
        .await?
        .ok_or(StoreError::MessageNotFound)?
        .get(0);
        // The first move of each kind past the message: positions only grow.
        let rows = query(
            &db,
            "SELECT m.user_id, u.username,
                 (SELECT min(at) FROM receipt_moves WHERE room_id = $1 AND user_id = m.user_id
                      AND kind = 'delivered' AND upto >= $2),
                 (SELECT min(at) FROM receipt_moves WHERE room_id = $1 AND user_id = m.user_id
                      AND kind = 'read' AND upto >= $2)
             FROM room_members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = $1 AND m.user_id <> $3 ORDER BY m.user_id",
            &[&room, &message, &sender],
        )
        .await?;
        let at = |row: &Row, i| row.get::<_, Option<DateTime<Utc>>>(i).map(format_timestamp);
        Ok(rows
            .iter()
            .map(|row| MessageReceipt {
                user_id: row.get(0),
                username: row.get(1),
                delivered_at: at(row, 2),
                read_at: at(row, 3),
            })
            .collect())
    }
}
