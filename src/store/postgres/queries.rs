//! The [`Store`] queries on PostgreSQL, run on connections from the engine's pool.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio::sync::Notify;

use super::conversations::{blocked_in_direct, is_direct};
use super::engine::{LockSession, LOCK_ROUND_TRIP, RELAY_LOCK_CLASS};
use super::rows::{
    answered, check_member, enqueue, execute, is_unique_violation, load_room, lock_room,
    message_from_row, query, query_one, query_opt, rooms_from_rows, user_from_row, MESSAGE_SELECT,
    ROOM_SELECT, USER_COLUMNS,
};
use super::PostgresStore;
use crate::domain::conversations::RoomKind;
use crate::domain::events::RoomEvent;
use crate::store::TokenStanding;
use crate::store::{
    format_timestamp, Attachment, AttachmentOwner, Message, NewUser, OutboxDepth, OutboxEntry,
    Page, RelayLease, Room, Store, StoreError, StoreResult, User,
};

impl PostgresStore {
    /// Queues a membership notice, reloads the room and commits; then wakes the local relay.
    async fn commit_membership_change(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        room: i64,
        event: RoomEvent,
        at: DateTime<Utc>,
    ) -> StoreResult<Room> {
        enqueue(&tx, &event, at).await?;
        let updated = load_room(&tx, room)
            .await?
            .ok_or(StoreError::RoomNotFound)?;
        tx.commit().await?;
        self.outbox.notify_one();
        Ok(updated)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        let db = self.pool.get().await?;
        let statement = db
            .prepare_cached(&format!(
                "INSERT INTO users (email, username, phone_number, first_name, last_name,
                                    password_hash, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, now(), now())
                 RETURNING {USER_COLUMNS}"
            ))
            .await?;
        let inserted = db
            .query_one(
                &statement,
                &[
                    &user.email.as_str(),
                    &user.username,
                    &user.phone_number.as_str(),
                    &user.first_name,
                    &user.last_name,
                    &user.password_hash,
                ],
            )
            .await;
        match inserted {
            Ok(row) => Ok(user_from_row(&row)),
            Err(e) if is_unique_violation(&e, "users_email_lower_key") => {
                Err(StoreError::EmailTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        let db = self.pool.get().await?;
        let row = query_opt(
            &db,
            &format!(
                "SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
            ),
            &[&email],
        )
        .await?;
        Ok(row.map(|row| (user_from_row(&row), row.get(9))))
    }

    async fn user(&self, id: i64) -> StoreResult<Option<User>> {
        let db = self.pool.get().await?;
        let row = query_opt(
            &db,
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
            &[&id],
        )
        .await?;
        Ok(row.as_ref().map(user_from_row))
    }

    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        let db = self.pool.get().await?;
        execute(
            &db,
            "DELETE FROM revoked_tokens WHERE expires_at < $1",
            &[&Utc::now().timestamp()],
        )
        .await?;
        execute(
            &db,
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)
             ON CONFLICT (jti) DO NOTHING",
            &[&jti, &expires_at],
        )
        .await?;
        Ok(())
    }

    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        let db = self.pool.get().await?;
        let row = query_one(
            &db,
            "SELECT EXISTS(SELECT 1 FROM revoked_tokens WHERE jti = $1)",
            &[&jti],
        )
        .await?;
        Ok(row.get(0))
    }

    async fn token_user(
        &self,
        id: i64,
        jti: &str,
        issued_at: i64,
    ) -> StoreResult<Option<(User, TokenStanding)>> {
        let db = self.pool.get().await?;
        let row = query_opt(
            &db,
            &format!(
                "SELECT {USER_COLUMNS}, \
                 EXISTS(SELECT 1 FROM revoked_tokens WHERE jti = $2), \
                 disabled_at IS NOT NULL, tokens_revoked_at FROM users WHERE id = $1"
            ),
            &[&id, &jti],
        )
        .await?;
        let at = USER_COLUMNS.split(',').count();
        Ok(row.map(|row| {
            let standing =
                TokenStanding::of(row.get(at), row.get(at + 1), row.get(at + 2), issued_at);
            (user_from_row(&row), standing)
        }))
    }

    async fn create_room(
        &self,
        name: &str,
        admin: i64,
        members: &[i64],
        cap: usize,
    ) -> StoreResult<Room> {
        let mut ids = vec![admin];
        for id in members {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        if ids.len() > cap {
            return Err(StoreError::RoomFull);
        }
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        let known: Vec<i64> = query(&tx, "SELECT id FROM users WHERE id = ANY($1)", &[&ids])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let unknown: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !known.contains(id))
            .collect();
        if !unknown.is_empty() {
            return Err(StoreError::UnknownUsers(unknown));
        }
        let blocked_by =
            "SELECT EXISTS(SELECT 1 FROM blocks WHERE blocker_id = ANY($1) AND blocked_id = $2)";
        if query_one(&tx, blocked_by, &[&ids, &admin])
            .await?
            .get::<_, bool>(0)
        {
            return Err(StoreError::Blocked);
        }
        let room: i64 = query_one(
            &tx,
            "INSERT INTO rooms (name, admin_id, created_at, updated_at, activity)
             VALUES ($1, $2, now(), now(), (extract(epoch FROM now()) * 1000000)::bigint)
             RETURNING id",
            &[&name, &admin],
        )
        .await?
        .get(0);
        execute(
            &tx,
            "INSERT INTO room_members (room_id, user_id, joined_at)
             SELECT $1::bigint, member, now() FROM unnest($2::bigint[]) AS member",
            &[&room, &ids],
        )
        .await?;
        let created = load_room(&tx, room)
            .await?
            .ok_or(StoreError::RoomNotFound)?;
        tx.commit().await?;
        Ok(created)
    }

    async fn rooms_of(&self, user: i64) -> StoreResult<Vec<Room>> {
        let db = self.pool.get().await?;
        // One statement, so every room and member list comes from one snapshot.
        let rows = query(
            &db,
            &format!(
                "{ROOM_SELECT}
                 WHERE r.id IN (SELECT room_id FROM room_members WHERE user_id = $1)
                 ORDER BY r.id, m.joined_at, u.id"
            ),
            &[&user],
        )
        .await?;
        Ok(rooms_from_rows(&rows))
    }

    async fn room(&self, room: i64) -> StoreResult<Option<Room>> {
        let db = self.pool.get().await?;
        load_room(&db, room).await
    }

    async fn check_member(&self, room: i64, user: i64) -> StoreResult<()> {
        let db = self.pool.get().await?;
        check_member(&db, room, user).await
    }

    async fn join_room(&self, room: i64, user: i64, cap: usize) -> StoreResult<Room> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        lock_room(&tx, room).await?;
        let state = query_one(
            &tx,
            "SELECT EXISTS(SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2),
                    (SELECT COUNT(*) FROM room_members WHERE room_id = $1)",
            &[&room, &user],
        )
        .await?;
        if is_direct(&tx, room).await? {
            return Err(StoreError::DirectRoom);
        }
        if state.get::<_, bool>(0) {
            return Err(StoreError::AlreadyMember);
        }
        if state.get::<_, i64>(1) as usize >= cap {
            return Err(StoreError::RoomFull);
        }
        let joined = query_one(
            &tx,
            "WITH joined AS (
                 INSERT INTO room_members (room_id, user_id, joined_at)
                 VALUES ($1, $2, clock_timestamp()) RETURNING joined_at
             ), touched AS (
                 UPDATE rooms SET updated_at = (SELECT joined_at FROM joined) WHERE id = $1
             )
             SELECT joined.joined_at, u.username FROM joined, users u WHERE u.id = $2",
            &[&room, &user],
        )
        .await?;
        let at: DateTime<Utc> = joined.get(0);
        let event = RoomEvent::joined(room, user, joined.get(1), &format_timestamp(at));
        self.commit_membership_change(tx, room, event, at).await
    }

    async fn leave_room(&self, room: i64, user: i64) -> StoreResult<Room> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        lock_room(&tx, room).await?;
        check_member(&tx, room, user).await?;
        if is_direct(&tx, room).await? {
            return Err(StoreError::DirectRoom);
        }
        let left = query_opt(
            &tx,
            "WITH gone AS (
                 DELETE FROM room_members WHERE room_id = $1 AND user_id = $2 RETURNING user_id
             ), touched AS (
                 UPDATE rooms SET updated_at = clock_timestamp()
                 WHERE id = $1 AND EXISTS (SELECT 1 FROM gone) RETURNING updated_at
             )
             SELECT touched.updated_at, u.username FROM touched, users u WHERE u.id = $2",
            &[&room, &user],
        )
        .await?
        .ok_or(StoreError::NotMember)?;
        let at: DateTime<Utc> = left.get(0);
        let event = RoomEvent::left(room, user, left.get(1), &format_timestamp(at));
        self.commit_membership_change(tx, room, event, at).await
    }

    async fn post_reply(
        &self,
        room: i64,
        sender: i64,
        content: &str,
        attachment: Option<Attachment>,
        reply_to: Option<i64>,
    ) -> StoreResult<Message> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        // Held until commit: the next message of this room gets a larger id and commits after.
        lock_room(&tx, room).await?;
        let direct = is_direct(&tx, room).await?;
        if direct && blocked_in_direct(&tx, room, sender).await? {
            return Err(StoreError::Blocked);
        }
        let reply = match reply_to {
            Some(id) => Some(answered(&tx, room, id).await?),
            None => None,
        };
        let stored = query_opt(
            &tx,
            "WITH stored AS (
                 INSERT INTO messages (room_id, sender_id, content, created_at, reply_to)
                 SELECT $1::bigint, $2::bigint, $3::text, clock_timestamp(), $4::bigint
                 WHERE EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2)
                 RETURNING id, created_at
             ), touched AS (
                 UPDATE rooms SET last_message_id = (SELECT id FROM stored),
                     activity = GREATEST(activity + 1,
                         (extract(epoch FROM (SELECT created_at FROM stored)) * 1000000)::bigint)
                 WHERE id = $1 AND EXISTS (SELECT 1 FROM stored)
             )
             SELECT stored.id, stored.created_at, u.username FROM stored, users u
             WHERE u.id = $2",
            &[&room, &sender, &content, &reply_to],
        )
        .await?
        .ok_or(StoreError::NotMember)?;
        let id: i64 = stored.get(0);
        let at: DateTime<Utc> = stored.get(1);
        if let Some(file) = &attachment {
            execute(
                &tx,
                "INSERT INTO attachments (message_id, file_name, content_type, size, original_name)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &id,
                    &file.file_name,
                    &file.content_type,
                    &(file.size as i64),
                    &file.original_name,
                ],
            )
            .await?;
        }
        let message = Message {
            id,
            room_id: room,
            sender_id: sender,
            sender_username: stored.get(2),
            content: content.to_string(),
            attachment,
            created_at: format_timestamp(at),
            edited_at: None,
            deleted: false,
            reply_to: reply,
        };
        let kind = if direct {
            RoomKind::Direct
        } else {
            RoomKind::Group
        };
        enqueue(&tx, &RoomEvent::message_in(&message, kind), at).await?;
        tx.commit().await?;
        self.outbox.notify_one();
        Ok(message)
    }

    async fn messages(&self, room: i64, user: i64, page: Page) -> StoreResult<Vec<Message>> {
        let db = self.pool.get().await?;
        check_member(&db, room, user).await?;
        let before = page.before.unwrap_or(i64::MAX);
        let limit = i64::from(page.limit);
        let messages = match page.after {
            Some(after) => query(
                &db,
                &format!(
                    "{MESSAGE_SELECT} WHERE m.room_id = $1 AND m.id > $2 AND m.id < $3
                     ORDER BY m.id ASC LIMIT $4"
                ),
                &[&room, &after, &before, &limit],
            )
            .await?
            .iter()
            .map(message_from_row)
            .collect(),
            None => {
                let mut newest: Vec<Message> = query(
                    &db,
                    &format!(
                        "{MESSAGE_SELECT} WHERE m.room_id = $1 AND m.id < $2
                         ORDER BY m.id DESC LIMIT $3"
                    ),
                    &[&room, &before, &limit],
                )
                .await?
                .iter()
                .map(message_from_row)
                .collect();
                newest.reverse();
                newest
            }
        };
        Ok(messages)
    }

    async fn attachment_owner(&self, file_name: &str) -> StoreResult<Option<AttachmentOwner>> {
        let db = self.pool.get().await?;
        let row = query_opt(
            &db,
            "SELECT m.room_id, a.content_type, a.original_name FROM attachments a
             JOIN messages m ON m.id = a.message_id WHERE a.file_name = $1",
            &[&file_name],
        )
        .await?;
        Ok(row.map(|row| AttachmentOwner {
            room_id: row.get(0),
            content_type: row.get(1),
            original_name: row.get(2),
        }))
    }

    async fn outbox_batch(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        let db = self.pool.get().await?;
        let rows = query(
            &db,
            "SELECT id, event FROM outbox ORDER BY id LIMIT $1",
            &[&i64::from(limit)],
        )
        .await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.get(0);
                let event = serde_json::from_str(row.get(1))
                    .map_err(|e| StoreError::backend(format!("outbox entry {id} is corrupt"), e))?;
                Ok(OutboxEntry { id, event })
            })
            .collect()
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        let db = self.pool.get().await?;
        let row = query(&db, "SELECT COUNT(*), MIN(created_at) FROM outbox", &[]).await?;
        let row = row
            .first()
            .ok_or_else(|| StoreError::internal("COUNT answered no row"))?;
        let rows = u64::try_from(row.get::<_, i64>(0)).unwrap_or_default();
        let oldest: Option<DateTime<Utc>> = row.get(1);
        Ok(OutboxDepth {
            rows,
            oldest_at: oldest.map(format_timestamp),
        })
    }

    async fn outbox_delete(&self, ids: Vec<i64>) -> StoreResult<()> {
        let db = self.pool.get().await?;
        execute(&db, "DELETE FROM outbox WHERE id = ANY($1)", &[&ids]).await?;
        Ok(())
    }

    fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox.clone()
    }

    fn queue_depth(&self) -> usize {
        self.pool.status().waiting
    }

    async fn try_relay_lease(&self, key: u32) -> StoreResult<Option<Box<dyn RelayLease>>> {
        let spare = self.spare_lock_session.lock().unwrap().take();
        let session = match spare.filter(|s| !s.client.is_closed()) {
            Some(session) => session,
            None => LockSession::connect(&self.config).await?,
        };
        // The two-key form: its key space is apart from the migration lock's.
        let taken: bool = tokio::time::timeout(
            LOCK_ROUND_TRIP,
            session.client.query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&RELAY_LOCK_CLASS, &(key as i32)],
            ),
        )
        .await
        .map_err(|_| StoreError::internal("taking the relay lock timed out"))??
        .get(0);
        if taken {
            return Ok(Some(Box::new(session)));
        }
        // Kept for the next attempt, so a waiting node does not connect every time it looks.
        *self.spare_lock_session.lock().unwrap() = Some(session);
        Ok(None)
    }

    async fn agree_jwt_secret(&self, candidate: &str) -> StoreResult<String> {
        let db = self.pool.get().await?;
        // A second node inserting at the same time waits for the first one's row, then
        // leaves it alone: both read back the same secret.
        execute(
            &db,
            "INSERT INTO jwt_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&candidate],
        )
        .await?;
        let row = query_one(&db, "SELECT secret FROM jwt_secret WHERE id = 1", &[]).await?;
        Ok(row.get(0))
    }

    async fn ping(&self) -> StoreResult<()> {
        let db = self.pool.get().await?;
        db.simple_query("SELECT 1").await?;
        Ok(())
    }
}
