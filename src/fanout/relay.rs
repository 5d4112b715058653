//! The outbox relay: publishes stored events through the transport, in commit order, and
//! deletes them only once the transport has confirmed them. A broker outage or a crash
//! delays broadcasts; it never loses them.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::TaskError;
use crate::state::SharedState;
use crate::store::{RelayLease, StoreError};

/// Events published per round trip to the store.
const BATCH: u32 = 256;
/// Only one node's relay publishes at a time, which keeps every room in id order. The lease
/// is a lock its holder's death releases at once, so a survivor takes over promptly.
const LEASE_KEY: u32 = 0;
/// An idle relay looks again this often; it is also woken by the commits the store sees
/// (SQLite: its commit watcher, every node sharing the file included; PostgreSQL: NOTIFY).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Runs until cancelled; an error (store or transport) ends it and the supervisor restarts it.
pub async fn run(state: SharedState, token: CancellationToken) -> Result<(), TaskError> {
    // Not held once this run ends, however it ends.
    let _gauge = LeaseGauge(&state);
    let signal = state.store.outbox_signal();
    let mut lease: Option<Box<dyn RelayLease>> = None;
    // The delete of the last published batch runs while the next one is read and published,
    // so a commit is not on the relay's path; its rows are skipped until it is done.
    let mut deleting: Option<Deleting> = None;
    let outcome = loop {
        if token.is_cancelled() {
            break Ok(());
        }
        // Checked before every batch: a relay not sure of its lease publishes nothing more.
        let leased = match lease.as_mut() {
            Some(held) => {
                held.confirm().await.map_err(TaskError::LeaseLost)?;
                true
            }
            None => {
                lease = state
                    .store
                    .try_relay_lease(LEASE_KEY)
                    .await
                    .map_err(TaskError::Store)?;
                state.metrics.relay_lease_held(lease.is_some());
                lease.is_some()
            }
        };
        let in_flight = deleting.as_ref().map_or(&[][..], |d| &d.ids[..]);
        let mut batch = if leased {
            state
                .store
                .outbox_batch(BATCH + in_flight.len() as u32)
                .await
                .map_err(TaskError::Store)?
        } else {
            Vec::new()
        };
        batch.retain(|entry| !in_flight.contains(&entry.id));
        if batch.is_empty() {
            if let Some(previous) = deleting.take() {
                if let Err(e) = previous.finish().await {
                    break Err(e);
                }
                continue;
            }
            tokio::select! {
                _ = token.cancelled() => break Ok(()),
                _ = signal.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let ids: Vec<i64> = batch.iter().map(|entry| entry.id).collect();
        let events = batch.into_iter().map(|entry| entry.event).collect();
        if let Err(e) = state.transport.publish_batch(events).await {
            break Err(TaskError::Publish(e));
        }
        if let Some(previous) = deleting.take() {
            if let Err(e) = previous.finish().await {
                break Err(e);
            }
        }
        deleting = Some(Deleting::start(&state, ids));
    };
    // Published rows left in the outbox would be published again by the next relay.
    let outcome = match deleting.take() {
        Some(previous) => outcome.and(previous.finish().await),
        None => outcome,
    };
    // Released at once, so another relay need not wait for this session or file to close.
    if let Some(lease) = lease {
        if let Err(error) = lease.release().await {
            tracing::warn!(error = %error.chain(), "could not release the relay lease");
        }
    }
    outcome
}

/// Reports the lease as not held when dropped.
struct LeaseGauge<'a>(&'a SharedState);

impl Drop for LeaseGauge<'_> {
    fn drop(&mut self) {
        self.0.metrics.relay_lease_held(false);
    }
}

/// Published outbox rows being deleted.
struct Deleting {
    ids: Vec<i64>,
    task: JoinHandle<Result<(), StoreError>>,
}

impl Deleting {
    fn start(state: &SharedState, ids: Vec<i64>) -> Self {
        let store = state.store.clone();
        let deleted = ids.clone();
        Self {
            ids,
            task: tokio::spawn(async move { store.outbox_delete(deleted).await }),
        }
    }

    async fn finish(self) -> Result<(), TaskError> {
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TaskError::Clear(e)),
            Err(e) => Err(TaskError::ClearTask(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use async_trait::async_trait;
    use futures_util::StreamExt;

    use super::*;
    use crate::auth::hasher::Hasher;
    use crate::auth::Tokens;
    use crate::config::Config;
    use crate::domain::events::RoomEvent;
    use crate::domain::values::{Email, PhoneNumber};
    use crate::state::AppState;
    use crate::store::{self, NewUser, Store};
    use crate::transport::memory::MemoryTransport;
    use crate::transport::{EventStream, Transport, TransportError};

    /// Longest wait for anything the relay should do.
    const WAIT: Duration = Duration::from_secs(10);

    async fn node_state(dir: &Path, transport: Arc<dyn Transport>) -> SharedState {
        let config = Config::new(dir);
        let store = store::open(&config.database_url()).await.unwrap();
        let hasher = Hasher::start(&config.hashing).unwrap();
        let tokens = Tokens::new(b"relay-test-secret-0123456789abcdef");
        let shutdown = CancellationToken::new();
        Arc::new(AppState::new(
            config, store, transport, tokens, hasher, shutdown,
        ))
    }

    /// A room holding `count` stored messages, each with its outbox row; its id.
    async fn room_with_messages(store: &dyn Store, count: usize) -> i64 {
        let user = store
            .create_user(NewUser {
                email: Email::parse("relay@example.com").unwrap(),
                username: "relay".into(),
                phone_number: PhoneNumber::parse("+1 415-555-2671").unwrap(),
                first_name: "R".into(),
                last_name: "T".into(),
                password_hash: "unused".into(),
            })
            .await
            .unwrap();
        let room = store
            .create_room("relayed", user.id, &[], 10)
            .await
            .unwrap();
        for n in 0..count {
            store
                .post_message(room.id, user.id, &format!("m{n}"), None)
                .await
                .unwrap();
        }
        room.id
    }

    /// A node on the in-process bus (its data directory kept alive), a room with `count`
    /// messages waiting in the outbox, and the stream that room's events arrive on.
    async fn watched_room(count: usize) -> (tempfile::TempDir, SharedState, i64, EventStream) {
        let dir = tempfile::tempdir().unwrap();
        let transport = Arc::new(MemoryTransport::default());
        let state = node_state(dir.path(), transport.clone()).await;
        let room = room_with_messages(state.store.as_ref(), count).await;
        transport.subscribe(room).await.unwrap();
        let events = transport.events().await.unwrap();
        (dir, state, room, events)
    }

    /// The ids of the next `count` messages the stream gives (notices skipped).
    async fn next_message_ids(events: &mut EventStream, count: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(count);
        while ids.len() < count {
            let event = tokio::time::timeout(WAIT, events.next())
                .await
                .expect("the relay publishes")
                .expect("the stream goes on")
                .expect("an event");
            ids.extend(event.id);
        }
        ids
    }

    async fn outbox_len(store: &dyn Store) -> usize {
        store.outbox_batch(10_000).await.unwrap().len()
    }

    /// Waits (at most [`WAIT`]) until every outbox row is deleted.
    async fn outbox_cleared(store: &dyn Store) {
        let cleared = async {
            while outbox_len(store).await > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(WAIT, cleared)
            .await
            .expect("published rows are deleted");
    }

    #[tokio::test]
    async fn the_outbox_goes_out_in_id_order_across_batches_and_is_then_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let transport = Arc::new(MemoryTransport::default());
        let state = node_state(dir.path(), transport.clone()).await;
        let messages = 2 * BATCH as usize + 10;
        let room = room_with_messages(state.store.as_ref(), messages).await;
        transport.subscribe(room).await.unwrap();
        let mut events = transport.events().await.unwrap();

        let token = CancellationToken::new();
        let relay = tokio::spawn(run(state.clone(), token.clone()));
        let ids = next_message_ids(&mut events, messages).await;
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
        outbox_cleared(state.store.as_ref()).await;
        token.cancel();
        relay
            .await
            .unwrap()
            .expect("a cancelled relay ends cleanly");
    }

    #[tokio::test]
    async fn a_relay_without_the_lease_publishes_nothing_until_it_is_free() {
        let (_dir, state, _room, mut events) = watched_room(5).await;
        // Another node's relay, on the same database, holds the lease.
        let other = store::open(&state.config.database_url()).await.unwrap();
        let held = other
            .try_relay_lease(LEASE_KEY)
            .await
            .unwrap()
            .expect("free");

        let token = CancellationToken::new();
        let relay = tokio::spawn(run(state.clone(), token.clone()));
        let quiet = tokio::time::timeout(2 * IDLE_POLL, events.next()).await;
        assert!(quiet.is_err(), "published without the lease");
        let pending = outbox_len(state.store.as_ref()).await;
        assert!(pending >= 5, "{pending} rows left");
        held.release().await.unwrap();
        assert_eq!(next_message_ids(&mut events, 5).await.len(), 5);
        token.cancel();
        relay.await.unwrap().unwrap();
    }

    /// Takes nothing: every publish fails as a broker outage would.
    struct Down;

    #[async_trait]
    impl Transport for Down {
        async fn publish(&self, _: RoomEvent) -> Result<(), TransportError> {
            Err(TransportError::Closed)
        }
        async fn signal(&self, _: RoomEvent) -> Result<(), TransportError> {
            Err(TransportError::Closed)
        }
        async fn subscribe(&self, _: i64) -> Result<(), TransportError> {
            Ok(())
        }
        fn unsubscribe(&self, _: i64) {}
        async fn events(&self) -> Result<EventStream, TransportError> {
            Err(TransportError::Closed)
        }
        fn health(&self) -> Result<&'static str, String> {
            Err("down".into())
        }
    }

    #[tokio::test]
    async fn a_failed_publish_ends_the_run_with_its_cause_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let state = node_state(dir.path(), Arc::new(Down)).await;
        room_with_messages(state.store.as_ref(), 3).await;
        let before = outbox_len(state.store.as_ref()).await;
        let outcome = tokio::time::timeout(WAIT, run(state.clone(), CancellationToken::new()))
            .await
            .expect("the run ends");
        assert!(
            matches!(outcome, Err(TaskError::Publish(TransportError::Closed))),
            "{outcome:?}"
        );
        assert_eq!(outbox_len(state.store.as_ref()).await, before);
        // The lease went with the run: the restarted relay (or another node's) can take it.
        assert!(state
            .store
            .try_relay_lease(LEASE_KEY)
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn a_failed_delete_ends_the_run_and_keeps_the_published_rows_for_the_next() {
        let (dir, state, _room, mut events) = watched_room(3).await;
        // The database refuses every delete from the outbox, as a failing disk would.
        let refusing = rusqlite::Connection::open(dir.path().join("chatnode.db")).unwrap();
        refusing
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE DELETE ON outbox \
                 BEGIN SELECT RAISE(ABORT, 'no deletes today'); END;",
            )
            .unwrap();

        let outcome = tokio::time::timeout(WAIT, run(state.clone(), CancellationToken::new()))
            .await
            .expect("the run ends");
        assert!(matches!(outcome, Err(TaskError::Clear(_))), "{outcome:?}");
        let published = next_message_ids(&mut events, 3).await;
        // Published but not cleared: the rows stay, so nothing is lost if this node dies now.
        assert_eq!(outbox_len(state.store.as_ref()).await, 3);

        refusing.execute_batch("DROP TRIGGER refuse;").unwrap();
        let token = CancellationToken::new();
        let restarted = tokio::spawn(run(state.clone(), token.clone()));
        // At least once: the next run publishes them again (subscribers drop repeats by id).
        assert_eq!(next_message_ids(&mut events, 3).await, published);
        outbox_cleared(state.store.as_ref()).await;
        token.cancel();
        restarted.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_lost_lease_ends_the_run_and_the_next_relay_publishes_what_followed() {
        let (dir, state, room, mut events) = watched_room(3).await;
        let relay = tokio::spawn(run(state.clone(), CancellationToken::new()));
        next_message_ids(&mut events, 3).await;
        outbox_cleared(state.store.as_ref()).await;

        // Whoever opens the lock file now locks another one: this relay can no longer be
        // sure it is the only one, and stops before its next batch (an idle one too).
        std::fs::remove_file(dir.path().join("chatnode.db.relay-0.lock")).unwrap();
        let outcome = tokio::time::timeout(WAIT, relay)
            .await
            .expect("the run ends")
            .unwrap();
        assert!(
            matches!(outcome, Err(TaskError::LeaseLost(_))),
            "{outcome:?}"
        );

        let (sender, _) = state
            .store
            .credentials("relay@example.com")
            .await
            .unwrap()
            .unwrap();
        for text in ["after", "the loss"] {
            let posted = state.store.post_message(room, sender.id, text, None).await;
            posted.unwrap();
        }
        let token = CancellationToken::new();
        let next = tokio::spawn(run(state.clone(), token.clone()));
        assert_eq!(next_message_ids(&mut events, 2).await.len(), 2);
        outbox_cleared(state.store.as_ref()).await;
        token.cancel();
        next.await.unwrap().unwrap();
    }
}
