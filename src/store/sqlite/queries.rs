//! The [`Store`] queries on SQLite, run on the engine's writer thread or its readers.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};
use tokio::sync::Notify;

use super::engine::database_dir;
use super::events::enqueue;
use super::lease::{lease_path, FileLease};
use super::rows::check_reply;
pub(super) use super::rows::{message_from_row, MESSAGE_SELECT};
use super::SqliteStore;
use crate::domain::conversations::RoomKind;
use crate::domain::events::RoomEvent;
use crate::store::TokenStanding;
use crate::store::{
    now_timestamp, Attachment, AttachmentOwner, Member, Message, NewUser, OutboxDepth, OutboxEntry,
    Page, RelayLease, Room, Store, StoreError, StoreResult, User,
};

pub(super) const USER_COLUMNS: &str =
    "id, email, username, phone_number, first_name, last_name, created_at, updated_at, show_last_seen";

pub(super) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        username: row.get(2)?,
        phone_number: row.get(3)?,
        first_name: row.get(4)?,
        last_name: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
        show_last_seen: row.get(8)?,
    })
}

fn is_constraint(err: &rusqlite::Error, needle: &str) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, Some(msg))
        if e.code == ErrorCode::ConstraintViolation && msg.contains(needle))
}

pub(super) fn load_room(conn: &Connection, room: i64) -> StoreResult<Option<Room>> {
    let head = conn
        .prepare_cached(
            "SELECT id, name, admin_id, created_at, updated_at, kind FROM rooms WHERE id = ?1",
        )?
        .query_row([room], |row| {
            Ok(Room {
                id: row.get(0)?,
                name: row.get(1)?,
                admin: row.get(2)?,
                kind: RoomKind::from_stored(&row.get::<_, String>(5)?),
                members: Vec::new(),
                member_count: 0,
                created_at: row.get(3)?,
                updated_at: row.get(4)?,
            })
        })
        .optional()?;
    let Some(mut room) = head else {
        return Ok(None);
    };
    let mut members = conn.prepare_cached(
        "SELECT u.id, u.username, u.first_name, u.last_name FROM room_members m
         JOIN users u ON u.id = m.user_id WHERE m.room_id = ?1 ORDER BY m.joined_at, u.id",
    )?;
    room.members = members
        .query_map([room.id], member_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    room.member_count = room.members.len() as i64;
    Ok(Some(room))
}

pub(super) fn member_from_row(row: &Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        id: row.get(0)?,
        username: row.get(1)?,
        first_name: row.get(2)?,
        last_name: row.get(3)?,
    })
}

pub(super) fn check_member(conn: &Connection, room: i64, user: i64) -> StoreResult<()> {
    let state: Option<bool> = conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM room_members WHERE room_id = r.id AND user_id = ?2)
             FROM rooms r WHERE r.id = ?1",
        )?
        .query_row(params![room, user], |row| row.get(0))
        .optional()?;
    match state {
        None => Err(StoreError::RoomNotFound),
        Some(false) => Err(StoreError::NotMember),
        Some(true) => Ok(()),
    }
}

/// Now in microseconds since the epoch: a room's activity.
pub(super) fn activity_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub(super) fn is_direct(conn: &Connection, room: i64) -> StoreResult<bool> {
    let kind: Option<String> = conn
        .prepare_cached("SELECT kind FROM rooms WHERE id = ?1")?
        .query_row([room], |row| row.get(0))
        .optional()?;
    Ok(kind.is_some_and(|kind| RoomKind::from_stored(&kind) == RoomKind::Direct))
}

/// Whether `sender` and the other member of direct room `room` blocked one another.
pub(super) fn blocked_in_direct(conn: &Connection, room: i64, sender: i64) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM room_members m JOIN blocks b
                 ON (b.blocker_id = ?2 AND b.blocked_id = m.user_id)
                 OR (b.blocker_id = m.user_id AND b.blocked_id = ?2)
             WHERE m.room_id = ?1 AND m.user_id != ?2)",
        )?
        .query_row(params![room, sender], |row| row.get(0))?)
}

fn username(conn: &Connection, user: i64) -> StoreResult<String> {
    Ok(
        conn.query_row("SELECT username FROM users WHERE id = ?1", [user], |row| {
            row.get(0)
        })?,
    )
}

fn touch_room(conn: &Connection, room: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE rooms SET updated_at = ?2 WHERE id = ?1",
        params![room, now_timestamp()],
    )?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        self.write(move |conn| {
            let now = now_timestamp();
            let inserted = conn.execute(
                "INSERT INTO users (email, username, phone_number, first_name, last_name,
                                    password_hash, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    user.email.as_str(),
                    user.username,
                    user.phone_number.as_str(),
                    user.first_name,
                    user.last_name,
                    user.password_hash,
                    now
                ],
            );
            match inserted {
                Err(e) if is_constraint(&e, "users.email") => return Err(StoreError::EmailTaken),
                other => other?,
            };
            let id = conn.last_insert_rowid();
            Ok(conn.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id],
                user_from_row,
            )?)
        })
        .await
    }

    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        let email = email.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = ?1"),
                    [email],
                    |row| Ok((user_from_row(row)?, row.get(9)?)),
                )
                .optional()?)
        })
        .await
    }

    async fn user(&self, id: i64) -> StoreResult<Option<User>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row([id], user_from_row)
                .optional()?)
        })
        .await
    }

    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        let jti = jti.to_string();
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM revoked_tokens WHERE expires_at < ?1",
                [chrono::Utc::now().timestamp()],
            )?;
            conn.execute(
                "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)",
                params![jti, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        let jti = jti.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM revoked_tokens WHERE jti = ?1)")?
                .query_row([jti], |row| row.get(0))?)
        })
        .await
    }

    async fn token_user(
        &self,
        id: i64,
        jti: &str,
        issued_at: i64,
    ) -> StoreResult<Option<(User, TokenStanding)>> {
        let jti = jti.to_string();
        let at = USER_COLUMNS.split(',').count();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS}, \
                     EXISTS(SELECT 1 FROM revoked_tokens WHERE jti = ?2), \
                     disabled_at IS NOT NULL, tokens_revoked_at FROM users WHERE id = ?1"
                ))?
                .query_row(params![id, jti], |row| {
                    let standing = TokenStanding::of(
                        row.get(at)?,
                        row.get(at + 1)?,
                        row.get(at + 2)?,
                        issued_at,
                    );
                    Ok((user_from_row(row)?, standing))
                })
                .optional()?)
        })
        .await
    }

    async fn create_room(
        &self,
        name: &str,
        admin: i64,
        members: &[i64],
        cap: usize,
    ) -> StoreResult<Room> {
        let name = name.to_string();
        let mut ids = vec![admin];
        for id in members {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        self.write(move |conn| {
            if ids.len() > cap {
                return Err(StoreError::RoomFull);
            }
            let mut exists = conn.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?;
            let mut unknown = Vec::new();
            for id in &ids {
                if !exists.exists([id])? {
                    unknown.push(*id);
                }
            }
            if !unknown.is_empty() {
                return Err(StoreError::UnknownUsers(unknown));
            }
            let mut blocked_by = conn
                .prepare_cached("SELECT 1 FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2")?;
            for id in &ids {
                if blocked_by.exists(params![id, admin])? {
                    return Err(StoreError::Blocked);
                }
            }
            let now = now_timestamp();
            conn.execute(
                "INSERT INTO rooms (name, admin_id, created_at, updated_at, activity)
                 VALUES (?1, ?2, ?3, ?3, ?4)",
                params![name, admin, now, activity_now()],
            )?;
            let room = conn.last_insert_rowid();
            let mut add = conn.prepare_cached(
                "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
            )?;
            for id in &ids {
                add.execute(params![room, id, now])?;
            }
            load_room(conn, room)?.ok_or(StoreError::RoomNotFound)
        })
        .await
    }

    async fn rooms_of(&self, user: i64) -> StoreResult<Vec<Room>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT room_id FROM room_members WHERE user_id = ?1 ORDER BY room_id",
            )?;
            let ids = stmt
                .query_map([user], |row| row.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut rooms = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(room) = load_room(conn, id)? {
                    rooms.push(room);
                }
            }
            Ok(rooms)
        })
        .await
    }

    async fn room(&self, room: i64) -> StoreResult<Option<Room>> {
        self.read(move |conn| load_room(conn, room)).await
    }

    async fn check_member(&self, room: i64, user: i64) -> StoreResult<()> {
        self.read(move |conn| check_member(conn, room, user)).await
    }

    async fn join_room(&self, room: i64, user: i64, cap: usize) -> StoreResult<Room> {
        let joined = self
            .write(move |conn| {
                if is_direct(conn, room)? {
                    return Err(StoreError::DirectRoom);
                }
                match check_member(conn, room, user) {
                    Ok(()) => return Err(StoreError::AlreadyMember),
                    Err(StoreError::NotMember) => {}
                    Err(e) => return Err(e),
                }
                let count: i64 = conn.query_row(
                    "SELECT COUNT(*) FROM room_members WHERE room_id = ?1",
                    [room],
                    |row| row.get(0),
                )?;
                if count as usize >= cap {
                    return Err(StoreError::RoomFull);
                }
                let now = now_timestamp();
                conn.execute(
                    "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
                    params![room, user, now],
                )?;
                touch_room(conn, room)?;
                enqueue(
                    conn,
                    &RoomEvent::joined(room, user, &username(conn, user)?, &now),
                )?;
                load_room(conn, room)?.ok_or(StoreError::RoomNotFound)
            })
            .await?;
        self.outbox.notify_one();
        Ok(joined)
    }

    async fn leave_room(&self, room: i64, user: i64) -> StoreResult<Room> {
        let left = self
            .write(move |conn| {
                check_member(conn, room, user)?;
                if is_direct(conn, room)? {
                    return Err(StoreError::DirectRoom);
                }
                conn.execute(
                    "DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2",
                    params![room, user],
                )?;
                touch_room(conn, room)?;
                let now = now_timestamp();
                enqueue(
                    conn,
                    &RoomEvent::left(room, user, &username(conn, user)?, &now),
                )?;
                load_room(conn, room)?.ok_or(StoreError::RoomNotFound)
            })
            .await?;
        self.outbox.notify_one();
        Ok(left)
    }

    async fn post_reply(
        &self,
        room: i64,
        sender: i64,
        content: &str,
        attachment: Option<Attachment>,
        reply_to: Option<i64>,
    ) -> StoreResult<Message> {
        let content = content.to_string();
        let message = self
            .write(move |conn| {
                check_member(conn, room, sender)?;
                let direct = is_direct(conn, room)?;
                if direct && blocked_in_direct(conn, room, sender)? {
                    return Err(StoreError::Blocked);
                }
                if let Some(answered) = reply_to {
                    check_reply(conn, room, answered)?;
                }
                conn.prepare_cached(
                    "INSERT INTO messages (room_id, sender_id, content, created_at, reply_to)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![room, sender, content, now_timestamp(), reply_to])?;
                let id = conn.last_insert_rowid();
                conn.prepare_cached(
                    "UPDATE rooms SET last_message_id = ?2, activity = MAX(activity + 1, ?3)
                     WHERE id = ?1",
                )?
                .execute(params![room, id, activity_now()])?;
                if let Some(file) = &attachment {
                    conn.execute(
                        "INSERT INTO attachments (message_id, file_name, content_type, size, original_name)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, file.file_name, file.content_type, file.size as i64, file.original_name],
                    )?;
                }
                let message = conn
                    .prepare_cached(&format!("{MESSAGE_SELECT} WHERE m.id = ?1"))?
                    .query_row([id], message_from_row)?;
                let kind = if direct {
                    RoomKind::Direct
                } else {
                    RoomKind::Group
                };
                enqueue(conn, &RoomEvent::message_in(&message, kind))?;
                Ok(message)
            })
            .await?;
        self.outbox.notify_one();
        Ok(message)
    }

    async fn messages(&self, room: i64, user: i64, page: Page) -> StoreResult<Vec<Message>> {
        self.read(move |conn| {
            check_member(conn, room, user)?;
            let before = page.before.unwrap_or(i64::MAX);
            let limit = i64::from(page.limit);
            let messages = match page.after {
                Some(after) => conn
                    .prepare_cached(&format!(
                        "{MESSAGE_SELECT} WHERE m.room_id = ?1 AND m.id > ?2 AND m.id < ?3
                         ORDER BY m.id ASC LIMIT ?4"
                    ))?
                    .query_map(params![room, after, before, limit], message_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
                None => {
                    let mut newest = conn
                        .prepare_cached(&format!(
                            "{MESSAGE_SELECT} WHERE m.room_id = ?1 AND m.id < ?2
                             ORDER BY m.id DESC LIMIT ?3"
                        ))?
                        .query_map(params![room, before, limit], message_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    newest.reverse();
                    newest
                }
            };
            Ok(messages)
        })
        .await
    }

    async fn attachment_owner(&self, file_name: &str) -> StoreResult<Option<AttachmentOwner>> {
        let file_name = file_name.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT m.room_id, a.content_type, a.original_name FROM attachments a
                     JOIN messages m ON m.id = a.message_id WHERE a.file_name = ?1",
                    [file_name],
                    |row| {
                        Ok(AttachmentOwner {
                            room_id: row.get(0)?,
                            content_type: row.get(1)?,
                            original_name: row.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn outbox_batch(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT id, event FROM outbox ORDER BY id LIMIT ?1")?;
            let rows = stmt
                .query_map([limit], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(id, body)| {
                    let event = serde_json::from_str(&body).map_err(|e| {
                        StoreError::backend(format!("outbox entry {id} is corrupt"), e)
                    })?;
                    Ok(OutboxEntry { id, event })
                })
                .collect()
        })
        .await
    }

    async fn outbox_delete(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.internal_write(move |conn| {
            let mut delete = conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in ids {
                delete.execute([id])?;
            }
            Ok(())
        })
        .await
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        self.read(|conn| {
            let (rows, oldest_at) = conn
                .prepare_cached("SELECT COUNT(*), MIN(created_at) FROM outbox")?
                .query_row([], |row| Ok((row.get::<_, i64>(0)?, row.get(1)?)))?;
            let rows = u64::try_from(rows).unwrap_or_default();
            Ok(OutboxDepth { rows, oldest_at })
        })
        .await
    }

    fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox.clone()
    }

    fn queue_depth(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    async fn try_relay_lease(&self, key: u32) -> StoreResult<Option<Box<dyn RelayLease>>> {
        let path = lease_path(&self.readers.path, key);
        let lease = tokio::task::spawn_blocking(move || FileLease::try_take(path))
            .await
            .map_err(|e| StoreError::backend("taking the relay lock panicked", e))??;
        Ok(lease.map(|lease| Box::new(lease) as Box<dyn RelayLease>))
    }

    async fn agree_jwt_secret(&self, candidate: &str) -> StoreResult<String> {
        let candidate = candidate.to_string();
        // On the one writer, in one transaction: nodes sharing the file serialise here.
        self.internal_write(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO jwt_secret (id, secret, created_at) VALUES (1, ?1, ?2)",
                params![candidate, now_timestamp()],
            )?;
            Ok(
                conn.query_row("SELECT secret FROM jwt_secret WHERE id = 1", [], |row| {
                    row.get(0)
                })?,
            )
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await?;
        self.write(|_| Ok(())).await?;
        // The round trips above write nothing to disk: a full or read-only disk shows here.
        let dir = database_dir(&self.readers.path);
        tokio::task::spawn_blocking(move || crate::store::probe_writable(&dir))
            .await
            .map_err(|e| StoreError::backend("the disk probe panicked", e))?
    }
}
