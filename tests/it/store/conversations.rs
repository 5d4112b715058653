//! The store's conversation contract, on every backend: direct rooms, blocking, the chat
//! list and receipt positions.

use std::sync::Arc;

use chatnode::domain::conversations::{ListPage, ReceiptKind, ReceiptMark, RoomKind, UserLookup};
use chatnode::domain::events::EventKind;
use chatnode::store::{Store, StoreError};

use super::{add_user, drain_outbox, Backend, TEST_LIMIT};

backend_suite!(
    a_direct_room_is_one_per_pair_even_when_both_ask_at_once_on_two_nodes,
    blocking_refuses_direct_rooms_messages_and_invitations_both_ways,
    receipt_positions_only_move_forward_and_each_move_queues_one_event,
    the_chat_list_runs_newest_activity_first_in_pages_with_unread_counts,
    people_are_found_by_exact_email_or_phone_only,
);

fn read(room: i64, user: i64, upto: i64) -> ReceiptMark {
    ReceiptMark {
        room,
        user,
        kind: ReceiptKind::Read,
        upto,
    }
}

async fn a_direct_room_is_one_per_pair_even_when_both_ask_at_once_on_two_nodes(backend: Backend) {
    let (one, two) = (backend.open().await, backend.open().await);
    let alice = add_user(&one, "alice").await;
    let bob = add_user(&one, "bob").await;
    let (a, b) = tokio::join!(
        one.direct_room(alice.id, bob.id),
        two.direct_room(bob.id, alice.id)
    );
    let ((a, a_created), (b, b_created)) = (a.unwrap(), b.unwrap());
    assert_eq!(a.id, b.id, "one room for the pair");
    assert!(a_created ^ b_created, "exactly one request made it");
    assert_eq!(a.kind, RoomKind::Direct);
    let mut members: Vec<i64> = a.members.iter().map(|m| m.id).collect();
    members.sort_unstable();
    assert_eq!(members, vec![alice.id, bob.id]);
    let (again, created) = one.direct_room(alice.id, bob.id).await.unwrap();
    assert_eq!((again.id, created), (a.id, false));

    let carol = add_user(&one, "carol").await;
    assert!(matches!(
        one.join_room(a.id, carol.id, 10).await,
        Err(StoreError::DirectRoom)
    ));
    assert!(matches!(
        one.leave_room(a.id, alice.id).await,
        Err(StoreError::DirectRoom)
    ));
    assert!(matches!(
        one.direct_room(alice.id, 999_999).await,
        Err(StoreError::UserNotFound)
    ));
}

async fn blocking_refuses_direct_rooms_messages_and_invitations_both_ways(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let (room, _) = store.direct_room(alice.id, bob.id).await.unwrap();
    let group = store
        .create_room("group", alice.id, &[bob.id], 10)
        .await
        .unwrap();

    store.set_block(alice.id, bob.id, true).await.unwrap();
    store.set_block(alice.id, bob.id, true).await.unwrap();
    let blocked: Vec<i64> = store
        .blocked_users(alice.id)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(blocked, vec![bob.id]);
    for (from, to) in [(bob.id, alice.id), (alice.id, bob.id)] {
        assert!(matches!(
            store.post_message(room.id, from, "hi", None).await,
            Err(StoreError::Blocked)
        ));
        assert!(matches!(
            store.direct_room(from, to).await,
            Err(StoreError::Blocked)
        ));
    }
    assert!(matches!(
        store.create_room("again", bob.id, &[alice.id], 10).await,
        Err(StoreError::Blocked)
    ));
    // A group they share works as before.
    store
        .post_message(group.id, bob.id, "still here", None)
        .await
        .unwrap();

    store.set_block(alice.id, bob.id, false).await.unwrap();
    assert!(store.blocked_users(alice.id).await.unwrap().is_empty());
    store
        .post_message(room.id, bob.id, "friends again", None)
        .await
        .unwrap();
    assert!(matches!(
        store.set_block(alice.id, 999_999, true).await,
        Err(StoreError::UserNotFound)
    ));
}

async fn receipt_positions_only_move_forward_and_each_move_queues_one_event(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let room = store
        .create_room("r", alice.id, &[bob.id], 10)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        ids.push(
            store
                .post_message(room.id, alice.id, text, None)
                .await
                .unwrap()
                .id,
        );
    }
    drain_outbox(&store).await;

    let delivered = ReceiptMark {
        kind: ReceiptKind::Delivered,
        ..read(room.id, bob.id, ids[2])
    };
    let after = store
        .apply_receipts(vec![read(room.id, bob.id, ids[1]), delivered])
        .await
        .unwrap();
    assert_eq!(after, vec![ids[1], ids[2]]);
    let after = store
        .apply_receipts(vec![read(room.id, bob.id, ids[0])])
        .await
        .unwrap();
    assert_eq!(after, vec![ids[1]], "a lower mark leaves the read position");

    let events = drain_outbox(&store).await;
    let kinds: Vec<(EventKind, Option<i64>)> = events.iter().map(|e| (e.kind, e.upto)).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Read, Some(ids[1])),
            (EventKind::Delivered, Some(ids[2]))
        ]
    );
    assert!(events.iter().all(|e| e.user_id == Some(bob.id)));

    let positions = store.positions(room.id).await.unwrap();
    let bobs = positions
        .positions
        .iter()
        .find(|p| p.user_id == bob.id)
        .unwrap();
    assert_eq!((bobs.delivered_upto, bobs.read_upto), (ids[2], ids[1]));
    assert_eq!(positions.state_of(ids[1], alice.id).read_count, 1);
    assert_eq!(positions.state_of(ids[2], alice.id).read_count, 0);
    assert_eq!(store.unread_count(room.id, bob.id).await.unwrap(), 1);

    let receipts = store
        .message_receipts(room.id, alice.id, ids[1])
        .await
        .unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].user_id, bob.id);
    assert!(receipts[0].delivered_at.is_some() && receipts[0].read_at.is_some());
    let receipts = store
        .message_receipts(room.id, alice.id, ids[2])
        .await
        .unwrap();
    assert!(receipts[0].delivered_at.is_some() && receipts[0].read_at.is_none());
    assert!(matches!(
        store.message_receipts(room.id, alice.id, 999_999).await,
        Err(StoreError::MessageNotFound)
    ));
    // A mark for someone not in the room changes nothing.
    let carol = add_user(&store, "carol").await;
    assert_eq!(
        store
            .apply_receipts(vec![read(room.id, carol.id, ids[2])])
            .await
            .unwrap(),
        vec![0]
    );
    assert!(drain_outbox(&store).await.is_empty());
}

async fn the_chat_list_runs_newest_activity_first_in_pages_with_unread_counts(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let mut rooms = Vec::new();
    for name in ["first", "second", "third"] {
        rooms.push(
            store
                .create_room(name, alice.id, &[bob.id], 10)
                .await
                .unwrap()
                .id,
        );
    }
    // The oldest room gets news: it comes first.
    let news = store
        .post_message(rooms[0], alice.id, "news", None)
        .await
        .unwrap();
    store
        .post_message(rooms[0], bob.id, "mine", None)
        .await
        .unwrap();
    let page = |after| ListPage { limit: 2, after };
    let first = store.chat_list(bob.id, page(None)).await.unwrap();
    let order: Vec<i64> = first.iter().map(|s| s.room.id).collect();
    assert_eq!(order, vec![rooms[0], rooms[2]]);
    assert_eq!(first[0].unread_count, 1, "bob's own message does not count");
    assert_eq!(first[0].last_message.as_ref().unwrap().content, "mine");
    assert_eq!(first[0].room.member_count, 2);
    let last = first.last().unwrap();
    let cursor = chatnode::domain::conversations::ListCursor {
        activity: last.activity,
        room: last.room.id,
    };
    let second = store.chat_list(bob.id, page(Some(cursor))).await.unwrap();
    let order: Vec<i64> = second.iter().map(|s| s.room.id).collect();
    assert_eq!(order, vec![rooms[1]]);
    assert!(second[0].last_message.is_none());

    store
        .apply_receipts(vec![read(rooms[0], bob.id, news.id)])
        .await
        .unwrap();
    let first = store.chat_list(bob.id, page(None)).await.unwrap();
    assert_eq!((first[0].unread_count, first[0].last_read_id), (0, news.id));
}

async fn people_are_found_by_exact_email_or_phone_only(backend: Backend) {
    let store: Arc<dyn Store> = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let found = |lookup| {
        let store = store.clone();
        async move { store.find_user(lookup).await.unwrap().map(|u| u.id) }
    };
    let email = alice.email.to_uppercase();
    assert_eq!(found(UserLookup::Email(email)).await, Some(alice.id));
    let prefix = alice.email[..3].to_string();
    assert_eq!(found(UserLookup::Email(prefix)).await, None);
    let phone = alice.phone_number.clone();
    assert_eq!(found(UserLookup::Phone(phone)).await, Some(alice.id));
    assert_eq!(found(UserLookup::Phone("+1 415".into())).await, None);
}
