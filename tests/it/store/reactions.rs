//! The store's reaction contract, on every backend: one reaction per member per message,
//! replaced by the next; concurrent reactions from two nodes all count and each event carries
//! the counts its commit left, in `seq` order; members and live messages only; deleting the
//! message for everyone removes its reactions; a block in a direct room stops them.

use std::sync::Arc;

use chatnode::domain::events::EventKind;
use chatnode::domain::{ReactionCount, Reactions};
use chatnode::store::edits::ChangeRule;
use chatnode::store::{Store, StoreError, User};

use super::{add_user, drain_outbox, Backend, TEST_LIMIT};

backend_suite!(
    reactions_from_two_nodes_replace_per_member_and_count_in_commit_order,
    only_members_react_to_live_messages_and_a_delete_removes_reactions,
    a_block_in_a_direct_room_refuses_reactions_but_not_taking_one_back,
);

const THUMBS: &str = "\u{1F44D}";
const HEART: &str = "\u{2764}\u{FE0F}";

fn count(emoji: &str, count: i64) -> ReactionCount {
    ReactionCount {
        emoji: emoji.to_string(),
        count,
    }
}

async fn members(store: &Arc<dyn Store>, room: i64, n: usize) -> Vec<User> {
    let mut users = Vec::new();
    for i in 0..n {
        let user = add_user(store, &format!("member{i}")).await;
        store.join_room(room, user.id, 64).await.unwrap();
        users.push(user);
    }
    users
}

async fn reactions_from_two_nodes_replace_per_member_and_count_in_commit_order(backend: Backend) {
    const MEMBERS: usize = 12;
    let nodes = [backend.open().await, backend.open().await];
    let alice = add_user(&nodes[0], "alice").await;
    let room = nodes[0].create_room("r", alice.id, &[], 64).await.unwrap();
    let message = nodes[0]
        .post_message(room.id, alice.id, "hi", None)
        .await
        .unwrap();
    let users = members(&nodes[0], room.id, MEMBERS).await;
    drain_outbox(&nodes[0]).await;

    let reacting: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(n, user)| {
            let (store, user) = (nodes[n % 2].clone(), user.id);
            tokio::spawn(async move {
                store
                    .react(room.id, user, message.id, Some(THUMBS))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in reacting {
        task.await.unwrap();
    }
    let events = drain_outbox(&nodes[1]).await;
    assert_eq!(events.len(), MEMBERS);
    // Each event carries the count its commit left: 1, 2, ... in seq order.
    let mut seqs = Vec::new();
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event.kind, EventKind::Reaction);
        assert_eq!(event.id, Some(message.id));
        assert_eq!(event.reactions, Some(vec![count(THUMBS, n as i64 + 1)]));
        seqs.push(event.seq.expect("a reaction is logged"));
    }
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");

    let replaced = nodes[1]
        .react(room.id, users[0].id, message.id, Some(HEART))
        .await
        .unwrap();
    assert_eq!(replaced.mine.as_deref(), Some(HEART));
    let thumbs = MEMBERS as i64 - 1;
    assert_eq!(
        replaced.counts,
        vec![count(THUMBS, thumbs), count(HEART, 1)]
    );
    let same = nodes[0]
        .react(room.id, users[0].id, message.id, Some(HEART))
        .await
        .unwrap();
    assert_eq!(same.counts, replaced.counts);
    let removed = nodes[0]
        .react(room.id, users[1].id, message.id, None)
        .await
        .unwrap();
    assert_eq!(removed.mine, None);
    let events = drain_outbox(&nodes[0]).await;
    assert_eq!(
        events.len(),
        2,
        "putting the same emoji again changes nothing"
    );
    assert_eq!(events[1].emoji, None);
    // A page gives each viewer their own: users[0] kept the heart, users[1] has none now.
    let page = |viewer: i64| {
        let store = nodes[1].clone();
        async move {
            store
                .reaction_counts(room.id, viewer, vec![message.id, message.id + 1000])
                .await
                .unwrap()
        }
    };
    let seen = page(users[0].id).await;
    assert_eq!(
        seen,
        vec![Reactions {
            message_id: message.id,
            counts: removed.counts.clone(),
            mine: Some(HEART.to_string())
        }]
    );
    assert_eq!(page(users[1].id).await[0].mine, None);
}

async fn only_members_react_to_live_messages_and_a_delete_removes_reactions(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let outsider = add_user(&store, "outsider").await;
    let room = store.create_room("r", alice.id, &[], 8).await.unwrap();
    let other = store.create_room("o", alice.id, &[], 8).await.unwrap();
    let message = store
        .post_message(room.id, alice.id, "hi", None)
        .await
        .unwrap();
    let elsewhere = store
        .post_message(other.id, alice.id, "o", None)
        .await
        .unwrap();
    let react = |room: i64, user: i64, id: i64| {
        let store = store.clone();
        async move { store.react(room, user, id, Some(THUMBS)).await.err() }
    };
    assert!(matches!(
        react(room.id, outsider.id, message.id).await,
        Some(StoreError::NotMember)
    ));
    assert!(matches!(
        react(room.id + 99, alice.id, message.id).await,
        Some(StoreError::RoomNotFound)
    ));
    assert!(matches!(
        react(room.id, alice.id, elsewhere.id).await,
        Some(StoreError::MessageNotFound)
    ));
    assert!(react(room.id, alice.id, message.id).await.is_none());

    let rule = ChangeRule {
        window_secs: 60,
        admin_any_time: true,
    };
    store
        .delete_message(room.id, alice.id, message.id, rule)
        .await
        .unwrap();
    let counts = store
        .reaction_counts(room.id, alice.id, vec![message.id])
        .await
        .unwrap();
    assert!(counts.is_empty(), "{counts:?}");
    assert!(matches!(
        react(room.id, alice.id, message.id).await,
        Some(StoreError::MessageNotFound)
    ));
    let removing = store.react(room.id, alice.id, message.id, None).await;
    assert!(matches!(removing, Err(StoreError::MessageNotFound)));
}

async fn a_block_in_a_direct_room_refuses_reactions_but_not_taking_one_back(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let (room, _) = store.direct_room(alice.id, bob.id).await.unwrap();
    let message = store
        .post_message(room.id, alice.id, "hi", None)
        .await
        .unwrap();
    store
        .react(room.id, bob.id, message.id, Some(THUMBS))
        .await
        .unwrap();
    store.set_block(alice.id, bob.id, true).await.unwrap();
    for user in [alice.id, bob.id] {
        let refused = store.react(room.id, user, message.id, Some(HEART)).await;
        assert!(matches!(refused, Err(StoreError::Blocked)), "{refused:?}");
    }
    let taken_back = store
        .react(room.id, bob.id, message.id, None)
        .await
        .unwrap();
    assert!(taken_back.counts.is_empty());
}
