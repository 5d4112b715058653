//! SQLite behind the [`Store`](crate::store::Store) seam.
//!
//! rusqlite is blocking, so it never runs on the async workers: one writer thread owns the
//! only write connection and commits queued writes in groups (each write in its own savepoint,
//! answered only after the shared COMMIT), and reads run in `spawn_blocking` on a small pool of
//! read-only connections that WAL lets proceed while the writer works.

mod admin;
mod conversations;
mod edits;
mod engine;
mod events;
mod lease;
mod presence;
mod queries;
mod reactions;
mod rows;

pub use engine::SqliteStore;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::engine::MIGRATIONS;
    use super::lease::lease_path;
    use super::SqliteStore;
    use crate::domain::values::{Email, PhoneNumber};
    use crate::store::{NewUser, Store, StoreError};

    #[test]
    fn every_sql_file_is_a_listed_migration_in_order() {
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(crate::store::migration_files("sqlite"), listed);
    }

    #[tokio::test]
    async fn a_commit_by_another_node_sharing_the_file_wakes_the_relay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let path = path.to_str().unwrap();
        let other_node = SqliteStore::open(path, 16).await.unwrap();
        let this_node = SqliteStore::open(path, 16).await.unwrap();
        let woken = this_node.outbox_signal();
        other_node
            .create_user(NewUser {
                email: Email::parse("a@example.com").unwrap(),
                username: "a".into(),
                phone_number: PhoneNumber::parse("+1 415-555-2671").unwrap(),
                first_name: String::new(),
                last_name: String::new(),
                password_hash: "x".into(),
            })
            .await
            .unwrap();
        // Without the watcher this node only hears of its own commits: this would time out.
        tokio::time::timeout(Duration::from_secs(10), woken.notified())
            .await
            .expect("the other node's commit wakes this node's relay");
    }

    #[tokio::test]
    async fn a_relay_lease_whose_lock_file_is_replaced_is_no_longer_sure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leased.db");
        let store = SqliteStore::open(path.to_str().unwrap(), 16).await.unwrap();
        let mut held = store.try_relay_lease(0).await.unwrap().unwrap();
        held.confirm().await.unwrap();
        // A new file under the lock's name could be locked by another node now.
        std::fs::remove_file(lease_path(&path, 0)).unwrap();
        assert!(held.confirm().await.is_err());
        assert!(store.try_relay_lease(0).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn client_writes_beyond_the_queue_bound_are_refused_and_relay_writes_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bounded.db");
        let store = Arc::new(SqliteStore::open(path.to_str().unwrap(), 1).await.unwrap());
        // Hold the writer thread inside a job, so the next write sits in the queue.
        let (started, writer_busy) = std::sync::mpsc::channel::<()>();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(move |_| {
                        started.send(()).unwrap();
                        let _ = held.recv();
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || writer_busy.recv().unwrap())
            .await
            .unwrap();
        let queued = tokio::spawn({
            let store = store.clone();
            async move { store.write(|_| Ok(1)).await }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.jobs.capacity() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the write never queued"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The queue is full: a client write is refused at once, a relay write waits for room.
        assert!(matches!(
            store.write(|_| Ok(2)).await,
            Err(StoreError::Overloaded)
        ));
        let internal = tokio::spawn({
            let store = store.clone();
            async move { store.outbox_delete(vec![1]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!internal.is_finished(), "the relay write waits for room");
        release.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        assert_eq!(queued.await.unwrap().unwrap(), 1);
        internal.await.unwrap().unwrap();
        // Once drained, writes are accepted again.
        assert_eq!(store.write(|_| Ok(3)).await.unwrap(), 3);
    }
}
