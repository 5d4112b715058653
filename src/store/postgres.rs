//! PostgreSQL behind the [`Store`] seam, for several nodes sharing one database.
//!
//! A deadpool pool of tokio-postgres connections. Joins, leaves and messages first lock their
//! room's row, so whatever node they run on, a room's membership changes are serialised (the
//! member cap holds) and its message and outbox ids are assigned and committed in one order.
//! A trigger on the outbox NOTIFYs `chatnode_outbox` at commit; every store LISTENs on a
//! connection of its own, so the relay holding the lease wakes for commits on any node.

use std::error::Error as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Manager, Pool, PoolError, Runtime};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Config, NoTls, Row};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    format_timestamp, redact, Attachment, AttachmentOwner, Member, Message, NewUser, OutboxEntry,
    Page, Room, Store, StoreError, StoreResult, User,
};
use crate::events::RoomEvent;

/// The schema, applied in this order and recorded in `schema_migrations`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../sql/postgres/0001_init.sql"),
    ),
    (
        "0002_outbox",
        include_str!("../../sql/postgres/0002_outbox.sql"),
    ),
];

/// Advisory lock key ("chatnode" in ASCII) held while migrating, so nodes starting together
/// apply each migration once.
const MIGRATION_LOCK: i64 = 0x6368_6174_6e6f_6465;
const POOL_SIZE: usize = 16;
/// Bounds how long a request waits for a connection when the database is slow or gone.
const POOL_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before listening again after the notification connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

pub struct PostgresStore {
    pool: Pool,
    outbox: Arc<Notify>,
    /// Stops the LISTEN task when the store is dropped.
    _listener: DropGuard,
}

/// The error with its cause: tokio-postgres' own text is only "db error" for server errors.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.source() {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let reason = describe(&err);
        match err.code() {
            Some(code) if *code == SqlState::DISK_FULL => StoreError::StorageFull(reason),
            Some(code) if *code == SqlState::READ_ONLY_SQL_TRANSACTION => {
                StoreError::StorageReadOnly(reason)
            }
            _ => StoreError::Backend(reason),
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Backend(err) => err.into(),
            other => StoreError::Backend(other.to_string()),
        }
    }
}

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

    /// Connects to the database at `url`, applies pending migrations and starts listening
    /// for outbox notifications.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let mut config = Config::from_str(url)
            .map_err(|e| StoreError::UnsupportedUrl(format!("{}: {e}", redact(url))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        migrate(&config).await?;
        let pool = Pool::builder(Manager::new(config.clone(), NoTls))
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let outbox = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(listen(config, outbox.clone(), stop.clone()));
        Ok(Self {
            pool,
            outbox,
            _listener: stop.drop_guard(),
        })
    }
}

async fn migrate(config: &Config) -> StoreResult<()> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let applied = apply_migrations(&mut client).await;
    // Closing the session also releases the advisory lock when a migration failed.
    drop(client);
    let _ = driver.await;
    applied
}

async fn apply_migrations(client: &mut tokio_postgres::Client) -> StoreResult<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                name       TEXT        PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
    for (name, sql) in MIGRATIONS {
        let failed = |e: tokio_postgres::Error| StoreError::Migration {
            name: name.to_string(),
            reason: describe(&e),
        };
        let tx = client.transaction().await?;
        let done: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE name = $1)",
                &[name],
            )
            .await?
            .get(0);
        if done {
            continue;
        }
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(migration = name, "applied migration");
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    Ok(())
}

/// Pokes `outbox` for every notification on the outbox channel, reconnecting whenever the
/// connection drops, until `stop` is cancelled.
async fn listen(config: Config, outbox: Arc<Notify>, stop: CancellationToken) {
    loop {
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            ended = listen_once(&config, &outbox) => ended,
        };
        match ended {
            Ok(()) => tracing::warn!("the outbox notification connection closed; reconnecting"),
            Err(e) => tracing::warn!(
                error = %describe(&e),
                "the outbox notification connection failed; reconnecting"
            ),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RELISTEN_DELAY) => {}
        }
    }
}

async fn listen_once(config: &Config, outbox: &Notify) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    // Notifications arrive through the connection, so it is polled here rather than spawned.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let subscribe = client.batch_execute("LISTEN chatnode_outbox");
    tokio::pin!(subscribe);
    let mut subscribed = false;
    loop {
        tokio::select! {
            done = &mut subscribe, if !subscribed => {
                done?;
                subscribed = true;
                // Commits made while nothing listened were announced to no one.
                outbox.notify_one();
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => outbox.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn query<C: GenericClient>(db: &C, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query(&statement, params).await?)
}

async fn query_one<C: GenericClient>(db: &C, sql: &str, params: Params<'_>) -> StoreResult<Row> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query_one(&statement, params).await?)
}

async fn query_opt<C: GenericClient>(
    db: &C,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<Row>> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query_opt(&statement, params).await?)
}

async fn execute<C: GenericClient>(db: &C, sql: &str, params: Params<'_>) -> StoreResult<u64> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.execute(&statement, params).await?)
}

fn timestamp(row: &Row, index: usize) -> String {
    format_timestamp(row.get::<_, DateTime<Utc>>(index))
}

const USER_COLUMNS: &str =
    "id, email, username, phone_number, first_name, last_name, created_at, updated_at";

fn user_from_row(row: &Row) -> User {
    User {
        id: row.get(0),
        email: row.get(1),
        username: row.get(2),
        phone_number: row.get(3),
        first_name: row.get(4),
        last_name: row.get(5),
        created_at: timestamp(row, 6),
        updated_at: timestamp(row, 7),
    }
}

fn is_unique_violation(err: &tokio_postgres::Error, constraint: &str) -> bool {
    err.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && err.as_db_error().and_then(|e| e.constraint()) == Some(constraint)
}

/// Rooms with their members, one row per member (or one with NULL member columns for an
/// empty room); callers order by room, then join time and user id.
const ROOM_SELECT: &str =
    "SELECT r.id, r.name, r.admin_id, r.created_at, r.updated_at, u.id, u.username
     FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id
     LEFT JOIN users u ON u.id = m.user_id";

/// Groups [`ROOM_SELECT`] rows (ordered by room) into rooms.
fn rooms_from_rows(rows: &[Row]) -> Vec<Room> {
    let mut rooms: Vec<Room> = Vec::new();
    for row in rows {
        let id: i64 = row.get(0);
        if rooms.last().is_none_or(|room| room.id != id) {
            rooms.push(Room {
                id,
                name: row.get(1),
                admin: row.get(2),
                members: Vec::new(),
                created_at: timestamp(row, 3),
                updated_at: timestamp(row, 4),
            });
        }
        if let Some(member) = row.get::<_, Option<i64>>(5) {
            let room = rooms.last_mut().expect("a room was pushed above");
            room.members.push(Member {
                id: member,
                username: row.get(6),
            });
        }
    }
    rooms
}

async fn load_room<C: GenericClient>(db: &C, room: i64) -> StoreResult<Option<Room>> {
    let rows = query(
        db,
        &format!("{ROOM_SELECT} WHERE r.id = $1 ORDER BY m.joined_at, u.id"),
        &[&room],
    )
    .await?;
    Ok(rooms_from_rows(&rows).pop())
}

async fn check_member<C: GenericClient>(db: &C, room: i64, user: i64) -> StoreResult<()> {
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
async fn lock_room<C: GenericClient>(tx: &C, room: i64) -> StoreResult<()> {
    query_opt(tx, "SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", &[&room])
        .await?
        .map(|_| ())
        .ok_or(StoreError::RoomNotFound)
}

/// Queues `event`; the outbox trigger notifies every node's listener at commit.
async fn enqueue<C: GenericClient>(
    tx: &C,
    event: &RoomEvent,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let body = serde_json::to_string(event).map_err(|e| StoreError::Backend(e.to_string()))?;
    execute(
        tx,
        "INSERT INTO outbox (event, created_at) VALUES ($1, $2)",
        &[&body, &at],
    )
    .await?;
    Ok(())
}

const MESSAGE_SELECT: &str =
    "SELECT m.id, m.room_id, m.sender_id, u.username, m.content, m.created_at,
            a.file_name, a.content_type, a.size
     FROM messages m JOIN users u ON u.id = m.sender_id
     LEFT JOIN attachments a ON a.message_id = m.id";

fn message_from_row(row: &Row) -> Message {
    let attachment = row.get::<_, Option<String>>(6).map(|file_name| Attachment {
        file_name,
        content_type: row.get(7),
        size: row.get::<_, i64>(8) as u64,
    });
    Message {
        id: row.get(0),
        room_id: row.get(1),
        sender_id: row.get(2),
        sender_username: row.get(3),
        content: row.get(4),
        created_at: timestamp(row, 5),
        attachment,
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
                    &user.email,
                    &user.username,
                    &user.phone_number,
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
        Ok(row.map(|row| (user_from_row(&row), row.get(8))))
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
        let room: i64 = query_one(
            &tx,
            "INSERT INTO rooms (name, admin_id, created_at, updated_at)
             VALUES ($1, $2, now(), now()) RETURNING id",
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

    async fn post_message(
        &self,
        room: i64,
        sender: i64,
        content: &str,
        attachment: Option<Attachment>,
    ) -> StoreResult<Message> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        // Held until commit: the next message of this room gets a larger id and commits after.
        lock_room(&tx, room).await?;
        let stored = query_opt(
            &tx,
            "WITH stored AS (
                 INSERT INTO messages (room_id, sender_id, content, created_at)
                 SELECT $1::bigint, $2::bigint, $3::text, clock_timestamp()
                 WHERE EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2)
                 RETURNING id, created_at
             )
             SELECT stored.id, stored.created_at, u.username FROM stored, users u
             WHERE u.id = $2",
            &[&room, &sender, &content],
        )
        .await?
        .ok_or(StoreError::NotMember)?;
        let id: i64 = stored.get(0);
        let at: DateTime<Utc> = stored.get(1);
        if let Some(file) = &attachment {
            execute(
                &tx,
                "INSERT INTO attachments (message_id, file_name, content_type, size)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &id,
                    &file.file_name,
                    &file.content_type,
                    &(file.size as i64),
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
        };
        enqueue(&tx, &RoomEvent::message(&message), at).await?;
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
            "SELECT m.room_id, a.content_type FROM attachments a
             JOIN messages m ON m.id = a.message_id WHERE a.file_name = $1",
            &[&file_name],
        )
        .await?;
        Ok(row.map(|row| AttachmentOwner {
            room_id: row.get(0),
            content_type: row.get(1),
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
                let event = serde_json::from_str(row.get(1)).map_err(|e| {
                    StoreError::Backend(format!("outbox entry {id} is corrupt: {e}"))
                })?;
                Ok(OutboxEntry { id, event })
            })
            .collect()
    }

    async fn outbox_delete(&self, ids: Vec<i64>) -> StoreResult<()> {
        let db = self.pool.get().await?;
        execute(&db, "DELETE FROM outbox WHERE id = ANY($1)", &[&ids]).await?;
        Ok(())
    }

    fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox.clone()
    }

    async fn acquire_relay_lease(&self, holder: &str, ttl: Duration) -> StoreResult<bool> {
        let db = self.pool.get().await?;
        // One statement: the row is taken, renewed or left alone atomically, and comes back
        // only when `holder` has it now. Expiry uses the database clock all nodes share.
        let granted = query_opt(
            &db,
            "INSERT INTO relay_lease (id, holder, expires_at)
             VALUES (1, $1, clock_timestamp() + make_interval(secs => $2))
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,
                                            expires_at = excluded.expires_at
             WHERE relay_lease.holder = excluded.holder
                OR relay_lease.expires_at < clock_timestamp()
             RETURNING holder",
            &[&holder, &ttl.as_secs_f64()],
        )
        .await?;
        Ok(granted.is_some())
    }

    async fn release_relay_lease(&self, holder: &str) -> StoreResult<()> {
        let db = self.pool.get().await?;
        execute(&db, "DELETE FROM relay_lease WHERE holder = $1", &[&holder]).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        let db = self.pool.get().await?;
        db.simple_query("SELECT 1").await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn every_sql_file_is_a_listed_migration_in_order() {
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(crate::store::migration_files("postgres"), listed);
    }
}
