//! amqp10 on both brokers: the shared cases, and what only AMQP 1.0 has (addresses chosen by
//! broker version, outcomes, sharing an exchange with amqp091 nodes).

use std::future::Future;
use std::sync::Arc;

use chatnode::config::Amqp10Addressing;
use chatnode::transport::amqp::v10::{AddressFormat, Amqp10Transport};
use chatnode::transport::Transport;
use lapin::options::ExchangeDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use tokio::time::timeout;

use super::rabbitmq::{broker_url, with_exchange};
use super::support::{event, sorted, Subscriber, WAIT};
use super::{amqp10_node, RABBITMQ_3, RABBITMQ_4};

broker_suite!(Amqp10);

/// Runs an amqp10-only case as `rabbitmq_3::<case>` and `rabbitmq_4::<case>`.
macro_rules! on_both_brokers {
    ($case:ident) => {
        mod $case {
            #[tokio::test]
            #[ignore = "needs RabbitMQ: set CHATNODE_TEST_AMQP_URL"]
            async fn rabbitmq_3() {
                super::$case(super::RABBITMQ_3).await;
            }

            #[tokio::test]
            #[ignore = "needs RabbitMQ 4: set CHATNODE_TEST_AMQP4_URL"]
            async fn rabbitmq_4() {
                super::$case(super::RABBITMQ_4).await;
            }
        }
    };
}

/// Runs `test(url, exchange)` against a fresh exchange on the broker named by `broker`.
async fn on<F, Fut>(broker: &str, test: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    with_exchange(broker_url(broker), test).await;
}

fn node(url: &str, exchange: &str) -> Arc<Amqp10Transport> {
    amqp10_node(url, exchange, Amqp10Addressing::Auto)
}

async fn addresses_follow_the_broker_version(broker: &str) {
    on(broker, |url, exchange| async move {
        let a = node(&url, &exchange);
        a.publish(event(1, "connect")).await.expect("a publishes");
        let expected = if broker == RABBITMQ_4 {
            AddressFormat::V2
        } else {
            AddressFormat::V1
        };
        assert_eq!(a.address_format().await, Some(expected));
    })
    .await;
}
on_both_brokers!(addresses_follow_the_broker_version);

/// RabbitMQ 4 still accepts v1 addresses unless the deprecated feature is denied.
#[tokio::test]
#[ignore = "needs RabbitMQ 4: set CHATNODE_TEST_AMQP4_URL"]
async fn forced_v1_addresses_work_on_rabbitmq_4() {
    on(RABBITMQ_4, |url, exchange| async move {
        let (a, b) = (
            amqp10_node(&url, &exchange, Amqp10Addressing::V1),
            node(&url, &exchange),
        );
        let mut sub_a = Subscriber::start(&a).await;
        a.subscribe(1).await.expect("bound");
        sub_a.settle(&b, 1).await;
        assert_eq!(a.address_format().await, Some(AddressFormat::V1));
        assert_eq!(b.address_format().await, Some(AddressFormat::V2));
        a.publish(event(1, "over v1")).await.expect("a publishes");
        b.publish(event(1, "over v2")).await.expect("b publishes");
        assert_eq!(
            sub_a.until(&["over v1", "over v2"]).await,
            sorted(&[(1, "over v1"), (1, "over v2")])
        );
    })
    .await;
}

#[cfg(feature = "amqp091")]
async fn amqp091_and_amqp10_nodes_share_an_exchange(broker: &str) {
    on(broker, |url, exchange| async move {
        let a = node(&url, &exchange);
        let b = super::amqp091_node(&url, &exchange);
        let mut sub_a = Subscriber::start(&a).await;
        let mut sub_b = Subscriber::start(&b).await;
        for room in [1, 2] {
            a.subscribe(room).await.expect("bound");
        }
        for room in [1, 3] {
            b.subscribe(room).await.expect("bound");
        }
        // Each node settles on the other's events, so both directions work from here.
        for room in [1, 2] {
            sub_a.settle(&b, room).await;
        }
        for room in [1, 3] {
            sub_b.settle(&a, room).await;
        }
        for (room, message) in [(3, "a3"), (2, "a2"), (1, "a1")] {
            a.publish(event(room, message)).await.expect("a publishes");
        }
        for (room, message) in [(2, "b2"), (3, "b3"), (1, "b1")] {
            b.publish(event(room, message)).await.expect("b publishes");
        }
        assert_eq!(
            sub_a.until(&["a1", "b1"]).await,
            sorted(&[(1, "a1"), (1, "b1"), (2, "a2"), (2, "b2")])
        );
        assert_eq!(
            sub_b.until(&["a1", "b1"]).await,
            sorted(&[(1, "a1"), (1, "b1"), (3, "a3"), (3, "b3")])
        );
    })
    .await;
}
#[cfg(feature = "amqp091")]
on_both_brokers!(amqp091_and_amqp10_nodes_share_an_exchange);

async fn publishing_fails_when_the_broker_does_not_take_the_event(broker: &str) {
    on(broker, |url, exchange| async move {
        let a = node(&url, &exchange);
        a.publish(event(1, "taken")).await.expect("a publishes");
        let connection = timeout(
            WAIT,
            Connection::connect(&url, ConnectionProperties::default()),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        let channel = connection.create_channel().await.expect("a channel");
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .expect("exchange deleted");
        let _ = connection.close(200, "OK".into()).await;
        // v2 rejects the message; v1 ends the session. Either way the event is not taken.
        let published = timeout(WAIT, a.publish(event(1, "lost"))).await;
        let error = published.expect("in time").expect_err("nowhere to go");
        eprintln!("publish failed as expected: {}", error.chain());
    })
    .await;
}
on_both_brokers!(publishing_fails_when_the_broker_does_not_take_the_event);

#[tokio::test]
async fn an_unreachable_broker_fails_fast_and_reports_it() {
    // Nothing listens on port 1: construction works, every use fails in bounded time.
    let transport = Amqp10Transport::new(
        "amqp://guest:guest@127.0.0.1:1/%2f",
        "x",
        "n",
        Amqp10Addressing::Auto,
    )
    .expect("a valid URL is enough to build");
    super::cases::an_unreachable_broker_fails_fast(&transport).await;
    for url in ["not a url", "amqps://guest:guest@127.0.0.1/%2f"] {
        assert!(Amqp10Transport::new(url, "x", "n", Amqp10Addressing::Auto).is_err());
    }
}
