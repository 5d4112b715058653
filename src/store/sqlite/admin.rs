//! The [`AdminStore`] queries on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::events::enqueue;
use super::queries::{member_from_row, user_from_row, USER_COLUMNS};
use super::SqliteStore;
use crate::domain::conversations::RoomKind;
use crate::domain::events::{EventKind, RoomEvent};
use crate::store::admin::{
    Account, AdminPage, AdminStore, Counts, DeletedRoom, RoomRecord, MAX_ADMIN_PAGE,
};
use crate::store::{now_timestamp, Member, StoreError, StoreResult};

/// Where the columns after [`USER_COLUMNS`] start.
fn after_user() -> usize {
    USER_COLUMNS.split(',').count()
}

fn account_select() -> String {
    format!(
        "SELECT {USER_COLUMNS}, disabled_at, tokens_revoked_at,
                (SELECT COUNT(*) FROM room_members m WHERE m.user_id = users.id)
         FROM users"
    )
}

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    let at = after_user();
    Ok(Account {
        user: user_from_row(row)?,
        disabled_at: row.get(at)?,
        tokens_revoked_at: row.get(at + 1)?,
        rooms: row.get(at + 2)?,
    })
}

fn load_account(conn: &Connection, id: i64) -> StoreResult<Option<Account>> {
    Ok(conn
        .prepare_cached(&format!("{} WHERE id = ?1", account_select()))?
        .query_row([id], account_from_row)
        .optional()?)
}

const ROOM_RECORD_SELECT: &str = "
    SELECT r.id, r.name, r.kind, r.admin_id, r.created_at,
           (SELECT COUNT(*) FROM room_members m WHERE m.room_id = r.id),
           (SELECT COUNT(*) FROM messages x WHERE x.room_id = r.id)
    FROM rooms r";

fn room_record_from_row(row: &Row<'_>) -> rusqlite::Result<RoomRecord> {
    Ok(RoomRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        kind: RoomKind::from_stored(&row.get::<_, String>(2)?),
        admin: row.get(3)?,
        created_at: row.get(4)?,
        members: row.get(5)?,
        messages: row.get(6)?,
    })
}

fn load_room_record(conn: &Connection, id: i64) -> StoreResult<Option<RoomRecord>> {
    Ok(conn
        .prepare_cached(&format!("{ROOM_RECORD_SELECT} WHERE r.id = ?1"))?
        .query_row([id], room_record_from_row)
        .optional()?)
}

/// Queues `kind` about `user` in every room they are a member of.
fn queue_in_rooms_of(conn: &Connection, user: i64, kind: EventKind) -> StoreResult<()> {
    let rooms = conn
        .prepare_cached("SELECT room_id FROM room_members WHERE user_id = ?1 ORDER BY room_id")?
        .query_map([user], |row| row.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let now = now_timestamp();
    for room in rooms {
        enqueue(conn, &RoomEvent::closing(kind, room, Some(user), &now))?;
    }
    Ok(())
}

fn set_disabled(conn: &Connection, id: i64, disabled: bool) -> StoreResult<Account> {
    // A second disable keeps the first time; the events are queued again, for a socket
    // that opened in between.
    let changed = conn.execute(
        "UPDATE users SET disabled_at = CASE WHEN ?2 THEN COALESCE(disabled_at, ?3) END
         WHERE id = ?1",
        params![id, disabled, now_timestamp()],
    )?;
    if changed == 0 {
        return Err(StoreError::UserNotFound);
    }
    if disabled {
        queue_in_rooms_of(conn, id, EventKind::MemberDisabled)?;
    }
    load_account(conn, id)?.ok_or(StoreError::UserNotFound)
}

fn revoke_user_tokens(conn: &Connection, id: i64) -> StoreResult<Account> {
    let changed = conn.execute(
        "UPDATE users SET tokens_revoked_at = ?2 WHERE id = ?1",
        params![id, chrono::Utc::now().timestamp()],
    )?;
    if changed == 0 {
        return Err(StoreError::UserNotFound);
    }
    queue_in_rooms_of(conn, id, EventKind::MemberSignedOut)?;
    load_account(conn, id)?.ok_or(StoreError::UserNotFound)
}

fn delete_room(conn: &Connection, id: i64) -> StoreResult<DeletedRoom> {
    let room = load_room_record(conn, id)?.ok_or(StoreError::RoomNotFound)?;
    let files = conn
        .prepare_cached(
            "SELECT a.file_name FROM attachments a JOIN messages m ON m.id = a.message_id
             WHERE m.room_id = ?1 ORDER BY a.file_name",
        )?
        .query_map([id], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let event = RoomEvent::closing(EventKind::RoomDeleted, id, None, &now_timestamp());
    enqueue(conn, &event)?;
    // Members, messages, attachments and receipts go with it (ON DELETE CASCADE).
    conn.execute("DELETE FROM rooms WHERE id = ?1", [id])?;
    Ok(DeletedRoom { room, files })
}

fn page_params(page: AdminPage) -> (i64, i64) {
    (page.after, i64::from(page.limit.min(MAX_ADMIN_PAGE)))
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn accounts(&self, page: AdminPage) -> StoreResult<Vec<Account>> {
        let (after, limit) = page_params(page);
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "{} WHERE id > ?1 ORDER BY id LIMIT ?2",
                    account_select()
                ))?
                .query_map(params![after, limit], account_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn account(&self, id: i64) -> StoreResult<Option<(Account, i64)>> {
        self.read(move |conn| {
            let Some(account) = load_account(conn, id)? else {
                return Ok(None);
            };
            let sent = conn
                .prepare_cached("SELECT COUNT(*) FROM messages WHERE sender_id = ?1")?
                .query_row([id], |row| row.get(0))?;
            Ok(Some((account, sent)))
        })
        .await
    }

    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<Account> {
        let account = self
            .write(move |conn| set_disabled(conn, id, disabled))
            .await?;
        self.outbox.notify_one();
        Ok(account)
    }

    async fn is_disabled(&self, id: i64) -> StoreResult<bool> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT disabled_at IS NOT NULL FROM users WHERE id = ?1")?
                .query_row([id], |row| row.get(0))
                .optional()?
                .ok_or(StoreError::UserNotFound)
        })
        .await
    }

    async fn revoke_user_tokens(&self, id: i64) -> StoreResult<Account> {
        let account = self.write(move |conn| revoke_user_tokens(conn, id)).await?;
        self.outbox.notify_one();
        Ok(account)
    }

    async fn room_records(&self, page: AdminPage) -> StoreResult<Vec<RoomRecord>> {
        let (after, limit) = page_params(page);
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "{ROOM_RECORD_SELECT} WHERE r.id > ?1 ORDER BY r.id LIMIT ?2"
                ))?
                .query_map(params![after, limit], room_record_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn room_record(&self, id: i64) -> StoreResult<Option<(RoomRecord, Vec<Member>)>> {
        self.read(move |conn| {
            let Some(room) = load_room_record(conn, id)? else {
                return Ok(None);
            };
            // At most the member cap of rows.
            let members = conn
                .prepare_cached(
                    "SELECT u.id, u.username, u.first_name, u.last_name FROM room_members m
                     JOIN users u ON u.id = m.user_id WHERE m.room_id = ?1 ORDER BY u.id",
                )?
                .query_map([id], member_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some((room, members)))
        })
        .await
    }

    async fn delete_room(&self, id: i64) -> StoreResult<DeletedRoom> {
        let deleted = self.write(move |conn| delete_room(conn, id)).await?;
        self.outbox.notify_one();
        Ok(deleted)
    }

    async fn counts(&self) -> StoreResult<Counts> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT (SELECT COUNT(*) FROM users),
                            (SELECT COUNT(*) FROM users WHERE disabled_at IS NOT NULL),
                            (SELECT COUNT(*) FROM rooms),
                            (SELECT COUNT(*) FROM messages)",
                )?
                .query_row([], |row| {
                    Ok(Counts {
                        users: row.get(0)?,
                        disabled_users: row.get(1)?,
                        rooms: row.get(2)?,
                        messages: row.get(3)?,
                    })
                })?)
        })
        .await
    }
}
