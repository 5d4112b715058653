//! docs/asyncapi.json as a contract: the official AsyncAPI parser accepts it, and every body
//! a node publishes on AMQP 0-9-1 — each event kind, driven through HTTP, WebSocket and
//! `chatnode admin` — validates against its message's schemas (tests/asyncapi/validate.mjs;
//! `npm ci --prefix tests/asyncapi` first).

use std::sync::{Arc, Mutex};

use chatnode_client::multipart::{Form, Part};
use chatnode_client::StatusCode;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};

use crate::broker::{brokers, Broker};
use crate::helpers::{start, test_config, TestNode, TestUser, WsClient, WAIT};
use chatnode::config::TransportKind;

/// Every kind the node publishes (`EventKind`, as its body names it).
const KINDS: [&str; 16] = [
    "message",
    "message_edited",
    "message_deleted",
    "reaction",
    "member_joined",
    "member_left",
    "delivered",
    "read",
    "typing_started",
    "typing_stopped",
    "presence_online",
    "presence_offline",
    "online_count",
    "member_disabled",
    "member_signed_out",
    "room_deleted",
];

type Captured = Arc<Mutex<Vec<Value>>>;

/// Runs validate.mjs on the document, and on `deliveries` (a JSON Lines file) if given.
fn validate(deliveries: Option<&std::path::Path>) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = std::process::Command::new("node");
    command
        .arg(format!("{root}/tests/asyncapi/validate.mjs"))
        .arg(format!("{root}/docs/asyncapi.json"));
    if let Some(path) = deliveries {
        command.arg(path);
    }
    let output = command
        .output()
        .expect("node runs (install Node.js, then `npm ci --prefix tests/asyncapi`)");
    assert!(
        output.status.success(),
        "validate.mjs failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "needs Node.js and `npm ci --prefix tests/asyncapi`"]
fn asyncapi_document_is_valid_for_the_official_parser() {
    validate(None);
}

fn header_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        other => json!(format!("{other:?}")),
    }
}

/// A delivery as validate.mjs reads it.
fn delivery_json(routing_key: &str, properties: &BasicProperties, body: &[u8]) -> Value {
    let headers: serde_json::Map<String, Value> = properties
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .iter()
                .map(|(k, v)| (k.to_string(), header_json(v)))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "routing_key": routing_key,
        "content_type": properties.content_type().as_ref().map(|s| s.to_string()),
        "delivery_mode": properties.delivery_mode(),
        "expiration": properties.expiration().as_ref().map(|s| s.to_string()),
        "timestamp": properties.timestamp(),
        "headers": headers,
        "body": String::from_utf8_lossy(body),
    })
}

/// Binds a queue of the test's own to every room of `exchange`; deliveries land in the
/// returned list.
async fn capture(broker: &Broker, exchange: &str) -> (Connection, Captured) {
    let connection = Connection::connect(&broker.url, ConnectionProperties::default())
        .await
        .expect("connect the consumer");
    let channel = connection.create_channel().await.expect("a channel");
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("declare the exchange as the node does");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await
        .expect("declare the consumer's queue")
        .name()
        .clone();
    channel
        .queue_bind(
            queue.clone(),
            exchange.into(),
            "room.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind every room");
    let mut consumer = channel
        .basic_consume(
            queue,
            "asyncapi-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let captured = Captured::default();
    let sink = captured.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let line = delivery_json(
                delivery.routing_key.as_str(),
                &delivery.properties,
                &delivery.data,
            );
            sink.lock().unwrap().push(line);
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        }
    });
    (connection, captured)
}

/// Runs `chatnode admin <args>` against the node's database; it must succeed.
async fn admin(node: &TestNode, args: &[String]) {
    let url = node
        .database
        .shared_url(&node.data_dir.path().join("chatnode.db"));
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatnode"));
    command
        .arg("admin")
        .args(args)
        .args(["--database-url", &url])
        .env_remove("CHATNODE_DATABASE_URL")
        .env_remove("CHATNODE_DATA_DIR")
        .kill_on_drop(true);
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("the admin command ends in time")
        .expect("the admin command runs");
    assert!(
        output.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The next presence frame on `socket` of `user` with `status`, skipping others.
async fn presence_of(socket: &mut WsClient, user: &TestUser, status: &str) {
    loop {
        let frame = socket.next_purpose("presence").await;
        if frame["user_id"] == user.id && frame["status"] == status {
            return;
        }
    }
}

/// Sends a text message and one with an attachment; the id of the second.
async fn send_both(node: &TestNode, user: &TestUser, room: i64) -> i64 {
    node.send_message(user, room, "hello contract").await;
    let pixel = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pixel.png")).unwrap();
    let form = Form::new()
        .text("content", "a file")
        .part("attachment", Part::bytes(pixel).file_name("pixel.png"));
    let upload = node
        .api
        .post(&format!("/api/v1/chat/chatrooms/{room}/messages/send/"))
        .multipart(form);
    let (status, body) = node.send(upload, Some(&user.access)).await;
    assert!(status.is_success(), "attachment sent: {body}");
    body["data"]["detail"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the message's id: {body}"))
}

/// Alice answers message `answered`, edits the reply, bob reacts to it and alice deletes it;
/// bob's socket sees each.
async fn edit_and_delete_a_reply(
    node: &TestNode,
    (alice, bob): (&TestUser, &TestUser),
    room: i64,
    answered: i64,
    bob_ws: &mut WsClient,
) {
    let sent = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
    let body = json!({"content": "a reply", "reply_to": answered});
    let (status, reply) = node.post(&sent, Some(&alice.access), body).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let id = reply["data"]["detail"]["id"].as_i64().unwrap();
    node.api
        .edit(&alice.access, room, id, "an edited reply")
        .await
        .unwrap();
    assert_eq!(bob_ws.next_purpose("message_edited").await["id"], id);
    node.api
        .react(&bob.access, room, id, "\u{1F44D}")
        .await
        .unwrap();
    assert_eq!(bob_ws.next_purpose("reaction").await["message_id"], id);
    node.api
        .delete_message(&alice.access, room, id)
        .await
        .unwrap();
    assert_eq!(bob_ws.next_purpose("message_deleted").await["id"], id);
}

/// Drives every kind through the node's interfaces, each seen by a socket (or the admin
/// command's success) before the next, so none is lost to a later change.
async fn drive_every_kind(node: &TestNode) {
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let carol = node.register("carol").await;
    let dave = node.register("dave").await;
    let room = node.create_room(&alice, "contract", &[&bob]).await;
    // Over the test's --presence-room-limit of 3: bob's arrival is an `online_count` there.
    node.create_room(&alice, "big", &[&bob, &carol, &dave])
        .await;
    let enter = format!("/api/v1/chat/chatrooms/{room}/enter/");
    let leave = format!("/api/v1/chat/chatrooms/{room}/leave/");
    for (path, user) in [(&enter, &carol), (&leave, &carol), (&enter, &carol)] {
        let (status, body) = node.post(path, Some(&user.access), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }

    let mut alice_ws = node.ws(room, &alice).await;
    let mut bob_ws = node.ws(room, &bob).await;
    presence_of(&mut alice_ws, &bob, "online").await;
    bob_ws.send_json(json!({"purpose": "typing"})).await;
    assert_eq!(alice_ws.next_purpose("typing").await["state"], "start");
    bob_ws.send_json(json!({"purpose": "typing_stop"})).await;
    assert_eq!(alice_ws.next_purpose("typing").await["state"], "stop");
    let last = send_both(node, &alice, room).await;
    // Written to bob's socket: delivered (a read first would cover it).
    while bob_ws.next_data().await["id"] != last {}
    alice_ws.next_receipt("delivered", bob.id, last).await;
    bob_ws
        .send_json(json!({"purpose": "mark_read", "upto": last}))
        .await;
    alice_ws.next_receipt("read", bob.id, last).await;
    edit_and_delete_a_reply(node, (&alice, &bob), room, last, &mut bob_ws).await;
    drop(bob_ws);
    presence_of(&mut alice_ws, &bob, "offline").await;

    admin(
        node,
        &[
            "tokens".into(),
            "revoke".into(),
            "--user".into(),
            bob.id.to_string(),
        ],
    )
    .await;
    admin(
        node,
        &["users".into(), "disable".into(), carol.id.to_string()],
    )
    .await;
    admin(node, &["rooms".into(), "delete".into(), room.to_string()]).await;
    assert_eq!(
        alice_ws.expect_close().await.0,
        4404,
        "the room's deletion closed the socket"
    );
}

fn every_kind_seen(captured: &Captured) -> bool {
    let seen: Vec<String> = captured
        .lock()
        .unwrap()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d["body"].as_str()?).ok())
        .filter_map(|body| body["kind"].as_str().map(str::to_string))
        .collect();
    KINDS.iter().all(|kind| seen.iter().any(|s| s == kind))
}

#[tokio::test]
#[ignore = "needs RabbitMQ (CHATNODE_TEST_AMQP_URL), Node.js and `npm ci --prefix tests/asyncapi`"]
async fn amqp091_every_published_body_validates_against_the_asyncapi_document() {
    for broker in brokers().await {
        let exchange = format!("chatnode-it-{}", uuid::Uuid::new_v4().simple());
        let (connection, captured) = capture(&broker, &exchange).await;
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path());
        config.transport = TransportKind::Amqp091;
        config.broker_url = Some(broker.url.clone());
        config.exchange = exchange.clone();
        config.presence_room_limit = 3;
        let node = start(config, data_dir).await;
        drive_every_kind(&node).await;
        // validate.mjs names any kind still missing after the wait.
        let deadline = tokio::time::Instant::now() + WAIT * 3;
        while !every_kind_seen(&captured) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        let lines: Vec<String> = captured
            .lock()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        std::fs::write(file.path(), lines.join("\n") + "\n").unwrap();
        validate(Some(file.path()));
        node.stop().await;
        let _ = connection.close(200, "done".into()).await;
        broker.delete_exchange(&exchange).await;
    }
}
