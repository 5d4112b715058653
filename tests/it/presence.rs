//! Presence: a user is online while any node holds a socket of theirs; the rooms they share
//! get one frame per change (none for a flap), `last_seen` is stored and hidden as the user
//! asks, strangers get 404, and a killed node's users go offline on the others in time.

use std::ffi::OsString;
use std::time::Duration;

use chatnode::config::TransportKind;
use chatnode::signals::presence::GRACE;
use chatnode_client::{Incoming, Socket, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::broker::brokers;
use crate::cluster::Cluster;
use crate::faults::NodeProcess;
use crate::helpers::{eventually, spawn, spawn_with, TestNode, TestUser, WsClient, WAIT};

/// Past the grace and a batch: a presence frame that was coming has come by then.
const QUIET: Duration = GRACE.saturating_add(Duration::from_secs(2));
/// The bound for a killed node's users to go offline elsewhere.
const KILLED_BOUND: Duration = Duration::from_secs(15);

/// A socket whose room is bound on its node (its first frame came), so signals reach it.
async fn opened(node: &TestNode, room: i64, user: &TestUser) -> WsClient {
    let mut socket = node.ws(room, user).await;
    socket.next_purpose("receipts").await;
    socket
}

fn online_frame(room: i64, user: &TestUser) -> Value {
    json!({"purpose": "presence", "chat_id": room, "user_id": user.id, "status": "online",
           "last_seen": null})
}

/// Alice opens two tabs, on `a` then on `b`; bob, on `b`, sees her online once and offline
/// once, when the last tab closes; the API agrees, and the room counts who is online.
async fn online_until_the_last_tab_closes(a: &TestNode, b: &TestNode, label: &str) {
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = a.create_room(&alice, "presence", &[&bob]).await;
    let mut bob_ws = opened(b, room, &bob).await;
    let first_tab = opened(a, room, &alice).await;
    let online = bob_ws.next_purpose("presence").await;
    assert_eq!(online, online_frame(room, &alice), "{label}");
    let seen = b.api.presence(&bob.access, alice.id).await.unwrap();
    assert_eq!(
        (seen.status.as_str(), seen.last_seen),
        ("online", None),
        "{label}"
    );
    // Bob's node stores his arrival in its own batch, which may come after hers.
    eventually(WAIT, "both count as online in the room", || async {
        let rooms = a.api.chat_list(&alice.access, None, None).await.unwrap();
        (rooms.items[0].room.online_count == 2).then_some(())
    })
    .await;

    let second_tab = opened(b, room, &alice).await;
    drop(first_tab);
    let quiet = bob_ws.next_purpose_within("presence", QUIET).await;
    assert_eq!(quiet, None, "{label}: a tab closed while another is open");
    drop(second_tab);
    let offline = bob_ws.next_purpose("presence").await;
    assert_eq!(offline["status"], "offline", "{label}: {offline}");
    assert_eq!(offline["user_id"], alice.id, "{label}");
    let last_seen = offline["last_seen"].as_str().expect("last_seen is shown");
    let seen = a.api.presence(&bob.access, alice.id).await.unwrap();
    assert_eq!(seen.status, "offline", "{label}");
    assert_eq!(seen.last_seen.as_deref(), Some(last_seen), "{label}");
    let rooms = b.api.chat_list(&bob.access, None, None).await.unwrap();
    assert_eq!(rooms.items[0].room.online_count, 1, "{label}");
}

/// A socket that drops and comes back within the grace announces nothing.
async fn a_flap_is_silent(a: &TestNode, b: &TestNode, label: &str) {
    let carol = a.register("carol").await;
    let dave = b.register("dave").await;
    let room = a.create_room(&carol, "flaps", &[&dave]).await;
    let mut dave_ws = opened(b, room, &dave).await;
    let carol_ws = opened(a, room, &carol).await;
    assert_eq!(dave_ws.next_purpose("presence").await["status"], "online");
    drop(carol_ws);
    let _back = opened(a, room, &carol).await;
    let quiet = dave_ws.next_purpose_within("presence", QUIET).await;
    assert_eq!(quiet, None, "{label}: the flap was announced");
}

#[tokio::test]
async fn a_user_is_online_until_their_last_socket_closes() {
    let node = spawn().await;
    online_until_the_last_tab_closes(&node, &node, "memory").await;
    a_flap_is_silent(&node, &node, "memory").await;
}

/// The `online_count`s `socket` hears until one is `upto`, failing on any `presence` frame.
async fn counts_until(socket: &mut WsClient, room: i64, upto: i64) -> Vec<i64> {
    let deadline = Instant::now() + WAIT;
    let mut counts = Vec::new();
    while counts.last() != Some(&upto) {
        let frame = socket.next_frame_until(deadline).await;
        let frame =
            frame.unwrap_or_else(|| panic!("no count of {upto} within {WAIT:?}: {counts:?}"));
        let data = &frame["data"];
        assert_ne!(
            data["purpose"], "presence",
            "a big room hears no member: {frame}"
        );
        if data["purpose"] == "online_count" {
            assert_eq!(data["chat_id"], room, "{frame}");
            counts.push(data["online_count"].as_i64().expect("a count"));
        }
    }
    counts
}

/// A room over `--presence-room-limit` hears how many members are online, once per batch,
/// and never who came or went; a room within it still hears each member.
#[tokio::test]
async fn a_room_over_the_presence_limit_hears_counts_instead_of_each_member() {
    let node = spawn_with(|c| c.presence_room_limit = 2).await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let big = node.create_room(&alice, "big", &[&bob, &carol]).await;
    let small = node.create_room(&alice, "small", &[&bob]).await;
    let mut bob_big = opened(&node, big, &bob).await;
    let mut bob_small = opened(&node, small, &bob).await;
    let alice_ws = opened(&node, small, &alice).await;
    let carol_ws = opened(&node, big, &carol).await;
    assert_eq!(
        bob_small.next_purpose("presence").await,
        online_frame(small, &alice)
    );
    // Arrivals batched together count once; each batch reads the count after it.
    let counts = counts_until(&mut bob_big, big, 3).await;
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert!(
        counts.len() <= 3,
        "at most one count per arrival: {counts:?}"
    );
    drop(carol_ws);
    assert_eq!(counts_until(&mut bob_big, big, 2).await, [2]);
    let quiet = bob_small.next_purpose_within("presence", QUIET).await;
    assert_eq!(quiet, None, "carol is not in the small room");
    drop(alice_ws);
}

async fn presence_across_nodes(transport: TransportKind) {
    for broker in brokers().await {
        let cluster = Cluster::start(&broker, transport, 2).await;
        let label = format!("{transport:?} on {}", broker.label);
        let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
        online_until_the_last_tab_closes(a, b, &label).await;
        a_flap_is_silent(a, b, &label).await;
        cluster.stop(&broker).await;
    }
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp091_presence_across_two_nodes_with_tabs_and_flaps() {
    presence_across_nodes(TransportKind::Amqp091).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp10_presence_across_two_nodes_with_tabs_and_flaps() {
    presence_across_nodes(TransportKind::Amqp10).await;
}

#[tokio::test]
async fn hidden_last_seen_is_shown_to_no_one_else_and_hides_everyone_elses() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, "privacy", &[&bob]).await;
    let me = node
        .api
        .set_show_last_seen(&alice.access, false)
        .await
        .unwrap();
    assert!(!me.show_last_seen);
    assert!(!node.api.me(&alice.access).await.unwrap().show_last_seen);
    let mut bob_ws = opened(&node, room, &bob).await;
    let alice_ws = opened(&node, room, &alice).await;
    assert_eq!(bob_ws.next_purpose("presence").await["status"], "online");
    drop(alice_ws);
    let offline = bob_ws.next_purpose("presence").await;
    assert_eq!(
        (offline["status"].clone(), offline["last_seen"].clone()),
        (json!("offline"), json!(null))
    );
    let seen = node.api.presence(&bob.access, alice.id).await.unwrap();
    assert_eq!((seen.status.as_str(), seen.last_seen), ("offline", None));
    // Her own is hers to see.
    let own = node.api.presence(&alice.access, alice.id).await.unwrap();
    assert!(own.last_seen.is_some(), "{own:?}");

    // Alice shows hers again, bob hides his: bob sees hers no more, on his socket or by REST.
    node.api
        .set_show_last_seen(&alice.access, true)
        .await
        .unwrap();
    node.api
        .set_show_last_seen(&bob.access, false)
        .await
        .unwrap();
    drop(bob_ws);
    let mut bob_ws = opened(&node, room, &bob).await;
    let alice_ws = opened(&node, room, &alice).await;
    assert_eq!(bob_ws.next_purpose("presence").await["status"], "online");
    drop(alice_ws);
    let offline = bob_ws.next_purpose("presence").await;
    assert_eq!(offline["last_seen"], json!(null), "{offline}");
    let seen = node.api.presence(&bob.access, alice.id).await.unwrap();
    assert_eq!(seen.last_seen, None);
    let own = node.api.presence(&alice.access, alice.id).await.unwrap();
    assert!(own.last_seen.is_some(), "{own:?}");
}

#[tokio::test]
async fn presence_of_a_stranger_is_404_and_bad_changes_are_400() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let stranger = node.register("stranger").await;
    node.create_room(&alice, "alone", &[]).await;
    let path = format!("/api/v1/users/{}/presence/", alice.id);
    let (status, body) = node.get(&path, Some(&stranger.access)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["success"], false);
    let (status, _) = node
        .get("/api/v1/users/999999/presence/", Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = node
        .get("/api/v1/users/nobody/presence/", Some(&alice.access))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a path that names no user");
    let (status, _) = node.get(&path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for bad in [
        json!({}),
        json!({"show_last_seen": "no"}),
        json!({"colour": "blue"}),
        json!([]),
    ] {
        let request = node
            .api
            .request(chatnode_client::Method::PATCH, "/api/v1/users/me/")
            .json(&bad);
        let (status, body) = node.send(request, Some(&alice.access)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["errors"]["detail"].is_string(), "{bad}: {body}");
    }
    assert!(node.api.me(&alice.access).await.unwrap().show_last_seen);
}

/// The next presence frame on a raw socket, within `bound`.
async fn next_presence(socket: &mut Socket, bound: Duration) -> Option<Value> {
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match socket.recv_within(left).await.expect("the socket stays up") {
            Some(Incoming::Frame(frame)) if frame["data"]["purpose"] == "presence" => {
                return Some(frame["data"].clone())
            }
            Some(Incoming::Frame(_)) => continue,
            Some(other) => panic!("the socket ended: {other:?}"),
            None => return None,
        }
    }
}

/// Alice's only socket is on the first node, which is killed; bob, on the second, sees her
/// go offline within the bound. Returns how long it took.
async fn killed_node(database_url: &str, extra: &[String]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let args = |name: &str| {
        let mut args: Vec<OsString> = vec![
            "--data-dir".into(),
            dir.path().join(name).into(),
            "--database-url".into(),
            database_url.into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        args
    };
    let mut doomed = NodeProcess::start(&args("doomed")).await;
    let survivor = NodeProcess::start(&args("survivor")).await;
    let alice = doomed.api.register("alice").await;
    let bob = doomed.api.register("bob").await;
    let room = doomed.api.create_room(&alice, &[&bob]).await;
    let mut bob_ws = survivor.api.client.socket(room, &bob.access).await.unwrap();
    let _alice_ws = doomed.api.client.socket(room, &alice.access).await.unwrap();
    eventually(WAIT, "alice is online", || async {
        let seen = survivor.api.client.presence(&bob.access, alice.id).await;
        seen.ok().filter(|p| p.status == "online")
    })
    .await;
    let killed = Instant::now();
    doomed.kill().await;
    let bound = KILLED_BOUND + Duration::from_secs(5);
    let offline = loop {
        let frame = next_presence(&mut bob_ws, bound.saturating_sub(killed.elapsed())).await;
        let frame = frame.expect("alice goes offline on the survivor");
        if frame["status"] == "offline" && frame["user_id"] == alice.id {
            break killed.elapsed();
        }
    };
    let seen = survivor
        .api
        .client
        .presence(&bob.access, alice.id)
        .await
        .unwrap();
    assert_eq!(seen.status, "offline");
    assert!(seen.last_seen.is_some(), "{seen:?}");
    eprintln!(
        "a killed node's user went offline elsewhere after {} ms",
        offline.as_millis()
    );
    assert!(offline < KILLED_BOUND, "took {offline:?}");
    offline
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_nodes_users_go_offline_on_the_other_node_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    killed_node(&url, &[]).await;
}

/// PostgreSQL and the real RabbitMQ (AMQP 0-9-1) of this host, as a cluster runs.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set CHATNODE_TEST_AMQP_URL and CHATNODE_TEST_DATABASE_URL"]
async fn amqp091_postgres_a_killed_nodes_users_go_offline_on_the_other_node_in_time() {
    let database = crate::backends::fresh_database().await;
    let broker = &brokers().await[0];
    let exchange = format!("chatnode-it-{}", uuid::Uuid::new_v4().simple());
    let args: Vec<String> = ["--transport", "amqp091", "--broker-url", &broker.url]
        .iter()
        .map(|s| s.to_string())
        .chain(["--exchange".to_string(), exchange.clone()])
        .collect();
    killed_node(&database.url, &args).await;
    broker.delete_exchange(&exchange).await;
}
