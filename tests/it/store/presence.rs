//! The store's presence contract, on every backend: a user is online while a live node holds
//! them, comes online and goes offline once however many nodes hold them, a dead node is
//! swept once, and last_seen is stored and hidden as the user asks.

use chatnode::store::presence::{PresenceChange, PresenceRoom};

use super::{add_user, Backend, TEST_LIMIT};

backend_suite!(
    a_user_comes_online_once_and_goes_offline_with_the_last_node_holding_them,
    a_dead_node_is_swept_once_and_its_users_were_last_seen_at_its_heartbeat,
    presence_is_for_people_sharing_a_room_and_rooms_count_who_is_online,
);

const TTL: i64 = 10_000;

fn users(changes: &[PresenceChange]) -> Vec<i64> {
    changes.iter().map(|change| change.user).collect()
}

async fn a_user_comes_online_once_and_goes_offline_with_the_last_node_holding_them(
    backend: Backend,
) {
    let (one, two) = (backend.open().await, backend.open().await);
    let alice = add_user(&one, "alice").await;
    let now = 1_000_000;
    let first = one
        .presence_apply("n1", now, TTL, vec![alice.id], vec![])
        .await
        .unwrap();
    assert_eq!(users(&first.online), [alice.id]);
    assert!(first.online[0].last_seen.is_none() && first.online[0].show_last_seen);
    let second = two
        .presence_apply("n2", now, TTL, vec![alice.id], vec![])
        .await
        .unwrap();
    assert!(second.online.is_empty(), "already online on n1");
    let left_one = one
        .presence_apply("n1", now + 1, TTL, vec![], vec![alice.id])
        .await
        .unwrap();
    assert!(left_one.offline.is_empty(), "still held by n2");
    let state = one
        .presence_of(alice.id, alice.id, now + 2)
        .await
        .unwrap()
        .unwrap();
    assert!(state.online);
    one.set_show_last_seen(alice.id, false).await.unwrap();
    let left_two = two
        .presence_apply("n2", now + 3, TTL, vec![], vec![alice.id])
        .await
        .unwrap();
    assert_eq!(users(&left_two.offline), [alice.id]);
    let change = &left_two.offline[0];
    assert!(
        !change.show_last_seen,
        "the privacy setting travels with the change"
    );
    let state = one
        .presence_of(alice.id, alice.id, now + 4)
        .await
        .unwrap()
        .unwrap();
    assert!(!state.online && !state.show_last_seen);
    assert_eq!(state.last_seen, change.last_seen, "last_seen is stored");
    assert!(state.last_seen.is_some());
}

async fn a_dead_node_is_swept_once_and_its_users_were_last_seen_at_its_heartbeat(backend: Backend) {
    let (one, two) = (backend.open().await, backend.open().await);
    let alice = add_user(&one, "alice").await;
    let bob = add_user(&one, "bob").await;
    let beat = 2_000_000_000_000;
    one.presence_apply("dead", beat, TTL, vec![alice.id, bob.id], vec![])
        .await
        .unwrap();
    two.presence_apply("live", beat, TTL, vec![bob.id], vec![])
        .await
        .unwrap();
    assert!(
        one.presence_sweep(beat + TTL - 1, None)
            .await
            .unwrap()
            .is_empty(),
        "not yet dead"
    );
    let later = beat + TTL + 1;
    // The live node renews its heartbeat; both sweep at once; one of them takes alice offline.
    two.presence_apply("live", later, TTL, vec![], vec![])
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        one.presence_sweep(later, None),
        two.presence_sweep(later, None)
    );
    let mut swept = a.unwrap();
    swept.extend(b.unwrap());
    assert_eq!(users(&swept), [alice.id], "bob is held by the live node");
    let expected =
        chatnode::store::format_timestamp(chrono::DateTime::from_timestamp_millis(beat).unwrap());
    assert_eq!(swept[0].last_seen.as_deref(), Some(expected.as_str()));
    let state = two
        .presence_of(bob.id, bob.id, later)
        .await
        .unwrap()
        .unwrap();
    assert!(state.online);
    // A node stopping ends its own sessions whatever its heartbeat.
    let stopped = two
        .presence_sweep(later, Some("live".into()))
        .await
        .unwrap();
    assert_eq!(users(&stopped), [bob.id]);
    // The swept node comes back: it is told it lapsed, so its users arrive again.
    let back = one
        .presence_apply("dead", later, TTL, vec![], vec![])
        .await
        .unwrap();
    assert!(back.lapsed);
    let renewed = one
        .presence_apply("dead", later + 1, TTL, vec![], vec![])
        .await
        .unwrap();
    assert!(!renewed.lapsed);
}

async fn presence_is_for_people_sharing_a_room_and_rooms_count_who_is_online(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let stranger = add_user(&store, "stranger").await;
    let room = store
        .create_room("r", alice.id, &[bob.id], 10)
        .await
        .unwrap();
    let now = 3_000_000;
    store
        .presence_apply("n", now, TTL, vec![alice.id, bob.id], vec![])
        .await
        .unwrap();
    assert!(store
        .presence_of(bob.id, alice.id, now)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .presence_of(stranger.id, alice.id, now)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .presence_of(alice.id, 999_999, now)
        .await
        .unwrap()
        .is_none());
    let counts = store
        .online_counts(vec![room.id, 424_242], now)
        .await
        .unwrap();
    assert_eq!(counts, [(room.id, 2)]);
    // Once the node's heartbeat is past, nobody counts, even before a sweep.
    let counts = store
        .online_counts(vec![room.id], now + TTL + 1)
        .await
        .unwrap();
    assert!(counts.is_empty(), "{counts:?}");
    // Where each user's presence is announced, and how big each room is.
    let solo = store.create_room("s", alice.id, &[], 10).await.unwrap();
    let mut rooms = store
        .presence_rooms(vec![bob.id, alice.id, stranger.id])
        .await
        .unwrap();
    rooms.sort_unstable_by_key(|r| (r.user, r.room));
    let of = |user, room, members| PresenceRoom {
        user,
        room,
        members,
    };
    let expected = [
        of(alice.id, room.id, 2),
        of(alice.id, solo.id, 1),
        of(bob.id, room.id, 2),
    ];
    assert_eq!(rooms, expected);
}
