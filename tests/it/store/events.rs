//! The store's event-log contract, on every backend: every durable change to a room gets the
//! room's next position in commit order, whichever node writes; the outbox carries the same
//! positions; a page reads after a position; pruning raises the floor, and a position below
//! the floor or beyond the newest is a gap, never a short page.

use std::sync::Arc;

use chatnode::domain::conversations::{ReceiptKind, ReceiptMark};
use chatnode::domain::events::EventKind;
use chatnode::store::events::{LogPage, ReplayGap};
use chatnode::store::{Store, StoreError};

use super::{add_user, drain_outbox, Backend, TEST_LIMIT};

backend_suite!(
    every_change_gets_the_rooms_next_position_in_commit_order_from_two_nodes,
    pruning_raises_the_floor_and_positions_outside_the_log_are_gaps,
);

async fn page(store: &Arc<dyn Store>, room: i64, user: i64, after: i64) -> LogPage {
    store
        .events_after(room, user, after, 1000)
        .await
        .unwrap()
        .expect("the log replays from here")
}

fn seqs(page: &LogPage) -> Vec<i64> {
    page.events.iter().map(|e| e.seq.expect("a seq")).collect()
}

async fn every_change_gets_the_rooms_next_position_in_commit_order_from_two_nodes(
    backend: Backend,
) {
    const SENDS: usize = 24;
    let nodes = [backend.open().await, backend.open().await];
    let alice = add_user(&nodes[0], "alice").await;
    let bob = add_user(&nodes[1], "bob").await;
    let room = nodes[0].create_room("log", alice.id, &[], 5).await.unwrap();
    let other = nodes[0]
        .create_room("other", alice.id, &[], 5)
        .await
        .unwrap();
    nodes[1].join_room(room.id, bob.id, 5).await.unwrap();
    let sends: Vec<_> = (0..SENDS)
        .map(|n| {
            let (store, sender) = (nodes[n % 2].clone(), [alice.id, bob.id][n % 2]);
            tokio::spawn(async move {
                store
                    .post_message(room.id, sender, &format!("m{n}"), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut newest = 0;
    for send in sends {
        newest = newest.max(send.await.unwrap().id);
    }
    let read = ReceiptMark {
        room: room.id,
        user: bob.id,
        kind: ReceiptKind::Read,
        upto: newest,
    };
    nodes[1].apply_receipts(vec![read]).await.unwrap();
    nodes[0]
        .post_message(other.id, alice.id, "elsewhere", None)
        .await
        .unwrap();

    let log = page(&nodes[1], room.id, alice.id, 0).await;
    let total = SENDS as i64 + 2;
    assert_eq!(
        seqs(&log),
        (1..=total).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    assert_eq!(log.last_seq, total);
    assert_eq!(log.events[0].kind, EventKind::MemberJoined);
    assert_eq!(log.events.last().unwrap().kind, EventKind::Read);
    let ids: Vec<i64> = log.events.iter().filter_map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "messages in id order: {ids:?}"
    );
    assert_eq!(seqs(&page(&nodes[0], other.id, alice.id, 0).await), [1]);
    // The outbox carries the same positions, in order within each room.
    let published: Vec<(i64, i64)> = drain_outbox(&nodes[0])
        .await
        .iter()
        .filter_map(|e| Some((e.chat_id, e.seq?)))
        .collect();
    let in_room: Vec<i64> = published
        .iter()
        .filter(|(r, _)| *r == room.id)
        .map(|p| p.1)
        .collect();
    assert_eq!(in_room, (1..=total).collect::<Vec<_>>());
    let tail = page(&nodes[0], room.id, alice.id, total - 3).await;
    assert_eq!(seqs(&tail), [total - 2, total - 1, total]);
    let limited = nodes[0]
        .events_after(room.id, alice.id, 0, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&limited), [1, 2, 3, 4, 5]);
}

async fn pruning_raises_the_floor_and_positions_outside_the_log_are_gaps(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let eve = add_user(&store, "eve").await;
    let room = store.create_room("old", alice.id, &[], 5).await.unwrap();
    for n in 0..3 {
        store
            .post_message(room.id, alice.id, &format!("m{n}"), None)
            .await
            .unwrap();
    }
    let none_yet = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(store.prune_events(none_yet).await.unwrap(), 0);
    assert_eq!(seqs(&page(&store, room.id, alice.id, 0).await), [1, 2, 3]);

    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(store.prune_events(later).await.unwrap(), 3);
    let gap = store.events_after(room.id, alice.id, 0, 10).await.unwrap();
    assert_eq!(gap, Err(ReplayGap::Pruned { floor: 3 }));
    let caught_up = page(&store, room.id, alice.id, 3).await;
    assert!(caught_up.events.is_empty());
    assert_eq!(caught_up.last_seq, 3);
    let ahead = store.events_after(room.id, alice.id, 4, 10).await.unwrap();
    assert_eq!(ahead, Err(ReplayGap::Ahead { last_seq: 3 }));
    // Positions go on after a prune; messages stay in history.
    store
        .post_message(room.id, alice.id, "new", None)
        .await
        .unwrap();
    assert_eq!(seqs(&page(&store, room.id, alice.id, 3).await), [4]);
    let history = store
        .messages(room.id, alice.id, super::page(10, None, None))
        .await
        .unwrap();
    assert_eq!(history.len(), 4);

    let stranger = store
        .events_after(room.id, eve.id, 0, 10)
        .await
        .unwrap_err();
    assert!(matches!(stranger, StoreError::NotMember), "{stranger:?}");
    let missing = store
        .events_after(room.id + 99, alice.id, 0, 10)
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::RoomNotFound), "{missing:?}");
}
