//! The contract every transport keeps, one function per case; `transport_suite!` runs them
//! on each transport. Two nodes `a` and `b` share one bus (on the in-process bus, which has
//! one node only, they are the same node).

use std::sync::Arc;

use chatnode::transport::{EventKind, RoomEvent, Transport, TransportError};

use super::support::{event, sorted, Subscriber, WAIT};
use super::Nodes;
use crate::helpers::eventually;

pub async fn one_node_receives_only_the_rooms_it_subscribed(nodes: Nodes) {
    let a = nodes.node().transport;
    let mut sub = Subscriber::start(&a).await;
    for room in [1, 2] {
        a.subscribe(room).await.expect("bound");
    }
    for room in [1, 2] {
        sub.settle(&a, room).await;
    }
    // One publisher's events arrive in order: the room-2 event fences the ones before it.
    for (room, message) in [(3, "x3"), (1, "x1"), (2, "x2")] {
        a.publish(event(room, message)).await.expect("a publishes");
    }
    assert_eq!(sub.until(&["x2"]).await, sorted(&[(1, "x1"), (2, "x2")]));
}

pub async fn a_second_event_stream_is_refused_while_one_is_live(nodes: Nodes) {
    let a = nodes.node().transport;
    let sub = Subscriber::start(&a).await;
    assert!(matches!(a.events().await, Err(TransportError::Busy)));
    // The stream goes with the subscriber's task, which the runtime aborts shortly after.
    drop(sub);
    eventually(WAIT, "a new stream once the first one went", || async {
        match a.events().await {
            Ok(_) => Some(()),
            Err(TransportError::Busy) => None,
            Err(error) => panic!("no new stream after the first one went: {}", error.chain()),
        }
    })
    .await;
}

pub async fn unsubscribed_rooms_stop_arriving_and_can_come_back(nodes: Nodes) {
    let (a, b) = (nodes.node().transport, nodes.node().transport);
    unsubscribe_then_resubscribe(&a, &b).await;
}

pub async fn nodes_receive_only_the_rooms_they_subscribed(nodes: Nodes) {
    let (a, b) = (nodes.node().transport, nodes.node().transport);
    let mut sub_a = Subscriber::start(&a).await;
    let mut sub_b = Subscriber::start(&b).await;
    for (transport, room) in [(&a, 1), (&a, 2), (&b, 2), (&b, 3)] {
        transport.subscribe(room).await.expect("bound");
    }
    assert_eq!(a.health(), Ok(nodes.healthy));
    for room in [1, 2] {
        sub_a.settle(&a, room).await;
    }
    for room in [2, 3] {
        sub_b.settle(&b, room).await;
    }
    // No node listens to room 9: the broker takes the event all the same.
    a.publish(event(9, "nobody listens"))
        .await
        .expect("an event for nobody is taken");
    // Each publisher ends with room 2, which both nodes receive: one publisher's
    // messages reach a queue in order, so its room-2 event fences the ones before it.
    for (room, message) in [(3, "a3"), (1, "a1"), (2, "a2")] {
        a.publish(event(room, message)).await.expect("a publishes");
    }
    // b publishes as the relay does: one pipelined batch, with an event for a room
    // nobody listens to among the others.
    let batch = [(1, "b1"), (9, "b-nobody"), (3, "b3"), (2, "b2")]
        .map(|(room, message)| event(room, message));
    b.publish_batch(batch.to_vec())
        .await
        .expect("b publishes a batch");
    assert_eq!(
        sub_a.until(&["a2", "b2"]).await,
        sorted(&[(1, "a1"), (1, "b1"), (2, "a2"), (2, "b2")])
    );
    assert_eq!(
        sub_b.until(&["a2", "b2"]).await,
        sorted(&[(2, "a2"), (2, "b2"), (3, "a3"), (3, "b3")])
    );
}

#[cfg(any(feature = "amqp091", feature = "amqp10"))]
pub async fn reconnects_and_rebinds_after_the_broker_closes_the_connections(nodes: Nodes) {
    use super::rabbitmq::{port, Rabbitmqctl};

    let (a, b) = (nodes.node(), nodes.node());
    let mut sub_a = Subscriber::start(&a.transport).await;
    let mut sub_b = Subscriber::start(&b.transport).await;
    a.transport.subscribe(1).await.expect("bound");
    b.transport.subscribe(1).await.expect("bound");
    sub_a.settle(&a.transport, 1).await;
    sub_b.settle(&b.transport, 1).await;
    a.transport
        .publish(event(1, "before"))
        .await
        .expect("a publishes");
    assert_eq!(sub_a.next_real().await.message, "before");

    let rabbitmqctl = Rabbitmqctl::for_url(&nodes.url).await;
    // A broker this test was given but cannot reach with rabbitmqctl fails it: a test that
    // did not do its job must not count as passed.
    let Some(before) = listed(&rabbitmqctl, &a, nodes.connections).await else {
        panic!(
            "rabbitmqctl cannot list the connections of {} (install it beside the broker, \
             or give a broker in a container it can exec into)",
            nodes.url
        );
    };
    // amqp091: one connection per node, shared by publishing and consuming. amqp10: one
    // AMQP 0-9-1 connection for the topology, one AMQP 1.0 for the events.
    assert_eq!(
        before.len(),
        nodes.connections,
        "node a's connections: {before:?}"
    );
    // Only this test's connections: closing all would break tests running alongside.
    for node in [&a, &b] {
        let connections = rabbitmqctl.connections_of(&node.connection_name, &node.queue);
        for connection in connections.await.expect("rabbitmqctl works") {
            if !rabbitmqctl.cut(port(&nodes.url), &connection).await {
                panic!(
                    "cannot end {connection:?} here: neither rabbitmqctl nor `ss -K` (root) \
                     reaches it"
                );
            }
        }
    }
    // Kept consuming while the broker lists the new connections.
    let _streams =
        recover_after_connection_loss(&a.transport, &b.transport, (sub_a, sub_b), nodes.healthy)
            .await;
    let after = listed(&rabbitmqctl, &a, nodes.connections)
        .await
        .expect("rabbitmqctl works");
    assert_eq!(
        after.len(),
        nodes.connections,
        "node a reconnected once: {after:?}"
    );
    assert!(
        after.iter().all(|c| !before.contains(c)),
        "every connection is new: {before:?} then {after:?}"
    );
}

/// A node's connections as the broker lists them, asked again (for at most 10 s) until there
/// are `expected`: the listing can lag behind a connection that already works (seen on
/// RabbitMQ 4 on a loaded machine: an empty list for a consuming node).
#[cfg(any(feature = "amqp091", feature = "amqp10"))]
async fn listed(
    rabbitmqctl: &super::rabbitmq::Rabbitmqctl,
    node: &super::Node,
    expected: usize,
) -> Option<Vec<super::rabbitmq::BrokerConnection>> {
    let mut found = rabbitmqctl
        .connections_of(&node.connection_name, &node.queue)
        .await?;
    for _ in 0..20 {
        if found.len() == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        found = rabbitmqctl
            .connections_of(&node.connection_name, &node.queue)
            .await?;
    }
    Some(found)
}

/// Every use of a transport whose broker does not answer fails in bounded time, and health
/// says why without the password.
pub async fn an_unreachable_broker_fails_fast(transport: &dyn Transport) {
    assert!(transport.health().is_err());
    assert!(
        transport.subscribe(7).await.is_err(),
        "nothing can be bound"
    );
    let events = tokio::time::timeout(WAIT, transport.events())
        .await
        .expect("in time");
    assert!(events.is_err());
    let published = tokio::time::timeout(WAIT, transport.publish(event(7, "lost"))).await;
    assert!(published.expect("in time").is_err());
    let health = transport.health().expect_err("down");
    assert!(health.contains("cannot connect"), "{health}");
    assert!(
        !health.contains("guest:guest"),
        "the password is redacted: {health}"
    );
}

/// `a` stops receiving a room it unsubscribed (`b` publishes) and gets it back after
/// subscribing again.
async fn unsubscribe_then_resubscribe(a: &Arc<dyn Transport>, b: &Arc<dyn Transport>) {
    let mut sub_a = Subscriber::start(a).await;
    a.subscribe(1).await.expect("bound");
    a.subscribe(2).await.expect("bound");
    sub_a.settle(b, 1).await;
    sub_a.settle(b, 2).await;

    a.unsubscribe(1);
    // The unbind is applied in the background: retry until a round shows it.
    let mut round = 0;
    loop {
        round += 1;
        assert!(round <= 50, "room 1 was never unbound");
        let (gone, fence) = (format!("gone-{round}"), format!("fence-{round}"));
        b.publish(event(1, &gone)).await.expect("b publishes");
        b.publish(event(2, &fence)).await.expect("b publishes");
        if !sub_a
            .until(&[fence.as_str()])
            .await
            .iter()
            .any(|(room, _)| *room == 1)
        {
            break;
        }
    }
    b.publish(event(1, "after")).await.expect("b publishes");
    b.publish(event(2, "fence")).await.expect("b publishes");
    assert_eq!(sub_a.until(&["fence"]).await, sorted(&[(2, "fence")]));

    a.subscribe(1).await.expect("bound again");
    sub_a.settle(b, 1).await;
    b.publish(event(1, "back")).await.expect("b publishes");
    assert_eq!(sub_a.next_real().await.message, "back");
}

#[cfg(any(feature = "amqp091", feature = "amqp10"))]
/// After the broker dropped both nodes' connections: their streams fail and health says so,
/// a publish reconnects by itself, and a new `events()` (as the supervisor calls it) re-binds
/// room 1 so events flow both ways again. Returns the new streams, still consuming.
async fn recover_after_connection_loss(
    a: &Arc<dyn Transport>,
    b: &Arc<dyn Transport>,
    (mut sub_a, mut sub_b): (Subscriber, Subscriber),
    healthy: &str,
) -> (Subscriber, Subscriber) {
    for sub in [&mut sub_a, &mut sub_b] {
        sub.until_failure(&[super::support::PROBE, "before"]).await;
    }
    assert!(a.health().is_err(), "health reports the lost connection");
    a.publish(event(9, "nobody listens"))
        .await
        .expect("publish reconnects");
    assert_eq!(a.health(), Ok(healthy));

    let mut sub_a = Subscriber::start(a).await;
    let mut sub_b = Subscriber::start(b).await;
    sub_a.settle(b, 1).await;
    sub_b.settle(a, 1).await;
    a.publish(event(1, "after-a")).await.expect("a publishes");
    b.publish(event(1, "after-b")).await.expect("b publishes");
    for sub in [&mut sub_a, &mut sub_b] {
        assert_eq!(
            sub.until(&["after-a", "after-b"]).await,
            sorted(&[(1, "after-a"), (1, "after-b")])
        );
    }
    (sub_a, sub_b)
}

/// A signal published on `a` reaches the node serving its room, as a signal, on the same
/// stream as durable events; one for a room nobody serves reaches no one.
pub async fn signals_reach_the_nodes_serving_their_room(nodes: Nodes) {
    let (a, b) = (nodes.node().transport, nodes.node().transport);
    let mut sub = Subscriber::start(&b).await;
    b.subscribe(1).await.expect("bound");
    sub.settle(&a, 1).await;
    let typing = |room| RoomEvent::typing(room, 7, "typist", true, "now");
    // Unserved: taken or dropped, never delivered (the fence below would come after it).
    let _ = a.signal(typing(2)).await;
    a.signal(typing(1))
        .await
        .expect("a connected transport takes a signal");
    let got = sub.next_real().await;
    assert!(got.is_signal(), "{got:?}");
    assert_eq!(
        (got.kind, got.chat_id, got.user_id),
        (EventKind::TypingStarted, 1, Some(7))
    );
    a.publish(event(1, "fence")).await.expect("a publishes");
    assert_eq!(sub.until(&["fence"]).await, sorted(&[(1, "fence")]));
}
