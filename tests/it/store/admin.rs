//! The store's admin contract, on every backend: accounts listed in pages, disabled and
//! enabled, their tokens revoked; rooms listed, shown and deleted; counts. Each change that
//! running nodes must act on queues its event in the outbox with it.

use chatnode::domain::events::{EventKind, RoomEvent};
use chatnode::store::admin::AdminPage;
use chatnode::store::{Attachment, StoreError, TokenStanding};

use super::{add_user, drain_outbox, Backend, TEST_LIMIT};

backend_suite!(
    accounts_come_in_pages_and_a_disabled_ones_tokens_stop_working,
    revoking_an_accounts_tokens_refuses_those_issued_until_then,
    a_deleted_room_goes_with_its_history_and_queues_room_deleted,
);

fn page(after: i64, limit: u32) -> AdminPage {
    AdminPage { after, limit }
}

fn closing(events: &[RoomEvent], kind: EventKind) -> Vec<(i64, Option<i64>)> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.chat_id, e.user_id))
        .collect()
}

async fn accounts_come_in_pages_and_a_disabled_ones_tokens_stop_working(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let carol = add_user(&store, "carol").await;
    let room = store
        .create_room("r", alice.id, &[bob.id], 10)
        .await
        .unwrap();
    let first = store.accounts(page(0, 2)).await.unwrap();
    let ids: Vec<i64> = first.iter().map(|a| a.user.id).collect();
    assert_eq!(ids, [alice.id, bob.id]);
    assert_eq!((first[0].rooms, first[0].disabled_at.is_none()), (1, true));
    let rest = store.accounts(page(bob.id, 2)).await.unwrap();
    assert_eq!(
        rest.iter().map(|a| a.user.id).collect::<Vec<_>>(),
        [carol.id]
    );
    drain_outbox(&store).await;

    let now = chrono::Utc::now().timestamp();
    let disabled = store.set_disabled(alice.id, true).await.unwrap();
    assert!(disabled.disabled_at.is_some());
    assert!(store.is_disabled(alice.id).await.unwrap());
    let (_, standing) = store.token_user(alice.id, "t", now).await.unwrap().unwrap();
    assert_eq!(standing, TokenStanding::Disabled);
    let (_, standing) = store.token_user(bob.id, "t", now).await.unwrap().unwrap();
    assert_eq!(standing, TokenStanding::Live, "only the disabled account");
    let events = drain_outbox(&store).await;
    assert_eq!(
        closing(&events, EventKind::MemberDisabled),
        [(room.id, Some(alice.id))]
    );
    let (shown, sent) = store.account(alice.id).await.unwrap().unwrap();
    assert_eq!((shown.disabled_at, sent), (disabled.disabled_at, 0));

    let enabled = store.set_disabled(alice.id, false).await.unwrap();
    assert!(enabled.disabled_at.is_none());
    assert!(!store.is_disabled(alice.id).await.unwrap());
    let (_, standing) = store.token_user(alice.id, "t", now).await.unwrap().unwrap();
    assert_eq!(standing, TokenStanding::Live);
    assert!(
        drain_outbox(&store).await.is_empty(),
        "enabling closes nothing"
    );
    assert_eq!(store.counts().await.unwrap().disabled_users, 0);

    assert!(matches!(
        store.set_disabled(999_999, true).await,
        Err(StoreError::UserNotFound)
    ));
    assert!(matches!(
        store.is_disabled(999_999).await,
        Err(StoreError::UserNotFound)
    ));
    assert!(store.account(999_999).await.unwrap().is_none());
}

async fn revoking_an_accounts_tokens_refuses_those_issued_until_then(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let one = store
        .create_room("one", alice.id, &[bob.id], 10)
        .await
        .unwrap();
    let two = store.create_room("two", alice.id, &[], 10).await.unwrap();
    drain_outbox(&store).await;
    let before = chrono::Utc::now().timestamp();
    let account = store.revoke_user_tokens(alice.id).await.unwrap();
    let cut = account.tokens_revoked_at.expect("a cut-off is stored");
    let after = chrono::Utc::now().timestamp();
    // The revoking second, never a later one: that would refuse tokens issued after it.
    assert!(
        (before..=after).contains(&cut),
        "{before} <= {cut} <= {after}"
    );
    for issued_at in [before - 60, cut] {
        let (_, standing) = store
            .token_user(alice.id, "t", issued_at)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(standing, TokenStanding::Revoked, "issued at {issued_at}");
    }
    let (_, standing) = store
        .token_user(alice.id, "t", cut + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(standing, TokenStanding::Live, "a token issued later works");
    let (_, standing) = store
        .token_user(bob.id, "t", before)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(standing, TokenStanding::Live);
    let events = drain_outbox(&store).await;
    assert_eq!(
        closing(&events, EventKind::MemberSignedOut),
        [(one.id, Some(alice.id)), (two.id, Some(alice.id))]
    );
    assert!(matches!(
        store.revoke_user_tokens(999_999).await,
        Err(StoreError::UserNotFound)
    ));
}

async fn a_deleted_room_goes_with_its_history_and_queues_room_deleted(backend: Backend) {
    let store = backend.open().await;
    let alice = add_user(&store, "alice").await;
    let bob = add_user(&store, "bob").await;
    let kept = store.create_room("kept", alice.id, &[], 10).await.unwrap();
    let room = store
        .create_room("gone", alice.id, &[bob.id], 10)
        .await
        .unwrap();
    store
        .post_message(kept.id, alice.id, "stays", None)
        .await
        .unwrap();
    let file = Attachment {
        file_name: "abc123.png".into(),
        content_type: "image/png".into(),
        size: 3,
        original_name: None,
    };
    store
        .post_message(room.id, alice.id, "with a file", Some(file))
        .await
        .unwrap();
    store
        .post_message(room.id, bob.id, "plain", None)
        .await
        .unwrap();

    let rooms = store.room_records(page(0, 10)).await.unwrap();
    let summary: Vec<(i64, i64, i64)> = rooms
        .iter()
        .map(|r| (r.id, r.members, r.messages))
        .collect();
    assert_eq!(summary, [(kept.id, 1, 1), (room.id, 2, 2)]);
    assert_eq!(
        store.room_records(page(kept.id, 1)).await.unwrap()[0].id,
        room.id
    );
    let (shown, members) = store.room_record(room.id).await.unwrap().unwrap();
    assert_eq!(shown.name, "gone");
    assert_eq!(
        members.iter().map(|m| m.id).collect::<Vec<_>>(),
        [alice.id, bob.id]
    );
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.users, counts.rooms, counts.messages), (2, 2, 3));
    drain_outbox(&store).await;

    let deleted = store.delete_room(room.id).await.unwrap();
    assert_eq!((deleted.room.id, deleted.room.messages), (room.id, 2));
    assert_eq!(deleted.files, ["abc123.png"]);
    assert!(store.room(room.id).await.unwrap().is_none());
    assert!(store.room_record(room.id).await.unwrap().is_none());
    assert!(store
        .attachment_owner("abc123.png")
        .await
        .unwrap()
        .is_none());
    let events = drain_outbox(&store).await;
    assert_eq!(closing(&events, EventKind::RoomDeleted), [(room.id, None)]);
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts.rooms, counts.messages),
        (1, 1),
        "the other room stays"
    );
    assert_eq!(store.accounts(page(0, 10)).await.unwrap()[1].rooms, 0);
    assert!(matches!(
        store.delete_room(room.id).await,
        Err(StoreError::RoomNotFound)
    ));
}
