//! Several nodes on one real broker and one shared database: every message sent to any node
//! reaches every member's socket on every node, exactly once and in id order, also when the
//! broker drops the connections mid-stream.

use std::time::Duration;

use chatnode::config::TransportKind;
use chatnode_client::{Client, NewAccount, SocketOptions, StatusCode};
use serde_json::json;

use crate::broker::{brokers, Broker};
use crate::helpers::{
    eventually, outbox_drained, start, test_config, TestDatabase, TestNode, TestUser, WsClient,
    WAIT,
};

/// Nodes sharing one database and one broker exchange (also used by `typing`).
pub struct Cluster {
    pub nodes: Vec<TestNode>,
    database_url: String,
    exchange: String,
    _database: TestDatabase,
    _database_dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(broker: &Broker, transport: TransportKind, size: usize) -> Self {
        let database_dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::new().await;
        let database_url = database.shared_url(&database_dir.path().join("shared.db"));
        let exchange = format!("chatnode-it-{}", uuid::Uuid::new_v4().simple());
        let mut nodes = Vec::new();
        for _ in 0..size {
            let data_dir = tempfile::tempdir().unwrap();
            let mut config = test_config(data_dir.path());
            config.database_url = Some(database_url.clone());
            config.transport = transport;
            config.broker_url = Some(broker.url.clone());
            config.exchange = exchange.clone();
            nodes.push(start(config, data_dir).await);
        }
        Self {
            nodes,
            database_url,
            exchange,
            _database: database,
            _database_dir: database_dir,
        }
    }

    fn node_ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.node_id.clone()).collect()
    }

    async fn wait_outbox_drained(&self) {
        outbox_drained(&self.database_url, WAIT * 3).await;
    }

    pub async fn stop(self, broker: &Broker) {
        for node in self.nodes {
            node.stop().await;
        }
        broker.delete_exchange(&self.exchange).await;
    }
}

/// Message ids as they arrive on `socket` (notices skipped) until `count` have arrived.
async fn receive_ids(socket: &mut WsClient, count: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let data = socket.next_data().await;
        if data["event"] == "message" {
            ids.push(data["id"].as_i64().unwrap());
        }
    }
    ids
}

async fn room_ids(node: &TestNode, user: &TestUser, room: i64) -> Vec<i64> {
    node.history(user, room, "?limit=200")
        .await
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

async fn members(cluster: &Cluster) -> (TestUser, TestUser, TestUser, i64) {
    let alice = cluster.nodes[0].register("alice").await;
    let bob = cluster.nodes[1].register("bob").await;
    let carol = cluster.nodes[2].register("carol").await;
    let room = cluster.nodes[1]
        .create_room(&alice, "everywhere", &[&bob, &carol])
        .await;
    (alice, bob, carol, room)
}

async fn every_message_reaches_every_node(transport: TransportKind) {
    for broker in brokers().await {
        eprintln!("broker: {}", broker.label);
        let cluster = Cluster::start(&broker, transport, 3).await;
        let (alice, bob, carol, room) = members(&cluster).await;
        let nodes = &cluster.nodes;
        let mut sockets = vec![
            nodes[0].ws(room, &alice).await,
            nodes[1].ws(room, &bob).await,
            nodes[2].ws(room, &carol).await,
            nodes[2].ws(room, &alice).await,
        ];
        let per_sender = 10;
        let senders = [(&nodes[0], &alice), (&nodes[1], &bob), (&nodes[2], &carol)];
        let sends = senders.iter().map(|(node, user)| async move {
            for i in 0..per_sender {
                node.send_message(user, room, &format!("{} #{i}", user.username))
                    .await;
            }
        });
        futures_util::future::join_all(sends).await;
        let expected = room_ids(&nodes[0], &alice, room).await;
        assert_eq!(expected.len(), 3 * per_sender);
        for socket in &mut sockets {
            assert_eq!(
                receive_ids(socket, expected.len()).await,
                expected,
                "{}",
                broker.label
            );
            socket.expect_silence(Duration::from_millis(300)).await;
        }
        cluster.wait_outbox_drained().await;
        drop(sockets);
        cluster.stop(&broker).await;
    }
}

async fn broker_connection_loss_loses_nothing(transport: TransportKind) {
    for broker in brokers().await {
        eprintln!("broker: {}", broker.label);
        let cluster = Cluster::start(&broker, transport, 3).await;
        let (alice, bob, carol, room) = members(&cluster).await;
        let nodes = &cluster.nodes;
        let mut steady = vec![
            nodes[0].ws(room, &alice).await,
            nodes[2].ws(room, &carol).await,
        ];
        let mut reconnecting = nodes[1].ws(room, &bob).await;

        let total = 45;
        let users = [&alice, &bob, &carol];
        let mut received_before_drop = Vec::new();
        for i in 0..total {
            if i == 15 {
                let closed = broker.close_connections_of(&cluster.node_ids()).await;
                assert!(
                    closed >= 3,
                    "each node had its broker connection ({closed} closed)"
                );
            }
            if i == 20 {
                received_before_drop = receive_ids(&mut reconnecting, 10).await;
                drop(reconnecting);
                nodes[1].wait_for_sockets(0).await;
                let since = SocketOptions {
                    since: received_before_drop.last().copied(),
                    ..SocketOptions::default()
                };
                let socket = nodes[1].api.socket_with(room, &bob.access, &since).await;
                reconnecting = WsClient {
                    socket: socket.expect("reconnects with since"),
                };
            }
            let (status, body) = nodes[i % 3]
                .post(
                    &format!("/api/v1/chat/chatrooms/{room}/messages/send/"),
                    Some(&users[i % 3].access),
                    json!({ "content": format!("message {i}") }),
                )
                .await;
            assert_eq!(
                status,
                StatusCode::CREATED,
                "a send during the outage: {body}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let expected = room_ids(&nodes[0], &alice, room).await;
        assert_eq!(expected.len(), total);
        for socket in &mut steady {
            assert_eq!(
                receive_ids(socket, total).await,
                expected,
                "{}",
                broker.label
            );
            socket.expect_silence(Duration::from_millis(300)).await;
        }
        let mut rest = receive_ids(&mut reconnecting, total - received_before_drop.len()).await;
        reconnecting
            .expect_silence(Duration::from_millis(300))
            .await;
        received_before_drop.append(&mut rest);
        assert_eq!(
            received_before_drop, expected,
            "the reconnected socket caught up"
        );

        cluster.wait_outbox_drained().await;
        for node in nodes {
            let (status, _) = node.get("/healthz", None).await;
            assert_eq!(status, StatusCode::OK, "the node survived");
        }
        drop((steady, reconnecting));
        cluster.stop(&broker).await;
    }
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp091_every_message_reaches_every_node_once_in_order() {
    every_message_reaches_every_node(TransportKind::Amqp091).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp091_broker_connection_loss_loses_nothing() {
    broker_connection_loss_loses_nothing(TransportKind::Amqp091).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp10_every_message_reaches_every_node_once_in_order() {
    every_message_reaches_every_node(TransportKind::Amqp10).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp10_broker_connection_loss_loses_nothing() {
    broker_connection_loss_loses_nothing(TransportKind::Amqp10).await;
}

/// Issue 12 across two nodes: a direct conversation opened from both nodes at once is one
/// room, and receipts made on one node reach the sockets on the other (REST and socket
/// reads, and a delivery).
async fn receipts_cross_nodes(transport: TransportKind) {
    for broker in brokers().await {
        eprintln!("broker: {}", broker.label);
        let cluster = Cluster::start(&broker, transport, 2).await;
        let nodes = &cluster.nodes;
        let alice = nodes[0].register("alice").await;
        let bob = nodes[1].register("bob").await;
        let (from_alice, from_bob) = tokio::join!(
            nodes[0].post(
                "/api/v1/chat/direct/",
                Some(&alice.access),
                json!({"user_id": bob.id})
            ),
            nodes[1].post(
                "/api/v1/chat/direct/",
                Some(&bob.access),
                json!({"user_id": alice.id})
            ),
        );
        let mut statuses = [from_alice.0.as_u16(), from_bob.0.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 201], "{} / {}", from_alice.1, from_bob.1);
        let room = from_alice.1["data"]["chatroom"]["id"].as_i64().unwrap();
        assert_eq!(from_bob.1["data"]["chatroom"]["id"], room, "one room");

        // Alice watches on node 2, bob on node 1.
        let mut alice_ws = nodes[1].ws(room, &alice).await;
        let mut bob_ws = nodes[0].ws(room, &bob).await;
        let sent = nodes[0].send_message(&alice, room, "read me").await["id"]
            .as_i64()
            .unwrap();
        assert_eq!(bob_ws.next_data().await["id"], sent);
        // Written to bob's socket on node 1: delivered, on node 2.
        let delivered = alice_ws.next_receipt("delivered", bob.id, sent).await;
        assert_eq!(delivered["upto"], sent, "{}: {delivered}", broker.label);

        // A REST read on node 1, on node 2.
        let (status, body) = nodes[0]
            .post(
                &format!("/api/v1/chat/chatrooms/{room}/read/"),
                Some(&bob.access),
                json!({ "upto": sent }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let read = alice_ws.next_receipt("read", bob.id, sent).await;
        assert_eq!(
            read,
            json!({"purpose": "receipt", "event": "read", "chat_id": room, "user_id": bob.id,
                   "upto": sent, "seq": delivered["seq"].as_i64().unwrap() + 1}),
            "{}",
            broker.label
        );

        // A socket read on node 2, on node 1.
        let reply = nodes[1].send_message(&bob, room, "and back").await["id"]
            .as_i64()
            .unwrap();
        let got = loop {
            let data = alice_ws.next_data().await;
            if data["event"] == "message" {
                break data;
            }
        };
        assert_eq!(got["id"], reply);
        alice_ws
            .send_json(json!({"purpose": "mark_read", "upto": reply}))
            .await;
        let read = bob_ws.next_receipt("read", alice.id, reply).await;
        assert_eq!(read["upto"], reply, "{}: {read}", broker.label);
        assert_eq!(read["chat_id"], room, "{}: {read}", broker.label);

        cluster.wait_outbox_drained().await;
        drop((alice_ws, bob_ws));
        cluster.stop(&broker).await;
    }
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp091_receipts_made_on_one_node_reach_sockets_on_another() {
    receipts_cross_nodes(TransportKind::Amqp091).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
async fn amqp10_receipts_made_on_one_node_reach_sockets_on_another() {
    receipts_cross_nodes(TransportKind::Amqp10).await;
}

/// A node whose broker is unreachable still serves REST (messages are stored and wait in
/// the outbox) and says so on `/readyz`.
#[tokio::test]
async fn a_node_without_its_broker_still_serves_rest_and_reports_it() {
    for transport in [TransportKind::Amqp091, TransportKind::Amqp10] {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path());
        config.transport = transport;
        // Nothing listens on port 1.
        config.broker_url = Some("amqp://guest:guest@127.0.0.1:1/%2f".into());
        let app = chatnode::Application::build(config)
            .await
            .expect("starts without its broker");
        let base = format!("http://{}", app.address());
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run());
        let client = Client::new(base);

        // Not ready, and once the first attempt has failed, the reason names the broker.
        let reason = eventually(WAIT, "the reason names the broker", || async {
            let ready = client.readyz().await.unwrap();
            assert!(!ready.ready);
            let reason = ready.report["transport"].as_str().unwrap().to_string();
            reason.contains("127.0.0.1:1").then_some(reason)
        })
        .await;
        assert!(!reason.contains("guest:guest"), "no password in {reason}");

        let account = NewAccount {
            email: "solo@example.com".into(),
            phone_number: "+14155552671".into(),
            password: crate::helpers::PASSWORD.into(),
            first_name: "S".into(),
            last_name: "O".into(),
        };
        let me = client.register(&account).await.unwrap();
        let room = client
            .create_room(me.access(), "offline", &[])
            .await
            .unwrap();
        client
            .send(me.access(), room.id, "stored while the broker is away")
            .await
            .unwrap();

        shutdown.cancel();
        tokio::time::timeout(WAIT, server)
            .await
            .expect("stops in time")
            .unwrap();
        let store = chatnode::store::open(&format!(
            "sqlite://{}",
            data_dir.path().join("chatnode.db").display()
        ))
        .await
        .unwrap();
        assert!(
            !store.outbox_batch(10).await.unwrap().is_empty(),
            "the broadcast waits in the outbox"
        );
    }
}
