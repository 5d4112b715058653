//! Storage-level tests, written once against `Arc<dyn Store>` and run on every backend:
//! SQLite in a temporary directory, and PostgreSQL in a fresh database per test (with the
//! `postgres` feature and `CHATNODE_TEST_DATABASE_URL`; see `backends.rs`). "Two nodes" are
//! two stores opened on the same database.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chatnode::domain::events::{EventKind, RoomEvent, BOT_SENDER};
use chatnode::domain::values::{Email, PhoneNumber};
use chatnode::store::{
    format_timestamp, Attachment, NewUser, Page, Store, StoreError, TokenStanding, User,
};

use crate::helpers::{eventually, WAIT};

/// Upper bound for a whole test.
pub(crate) const TEST_LIMIT: Duration = Duration::from_secs(60);

pub struct Backend {
    url: String,
    /// What keeps the database alive: a temporary directory or a fresh PostgreSQL database.
    _database: Box<dyn Any + Send>,
}

impl Backend {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            url: format!("sqlite://{}", dir.path().join("store.db").display()),
            _database: Box::new(dir),
        }
    }

    #[cfg(feature = "postgres")]
    async fn postgres() -> Self {
        let database = crate::backends::fresh_database().await;
        Self {
            url: database.url.clone(),
            _database: Box::new(database),
        }
    }

    /// Another store (node) on this backend's database.
    async fn open(&self) -> Arc<dyn Store> {
        tokio::time::timeout(WAIT, chatnode::store::open(&self.url))
            .await
            .expect("the store opens in time")
            .expect("the store opens")
    }
}

/// Runs each named suite function once per backend, as `store::<backend>::<name>`.
macro_rules! backend_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    tokio::time::timeout(super::TEST_LIMIT, super::$test(super::Backend::sqlite()))
                        .await
                        .expect("the test finishes in time");
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: set CHATNODE_TEST_DATABASE_URL"]
                async fn $test() {
                    let backend = super::Backend::postgres().await;
                    tokio::time::timeout(super::TEST_LIMIT, super::$test(backend))
                        .await
                        .expect("the test finishes in time");
                }
            )*
        }
    };
}

// After the macro: they use it.
mod admin;
mod conversations;
mod events;
mod presence;
mod reactions;

backend_suite!(
    users_have_one_account_per_email_whatever_its_case,
    rooms_are_created_whole_or_not_at_all,
    joins_and_leaves_are_checked_and_queue_notices,
    messages_are_stored_with_their_events_in_commit_order,
    history_pages_match_before_and_after,
    attachments_name_their_room,
    revoked_tokens_are_remembered_until_they_expire,
    the_relay_lease_has_one_holder_at_a_time,
    concurrent_messages_from_two_nodes_commit_in_id_order,
    concurrent_joins_from_two_nodes_never_exceed_the_cap,
    nodes_starting_together_agree_on_one_jwt_secret,
    a_token_user_is_read_with_its_revocation,
    the_outbox_depth_counts_waiting_events_and_dates_the_oldest,
);

fn new_user(name: &str) -> NewUser {
    NewUser {
        email: Email::parse(&format!("{name}@example.com")).unwrap(),
        username: name.to_string(),
        phone_number: PhoneNumber::parse("+1 415-555-2671").unwrap(),
        first_name: name.to_string(),
        last_name: "Tester".to_string(),
        password_hash: format!("hash-of-{name}"),
    }
}

async fn add_user(store: &Arc<dyn Store>, name: &str) -> User {
    store.create_user(new_user(name)).await.unwrap()
}

/// RFC 3339 in UTC with exactly six fractional digits, as every backend writes it.
fn assert_timestamp(value: &str) {
    let parsed = chrono::DateTime::parse_from_rfc3339(value)
        .unwrap_or_else(|e| panic!("{value} is not RFC 3339: {e}"));
    assert_eq!(format_timestamp(parsed.to_utc()), value);
}

/// Takes every queued outbox event, oldest first, and removes them.
async fn drain_outbox(store: &Arc<dyn Store>) -> Vec<RoomEvent> {
    let batch = store.outbox_batch(10_000).await.unwrap();
    let ids: Vec<i64> = batch.iter().map(|entry| entry.id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "outbox ids ascend: {ids:?}"
    );
    store.outbox_delete(ids).await.unwrap();
    batch.into_iter().map(|entry| entry.event).collect()
}

async fn expect_signal(store: &Arc<dyn Store>) {
    tokio::time::timeout(WAIT, store.outbox_signal().notified())
        .await
        .expect("the outbox signal fires");
}

fn page(limit: u32, before: Option<i64>, after: Option<i64>) -> Page {
    Page {
        limit,
        before,
        after,
    }
}

async fn users_have_one_account_per_email_whatever_its_case(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    assert_eq!(alice.email, "alice@example.com");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.phone_number, "+1 415-555-2671");
    assert_eq!(
        (alice.first_name.as_str(), alice.last_name.as_str()),
        ("alice", "Tester")
    );
    assert_timestamp(&alice.created_at);
    assert_eq!(alice.created_at, alice.updated_at);

    let mut shouting = new_user("ALICE2");
    shouting.email = Email::parse("Alice@Example.COM").unwrap();
    let taken = store.create_user(shouting).await.unwrap_err();
    assert!(matches!(taken, StoreError::EmailTaken), "{taken:?}");

    let (found, hash) = store
        .credentials("ALICE@example.com")
        .await
        .unwrap()
        .expect("found whatever the case");
    assert_eq!((found.id, hash.as_str()), (alice.id, "hash-of-alice"));
    assert!(store
        .credentials("nobody@example.com")
        .await
        .unwrap()
        .is_none());

    let by_id = store.user(alice.id).await.unwrap().expect("found by id");
    assert_eq!(
        (by_id.email, by_id.username, by_id.created_at),
        (alice.email, alice.username, alice.created_at)
    );
    assert!(store.user(alice.id + 1000).await.unwrap().is_none());

    let bob = add_user(&store, "bob").await;
    assert!(bob.id > alice.id);
}

async fn rooms_are_created_whole_or_not_at_all(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let carol = add_user(&store, "carol").await;
    let ghosts = [carol.id + 100, carol.id + 101];

    let unknown = store
        .create_room("r", alice.id, &[bob.id, ghosts[0], ghosts[1]], 10)
        .await
        .unwrap_err();
    match unknown {
        StoreError::UnknownUsers(ids) => assert_eq!(ids, ghosts),
        other => panic!("expected UnknownUsers, got {other:?}"),
    }
    let full = store
        .create_room("r", alice.id, &[bob.id, carol.id], 2)
        .await
        .unwrap_err();
    assert!(matches!(full, StoreError::RoomFull), "{full:?}");
    for user in [&alice, &bob, &carol] {
        assert!(
            store.rooms_of(user.id).await.unwrap().is_empty(),
            "nothing was created"
        );
    }

    // The admin is always a member, listed once, and members come in join then id order.
    let room = store
        .create_room(
            "friends",
            alice.id,
            &[carol.id, alice.id, bob.id, carol.id],
            3,
        )
        .await
        .unwrap();
    assert_eq!(room.name, "friends");
    assert_eq!(room.admin, alice.id);
    let members: Vec<(i64, &str)> = room
        .members
        .iter()
        .map(|m| (m.id, m.username.as_str()))
        .collect();
    assert_eq!(
        members,
        [(alice.id, "alice"), (bob.id, "bob"), (carol.id, "carol")]
    );
    assert_timestamp(&room.created_at);
    assert_timestamp(&room.updated_at);

    let solo = store.create_room("solo", bob.id, &[], 3).await.unwrap();
    assert!(solo.id > room.id);
    let fetched = store.room(room.id).await.unwrap().expect("room exists");
    assert_eq!(fetched.members.len(), 3);
    assert_eq!(fetched.created_at, room.created_at);
    assert!(store.room(solo.id + 1000).await.unwrap().is_none());

    let of_bob: Vec<i64> = store
        .rooms_of(bob.id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(of_bob, [room.id, solo.id]);
    let of_alice = store.rooms_of(alice.id).await.unwrap();
    assert_eq!(of_alice.len(), 1);
    assert_eq!(of_alice[0].members.len(), 3);

    store.check_member(room.id, carol.id).await.unwrap();
    let outsider = store.check_member(solo.id, carol.id).await.unwrap_err();
    assert!(matches!(outsider, StoreError::NotMember), "{outsider:?}");
    let missing = store
        .check_member(solo.id + 1000, carol.id)
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::RoomNotFound), "{missing:?}");

    assert!(
        drain_outbox(&store).await.is_empty(),
        "creating a room announces nothing"
    );
}

async fn joins_and_leaves_are_checked_and_queue_notices(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let carol = add_user(&store, "carol").await;
    let room = store.create_room("r", alice.id, &[], 2).await.unwrap();

    let again = store.join_room(room.id, alice.id, 2).await.unwrap_err();
    assert!(matches!(again, StoreError::AlreadyMember), "{again:?}");
    let nowhere = store
        .join_room(room.id + 1000, bob.id, 2)
        .await
        .unwrap_err();
    assert!(matches!(nowhere, StoreError::RoomNotFound), "{nowhere:?}");

    let joined = store.join_room(room.id, bob.id, 2).await.unwrap();
    expect_signal(&store).await;
    let ids: Vec<i64> = joined.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, [alice.id, bob.id]);
    assert!(joined.updated_at >= room.updated_at);
    let full = store.join_room(room.id, carol.id, 2).await.unwrap_err();
    assert!(matches!(full, StoreError::RoomFull), "{full:?}");

    let left = store.leave_room(room.id, alice.id).await.unwrap();
    let ids: Vec<i64> = left.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, [bob.id]);
    let not_in = store.leave_room(room.id, alice.id).await.unwrap_err();
    assert!(matches!(not_in, StoreError::NotMember), "{not_in:?}");
    let nowhere = store.leave_room(room.id + 1000, bob.id).await.unwrap_err();
    assert!(matches!(nowhere, StoreError::RoomNotFound), "{nowhere:?}");

    // Rejected attempts queued nothing; the two changes queued one notice each, in order.
    let events = drain_outbox(&store).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let (join, leave) = (&events[0], &events[1]);
    assert_eq!(join.kind, EventKind::MemberJoined);
    assert_eq!(
        (join.chat_id, join.user_id, join.id),
        (room.id, Some(bob.id), None)
    );
    assert_eq!(join.sender, BOT_SENDER);
    assert_eq!(join.message, "bob just joined the Chatroom");
    assert_timestamp(&join.created_at);
    assert_eq!(leave.kind, EventKind::MemberLeft);
    assert_eq!((leave.chat_id, leave.user_id), (room.id, Some(alice.id)));
    assert_eq!(leave.message, "alice has left the chatroom");
    assert!(leave.created_at >= join.created_at);

    // A member who rejoins comes after those who stayed.
    store.join_room(room.id, carol.id, 2).await.unwrap();
    let rejoined = store.leave_room(room.id, bob.id).await.unwrap();
    assert_eq!(rejoined.members.len(), 1);
    let back = store.join_room(room.id, bob.id, 2).await.unwrap();
    let ids: Vec<i64> = back.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, [carol.id, bob.id]);
}

async fn messages_are_stored_with_their_events_in_commit_order(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let mallory = add_user(&store, "mallory").await;
    let room = store
        .create_room("r", alice.id, &[bob.id], 5)
        .await
        .unwrap();

    let first = store
        .post_message(room.id, alice.id, "hello", None)
        .await
        .unwrap();
    expect_signal(&store).await;
    assert_eq!(
        (
            first.room_id,
            first.sender_id,
            first.sender_username.as_str(),
            first.content.as_str()
        ),
        (room.id, alice.id, "alice", "hello")
    );
    assert!(first.attachment.is_none());
    assert_timestamp(&first.created_at);
    let file = Attachment {
        file_name: "0123abcd.png".to_string(),
        content_type: "image/png".to_string(),
        size: 4096,
        original_name: Some("holiday snap.png".to_string()),
    };
    let second = store
        .post_message(room.id, bob.id, "a picture", Some(file.clone()))
        .await
        .unwrap();
    assert!(second.id > first.id);
    assert!(second.created_at >= first.created_at);
    let stored = second.attachment.clone().expect("attachment kept");
    assert_eq!(
        (
            stored.file_name,
            stored.content_type,
            stored.size,
            stored.original_name
        ),
        (
            file.file_name,
            file.content_type,
            file.size,
            file.original_name
        )
    );

    let intruder = store
        .post_message(room.id, mallory.id, "let me in", None)
        .await
        .unwrap_err();
    assert!(matches!(intruder, StoreError::NotMember), "{intruder:?}");
    let nowhere = store
        .post_message(room.id + 1000, alice.id, "anyone?", None)
        .await
        .unwrap_err();
    assert!(matches!(nowhere, StoreError::RoomNotFound), "{nowhere:?}");

    let history = store
        .messages(room.id, bob.id, page(50, None, None))
        .await
        .unwrap();
    let seen: Vec<(i64, &str, Option<&str>)> = history
        .iter()
        .map(|m| {
            (
                m.id,
                m.content.as_str(),
                m.attachment.as_ref().map(|a| a.file_name.as_str()),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (first.id, "hello", None),
            (second.id, "a picture", Some("0123abcd.png"))
        ]
    );
    assert_eq!(history[1].created_at, second.created_at);
    assert_eq!(history[1].sender_username, "bob");

    let events = drain_outbox(&store).await;
    // Each with the room's next position in its log.
    let positioned = |message, seq| RoomEvent {
        seq: Some(seq),
        ..RoomEvent::message(message)
    };
    assert_eq!(events, [positioned(&first, 1), positioned(&second, 2)]);
    assert_eq!(events[1].file.as_deref(), Some("/media/0123abcd.png"));
    assert!(
        store.outbox_batch(10).await.unwrap().is_empty(),
        "deleted entries are gone"
    );
}

async fn history_pages_match_before_and_after(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let outsider = add_user(&store, "outsider").await;
    let room = store.create_room("r", alice.id, &[], 5).await.unwrap();
    let other = store.create_room("other", alice.id, &[], 5).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..10 {
        let message = store
            .post_message(room.id, alice.id, &format!("m{n}"), None)
            .await
            .unwrap();
        ids.push(message.id);
        // Another room's messages interleave but never show up in this one's pages.
        store
            .post_message(other.id, alice.id, "elsewhere", None)
            .await
            .unwrap();
    }
    let (room_id, reader) = (room.id, alice.id);
    let read = |page: Page| {
        let store = store.clone();
        async move {
            store
                .messages(room_id, reader, page)
                .await
                .unwrap()
                .iter()
                .map(|m| m.id)
                .collect::<Vec<i64>>()
        }
    };
    assert_eq!(read(page(50, None, None)).await, ids);
    assert_eq!(read(page(3, None, None)).await, ids[7..]);
    assert_eq!(read(page(3, Some(ids[5]), None)).await, ids[2..5]);
    assert_eq!(read(page(3, None, Some(ids[5]))).await, ids[6..9]);
    assert_eq!(read(page(10, Some(ids[6]), Some(ids[2]))).await, ids[3..6]);
    assert_eq!(read(page(2, Some(ids[8]), Some(ids[2]))).await, ids[3..5]);
    assert!(read(page(5, Some(ids[0]), None)).await.is_empty());
    assert!(read(page(5, None, Some(ids[9]))).await.is_empty());

    let denied = store
        .messages(room.id, outsider.id, page(5, None, None))
        .await
        .unwrap_err();
    assert!(matches!(denied, StoreError::NotMember), "{denied:?}");
    let missing = store
        .messages(other.id + 1000, alice.id, page(5, None, None))
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::RoomNotFound), "{missing:?}");
}

async fn attachments_name_their_room(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let room = store.create_room("r", alice.id, &[], 5).await.unwrap();
    let file = Attachment {
        file_name: "feedface.pdf".to_string(),
        content_type: "application/pdf".to_string(),
        size: 12,
        original_name: None,
    };
    store
        .post_message(room.id, alice.id, "the report", Some(file))
        .await
        .unwrap();
    let owner = store
        .attachment_owner("feedface.pdf")
        .await
        .unwrap()
        .expect("the file is known");
    assert_eq!(
        (owner.room_id, owner.content_type.as_str()),
        (room.id, "application/pdf")
    );
    assert!(store
        .attachment_owner("unknown.pdf")
        .await
        .unwrap()
        .is_none());
}

async fn revoked_tokens_are_remembered_until_they_expire(backend: Backend) {
    let store = backend.open().await;
    let now = chrono::Utc::now().timestamp();
    assert!(!store.is_token_revoked("jti-1").await.unwrap());
    store.revoke_token("jti-1", now + 3600).await.unwrap();
    store.revoke_token("jti-1", now + 3600).await.unwrap();
    assert!(store.is_token_revoked("jti-1").await.unwrap());
    assert!(!store.is_token_revoked("jti-2").await.unwrap());

    // Entries past their expiry are purged by later revocations.
    store.revoke_token("stale", now - 60).await.unwrap();
    store.revoke_token("jti-2", now + 3600).await.unwrap();
    assert!(!store.is_token_revoked("stale").await.unwrap());
    assert!(store.is_token_revoked("jti-1").await.unwrap());
    assert!(store.is_token_revoked("jti-2").await.unwrap());
}

async fn the_relay_lease_has_one_holder_at_a_time(backend: Backend) {
    let one = backend.open().await;
    let two = backend.open().await;

    let mut held = one.try_relay_lease(0).await.unwrap().expect("a free lease");
    assert!(two.try_relay_lease(0).await.unwrap().is_none(), "held");
    assert!(
        one.try_relay_lease(0).await.unwrap().is_none(),
        "not twice, even by its holder's node"
    );
    held.confirm().await.expect("the holder is sure of it");
    // Leases are per key: another part of the outbox can be held elsewhere at the same time.
    let other = two.try_relay_lease(1).await.unwrap().expect("another key");

    // Released: the next node takes it at once, no expiry to wait for.
    held.release().await.unwrap();
    let mut taken = two.try_relay_lease(0).await.unwrap().expect("taken over");
    taken.confirm().await.unwrap();
    assert!(one.try_relay_lease(0).await.unwrap().is_none());
    assert!(one.try_relay_lease(1).await.unwrap().is_none());
    other.release().await.unwrap();
    assert!(one.try_relay_lease(1).await.unwrap().is_some());
    // Dropped without a release: free again once the store sees the session or file end.
    drop(taken);
    eventually(WAIT, "a dropped lease is freed", || async {
        two.try_relay_lease(0).await.unwrap().map(|_| ())
    })
    .await;
}

async fn nodes_starting_together_agree_on_one_jwt_secret(backend: Backend) {
    let one = backend.open().await;
    let two = backend.open().await;
    let (a, b) = tokio::join!(
        one.agree_jwt_secret("candidate-of-node-one"),
        two.agree_jwt_secret("candidate-of-node-two"),
    );
    let agreed = a.unwrap();
    assert_eq!(agreed, b.unwrap());
    assert!(["candidate-of-node-one", "candidate-of-node-two"].contains(&agreed.as_str()));
    // Later candidates never replace it.
    let three = backend.open().await;
    assert_eq!(three.agree_jwt_secret("late").await.unwrap(), agreed);
}

async fn concurrent_messages_from_two_nodes_commit_in_id_order(backend: Backend) {
    const SENDS: usize = 32;
    let nodes = [backend.open().await, backend.open().await];
    let alice = add_user(&nodes[0], "alice").await;
    let bob = add_user(&nodes[1], "bob").await;
    let room = nodes[0]
        .create_room("busy", alice.id, &[bob.id], 5)
        .await
        .unwrap();

    // A reader that, like the socket feed, only ever asks for ids after the last it saw: it
    // misses a message for good if a smaller id commits after a larger one.
    let reader = {
        let store = nodes[1].clone();
        tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            while seen.len() < SENDS {
                let after = seen.last().copied().unwrap_or(0);
                let next = store
                    .messages(room.id, alice.id, page(100, None, Some(after)))
                    .await
                    .unwrap();
                seen.extend(next.iter().map(|m| m.id));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            seen
        })
    };
    let sends: Vec<_> = (0..SENDS)
        .map(|n| {
            let store = nodes[n % 2].clone();
            let sender = if n % 2 == 0 { alice.id } else { bob.id };
            tokio::spawn(async move {
                store
                    .post_message(room.id, sender, &format!("message {n}"), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut posted = Vec::new();
    for send in sends {
        posted.push(send.await.unwrap());
    }
    let ids: HashSet<i64> = posted.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), SENDS, "every message got its own id");

    let seen = tokio::time::timeout(WAIT, reader)
        .await
        .expect("the after-cursor reader saw every message (none committed out of order)")
        .unwrap();
    assert_eq!(seen.len(), SENDS);
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), ids);

    let history = nodes[0]
        .messages(room.id, bob.id, page(100, None, None))
        .await
        .unwrap();
    let mut contents: Vec<&str> = history.iter().map(|m| m.content.as_str()).collect();
    contents.sort();
    let mut expected: Vec<String> = (0..SENDS).map(|n| format!("message {n}")).collect();
    expected.sort();
    assert_eq!(contents, expected, "each message stored exactly once");

    // The outbox holds one event per message, in message id order.
    let events = drain_outbox(&nodes[1]).await;
    let event_ids: Vec<i64> = events
        .iter()
        .map(|e| e.id.expect("a message event"))
        .collect();
    assert_eq!(event_ids, seen);
}

async fn concurrent_joins_from_two_nodes_never_exceed_the_cap(backend: Backend) {
    const CAP: usize = 5;
    const JOINERS: usize = 20;
    let nodes = [backend.open().await, backend.open().await];
    let admin = add_user(&nodes[0], "admin").await;
    let mut joiners = Vec::new();
    for n in 0..JOINERS {
        joiners.push(add_user(&nodes[n % 2], &format!("joiner{n}")).await);
    }
    let room = nodes[0]
        .create_room("popular", admin.id, &[], CAP)
        .await
        .unwrap();

    let joins: Vec<_> = joiners
        .iter()
        .enumerate()
        .map(|(n, user)| {
            let store = nodes[n % 2].clone();
            let user = user.id;
            tokio::spawn(async move { store.join_room(room.id, user, CAP).await })
        })
        .collect();
    let mut admitted = Vec::new();
    for join in joins {
        match join.await.unwrap() {
            Ok(room) => {
                assert!(room.members.len() <= CAP, "{} members", room.members.len());
                admitted.push(room);
            }
            Err(StoreError::RoomFull) => {}
            Err(other) => panic!("unexpected join error: {other:?}"),
        }
    }
    assert_eq!(admitted.len(), CAP - 1, "the admin holds the first seat");
    let room = nodes[1].room(room.id).await.unwrap().unwrap();
    assert_eq!(room.members.len(), CAP);
    assert_eq!(room.members[0].id, admin.id);
    let events = drain_outbox(&nodes[0]).await;
    assert_eq!(events.len(), CAP - 1, "one notice per admitted member");
    assert!(events.iter().all(|e| e.kind == EventKind::MemberJoined));
}

/// What only a shared server can show: other nodes' commits, migrations run by several nodes
/// at once, and the notification connection.
#[cfg(feature = "postgres")]
mod postgres_only {
    use std::time::Duration;

    use std::sync::Arc;

    use chatnode::store::Store;
    use futures_util::FutureExt;

    use super::add_user;
    use crate::backends::{fresh_database, FreshDatabase};
    use crate::helpers::{eventually, WAIT};

    async fn open(database: &FreshDatabase) -> Arc<dyn Store> {
        tokio::time::timeout(WAIT, chatnode::store::open(&database.url))
            .await
            .expect("the store opens in time")
            .expect("the store opens")
    }

    async fn connections(db: &tokio_postgres::Client, listening: bool) -> Vec<i32> {
        db.query(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND ($1 = false OR query = 'LISTEN chatnode_outbox')",
            &[&listening],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: set CHATNODE_TEST_DATABASE_URL"]
    async fn nodes_starting_together_migrate_once() {
        let database = fresh_database().await;
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = database.url.clone();
                tokio::spawn(async move { chatnode::store::open(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            let opened = tokio::time::timeout(WAIT, open)
                .await
                .expect("opens in time");
            stores.push(opened.unwrap().expect("every node starts"));
        }
        let db = database.connect().await;
        let applied: Vec<String> = db
            .query("SELECT name FROM schema_migrations ORDER BY name", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/postgres"))
            .unwrap()
            .count();
        assert_eq!(applied.len(), files, "{applied:?}");
        assert_eq!(applied[0], "0001_init");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: set CHATNODE_TEST_DATABASE_URL"]
    async fn a_commit_on_one_node_wakes_the_others_even_after_a_reconnect() {
        let database = fresh_database().await;
        let db = database.connect().await;
        let writer = open(&database).await;
        let watcher = open(&database).await;
        let signal = watcher.outbox_signal();
        // The first wake-up comes once the watcher listens (it may have missed commits).
        tokio::time::timeout(WAIT, signal.notified())
            .await
            .expect("listening wakes the relay once");

        let alice = add_user(&writer, "alice").await;
        let room = writer.create_room("r", alice.id, &[], 5).await.unwrap();
        writer
            .post_message(room.id, alice.id, "one", None)
            .await
            .unwrap();
        tokio::time::timeout(WAIT, signal.notified())
            .await
            .expect("another node's commit wakes this one");

        // Kill both listening sessions; each store connects and listens again.
        let before = connections(&db, true).await;
        assert_eq!(before.len(), 2, "one listener per store: {before:?}");
        for pid in &before {
            db.execute("SELECT pg_terminate_backend($1)", &[pid])
                .await
                .unwrap();
        }
        eventually(WAIT, "both stores listen again", || async {
            let now = connections(&db, true).await;
            (now.len() == 2 && now.iter().all(|pid| !before.contains(pid))).then_some(())
        })
        .await;
        tokio::time::timeout(WAIT, signal.notified())
            .await
            .expect("listening again wakes the relay");
        // Nothing else is pending now, so the next wake-up can only be the notification.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = signal.notified().now_or_never();
        writer
            .join_room(room.id, add_user(&writer, "bob").await.id, 5)
            .await
            .unwrap();
        tokio::time::timeout(WAIT, signal.notified())
            .await
            .expect("notifications arrive after the reconnect");
    }

    /// The lease is a session advisory lock: when its session dies (here killed by the
    /// server, as when the holder's process dies) another node takes it at once, and the
    /// old holder learns it is no longer sure before it publishes again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: set CHATNODE_TEST_DATABASE_URL"]
    async fn a_relay_lease_whose_session_dies_is_lost_and_taken_over_at_once() {
        let database = fresh_database().await;
        let db = database.connect().await;
        let (one, two) = (open(&database).await, open(&database).await);
        let mut held = one.try_relay_lease(0).await.unwrap().expect("a free lease");
        assert!(two.try_relay_lease(0).await.unwrap().is_none());
        let holders: Vec<i32> = db
            .query(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(holders.len(), 1, "{holders:?}");
        db.execute("SELECT pg_terminate_backend($1)", &[&holders[0]])
            .await
            .unwrap();
        eventually(WAIT, "the lease is free again", || async {
            two.try_relay_lease(0).await.unwrap().map(|_| ())
        })
        .await;
        assert!(
            held.confirm().await.is_err(),
            "the old holder is no longer sure of its lease"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: set CHATNODE_TEST_DATABASE_URL"]
    async fn dropping_a_store_closes_its_connections() {
        let database = fresh_database().await;
        let db = database.connect().await;
        let store = open(&database).await;
        add_user(&store, "alice").await;
        eventually(WAIT, "the store listens", || async {
            (connections(&db, true).await.len() == 1).then_some(())
        })
        .await;
        drop(store);
        eventually(WAIT, "every connection of the store is closed", || async {
            connections(&db, false).await.is_empty().then_some(())
        })
        .await;
    }
}

async fn a_token_user_is_read_with_its_revocation(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let now = chrono::Utc::now().timestamp();
    let (user, revoked) = store
        .token_user(alice.id, "access-1", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (user.id, user.email.as_str(), revoked),
        (alice.id, alice.email.as_str(), TokenStanding::Live)
    );
    store.revoke_token("access-1", now + 3600).await.unwrap();
    let (_, revoked) = store
        .token_user(alice.id, "access-1", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked, TokenStanding::Revoked);
    let (_, revoked) = store
        .token_user(alice.id, "access-2", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        revoked,
        TokenStanding::Live,
        "only the revoked id is refused"
    );
    assert!(store
        .token_user(alice.id + 1000, "access-2", now)
        .await
        .unwrap()
        .is_none());
}

async fn the_outbox_depth_counts_waiting_events_and_dates_the_oldest(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let room = store.create_room("r", alice.id, &[], 5).await.unwrap();
    drain_outbox(&store).await;
    let empty = store.outbox_depth().await.unwrap();
    assert_eq!((empty.rows, empty.oldest_at), (0, None));
    let first = store
        .post_message(room.id, alice.id, "one", None)
        .await
        .unwrap();
    store
        .post_message(room.id, alice.id, "two", None)
        .await
        .unwrap();
    let waiting = store.outbox_depth().await.unwrap();
    assert_eq!(waiting.rows, 2);
    let oldest = waiting.oldest_at.expect("a date");
    assert_timestamp(&oldest);
    let parse = |at: &str| chrono::DateTime::parse_from_rfc3339(at).unwrap();
    let apart = (parse(&oldest) - parse(&first.created_at))
        .num_milliseconds()
        .abs();
    assert!(
        apart < 1_000,
        "{oldest} is the first message's time, {}",
        first.created_at
    );
    drain_outbox(&store).await;
    assert_eq!(store.outbox_depth().await.unwrap().rows, 0);
}
