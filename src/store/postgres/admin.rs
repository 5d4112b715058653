//! The [`AdminStore`] queries on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::rows::{
    enqueue, execute, lock_room, query, query_one, query_opt, timestamp, user_from_row,
    USER_COLUMNS,
};
use super::PostgresStore;
use crate::domain::conversations::RoomKind;
use crate::domain::events::{EventKind, RoomEvent};
use crate::store::admin::{
    Account, AdminPage, AdminStore, Counts, DeletedRoom, RoomRecord, MAX_ADMIN_PAGE,
};
use crate::store::{format_timestamp, Member, StoreError, StoreResult};

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

fn account_from_row(row: &Row) -> Account {
    let at = after_user();
    Account {
        user: user_from_row(row),
        disabled_at: row
            .get::<_, Option<DateTime<Utc>>>(at)
            .map(format_timestamp),
        tokens_revoked_at: row.get(at + 1),
        rooms: row.get(at + 2),
    }
}

async fn load_account<C: GenericClient>(db: &C, id: i64) -> StoreResult<Option<Account>> {
    let sql = format!("{} WHERE id = $1", account_select());
    Ok(query_opt(db, &sql, &[&id])
        .await?
        .as_ref()
        .map(account_from_row))
}

const ROOM_RECORD_SELECT: &str = "
    SELECT r.id, r.name, r.kind, r.admin_id, r.created_at,
           (SELECT COUNT(*) FROM room_members m WHERE m.room_id = r.id),
           (SELECT COUNT(*) FROM messages x WHERE x.room_id = r.id)
    FROM rooms r";

fn room_record_from_row(row: &Row) -> RoomRecord {
    RoomRecord {
        id: row.get(0),
        name: row.get(1),
        kind: RoomKind::from_stored(row.get(2)),
        admin: row.get(3),
        created_at: timestamp(row, 4),
        members: row.get(5),
        messages: row.get(6),
    }
}

async fn load_room_record<C: GenericClient>(db: &C, id: i64) -> StoreResult<Option<RoomRecord>> {
    let sql = format!("{ROOM_RECORD_SELECT} WHERE r.id = $1");
    Ok(query_opt(db, &sql, &[&id])
        .await?
        .as_ref()
        .map(room_record_from_row))
}

/// Queues `kind` about `user` in every room they are a member of.
async fn queue_in_rooms_of<C: GenericClient>(
    tx: &C,
    user: i64,
    kind: EventKind,
) -> StoreResult<()> {
    let rooms = query(
        tx,
        "SELECT room_id FROM room_members WHERE user_id = $1 ORDER BY room_id",
        &[&user],
    )
    .await?;
    let at = Utc::now();
    let now = format_timestamp(at);
    for row in rooms {
        let event = RoomEvent::closing(kind, row.get(0), Some(user), &now);
        enqueue(tx, &event, at).await?;
    }
    Ok(())
}

impl PostgresStore {
    /// Runs `change` on the user's row (`UserNotFound` when it changed none), queues `kind`
    /// in their rooms if given, and commits.
    async fn change_account(
        &self,
        id: i64,
        change: &str,
        kind: Option<EventKind>,
    ) -> StoreResult<Account> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        if execute(&tx, change, &[&id]).await? == 0 {
            return Err(StoreError::UserNotFound);
        }
        if let Some(kind) = kind {
            queue_in_rooms_of(&tx, id, kind).await?;
        }
        let account = load_account(&tx, id)
            .await?
            .ok_or(StoreError::UserNotFound)?;
        tx.commit().await?;
        self.outbox.notify_one();
        Ok(account)
    }
}

fn page_params(page: AdminPage) -> (i64, i64) {
    (page.after, i64::from(page.limit.min(MAX_ADMIN_PAGE)))
}

#[async_trait]
impl AdminStore for PostgresStore {
    async fn accounts(&self, page: AdminPage) -> StoreResult<Vec<Account>> {
        let (after, limit) = page_params(page);
        let db = self.pool.get().await?;
        let sql = format!("{} WHERE id > $1 ORDER BY id LIMIT $2", account_select());
        let rows = query(&db, &sql, &[&after, &limit]).await?;
        Ok(rows.iter().map(account_from_row).collect())
    }

    async fn account(&self, id: i64) -> StoreResult<Option<(Account, i64)>> {
        let db = self.pool.get().await?;
        let Some(account) = load_account(&db, id).await? else {
            return Ok(None);
        };
        let sent = query_one(
            &db,
            "SELECT COUNT(*) FROM messages WHERE sender_id = $1",
            &[&id],
        )
        .await?;
        Ok(Some((account, sent.get(0))))
    }

    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<Account> {
        if disabled {
            // A second disable keeps the first time; the events are queued again, for a
            // socket that opened in between.
            let change =
                "UPDATE users SET disabled_at = COALESCE(disabled_at, now()) WHERE id = $1";
            self.change_account(id, change, Some(EventKind::MemberDisabled))
                .await
        } else {
            let change = "UPDATE users SET disabled_at = NULL WHERE id = $1";
            self.change_account(id, change, None).await
        }
    }

    async fn is_disabled(&self, id: i64) -> StoreResult<bool> {
        let db = self.pool.get().await?;
        let row = query_opt(
            &db,
            "SELECT disabled_at IS NOT NULL FROM users WHERE id = $1",
            &[&id],
        )
        .await?;
        row.map(|row| row.get(0)).ok_or(StoreError::UserNotFound)
    }

    async fn revoke_user_tokens(&self, id: i64) -> StoreResult<Account> {
        // floor, as the tokens' whole-second issue times do: a cast rounds, so half a second
        // on, it would refuse the tokens of the next second too.
        let change = "UPDATE users SET tokens_revoked_at = floor(extract(epoch FROM now()))::bigint
                      WHERE id = $1";
        self.change_account(id, change, Some(EventKind::MemberSignedOut))
            .await
    }

    async fn room_records(&self, page: AdminPage) -> StoreResult<Vec<RoomRecord>> {
        let (after, limit) = page_params(page);
        let db = self.pool.get().await?;
        let sql = format!("{ROOM_RECORD_SELECT} WHERE r.id > $1 ORDER BY r.id LIMIT $2");
        let rows = query(&db, &sql, &[&after, &limit]).await?;
        Ok(rows.iter().map(room_record_from_row).collect())
    }

    async fn room_record(&self, id: i64) -> StoreResult<Option<(RoomRecord, Vec<Member>)>> {
        let db = self.pool.get().await?;
        let Some(room) = load_room_record(&db, id).await? else {
            return Ok(None);
        };
        // At most the member cap of rows.
        let rows = query(
            &db,
            "SELECT u.id, u.username, u.first_name, u.last_name FROM room_members m
             JOIN users u ON u.id = m.user_id WHERE m.room_id = $1 ORDER BY u.id",
            &[&id],
        )
        .await?;
        let members = rows
            .iter()
            .map(|row| Member {
                id: row.get(0),
                username: row.get(1),
                first_name: row.get(2),
                last_name: row.get(3),
            })
            .collect();
        Ok(Some((room, members)))
    }

    async fn delete_room(&self, id: i64) -> StoreResult<DeletedRoom> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        // Waits for the room's writes in flight, which take the same lock first.
        lock_room(&tx, id).await?;
        let room = load_room_record(&tx, id)
            .await?
            .ok_or(StoreError::RoomNotFound)?;
        let files = query(
            &tx,
            "SELECT a.file_name FROM attachments a JOIN messages m ON m.id = a.message_id
             WHERE m.room_id = $1 ORDER BY a.file_name",
            &[&id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
        let at = Utc::now();
        let event = RoomEvent::closing(EventKind::RoomDeleted, id, None, &format_timestamp(at));
        enqueue(&tx, &event, at).await?;
        // Members, messages, attachments and receipts go with it (ON DELETE CASCADE).
        execute(&tx, "DELETE FROM rooms WHERE id = $1", &[&id]).await?;
        tx.commit().await?;
        self.outbox.notify_one();
        Ok(DeletedRoom { room, files })
    }

    async fn counts(&self) -> StoreResult<Counts> {
        let db = self.pool.get().await?;
        let row = query_one(
            &db,
            "SELECT (SELECT COUNT(*) FROM users),
                    (SELECT COUNT(*) FROM users WHERE disabled_at IS NOT NULL),
                    (SELECT COUNT(*) FROM rooms),
                    (SELECT COUNT(*) FROM messages)",
            &[],
        )
        .await?;
        Ok(Counts {
            users: row.get(0),
            disabled_users: row.get(1),
            rooms: row.get(2),
            messages: row.get(3),
        })
    }
}
