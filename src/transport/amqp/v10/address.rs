//! How RabbitMQ names exchanges and queues in AMQP 1.0 addresses, by broker version.

use fe2o3_amqp::types::messaging::{Data, Message, Properties, Target};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::transport::amqp::topology::routing_key;

/// What RFC 3986 leaves unescaped in a path segment, as RabbitMQ's v2 addresses expect.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How RabbitMQ names exchanges and queues in AMQP 1.0 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFormat {
    /// RabbitMQ 3.x (and 4.x while permitted): `/exchange/X` routing by message subject,
    /// `/amq/queue/Q`.
    V1,
    /// RabbitMQ 4.x: an anonymous sender with `to: /exchanges/X/key` per message, `/queues/Q`.
    V2,
}

impl AddressFormat {
    /// v2 from RabbitMQ 4.0 on; v1 before, and when the version is unknown, since 4.x still
    /// accepts v1 by default.
    pub(super) fn for_version(version: Option<&str>) -> Self {
        let major = version.and_then(|v| v.split('.').next()?.parse::<u32>().ok());
        match major {
            Some(major) if major >= 4 => AddressFormat::V2,
            _ => AddressFormat::V1,
        }
    }

    pub(super) fn publish_target(self, exchange: &str) -> Target {
        match self {
            AddressFormat::V1 => Target::builder()
                .address(format!("/exchange/{exchange}"))
                .build(),
            // No address: each message names its own destination.
            AddressFormat::V2 => Target::builder().build(),
        }
    }

    pub(super) fn message(self, exchange: &str, room: i64, body: Vec<u8>) -> Message<Data> {
        let key = routing_key(room);
        let properties = Properties::builder().content_type("application/json");
        let properties = match self {
            AddressFormat::V1 => properties.subject(key),
            AddressFormat::V2 => properties.to(format!(
                "/exchanges/{}/{}",
                utf8_percent_encode(exchange, PATH_SEGMENT),
                utf8_percent_encode(&key, PATH_SEGMENT)
            )),
        };
        Message::builder()
            .properties(properties.build())
            .data(body)
            .build()
    }

    pub(super) fn queue_source(self, queue: &str) -> String {
        match self {
            AddressFormat::V1 => format!("/amq/queue/{queue}"),
            AddressFormat::V2 => format!("/queues/{}", utf8_percent_encode(queue, PATH_SEGMENT)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_4_gets_v2_addresses_and_older_or_unknown_versions_v1() {
        for (version, format) in [
            (Some("3.10.8"), AddressFormat::V1),
            (Some("3.13.7"), AddressFormat::V1),
            (Some("4.0.5"), AddressFormat::V2),
            (Some("4.1.0-beta.1"), AddressFormat::V2),
            (Some("garbage"), AddressFormat::V1),
            (None, AddressFormat::V1),
        ] {
            assert_eq!(AddressFormat::for_version(version), format, "{version:?}");
        }
        let message = AddressFormat::V2.message("chat room", 7, b"{}".to_vec());
        let properties = message.properties.expect("properties");
        assert_eq!(
            properties.to.as_deref(),
            Some("/exchanges/chat%20room/room.7")
        );
        let message = AddressFormat::V1.message("chat", 7, b"{}".to_vec());
        assert_eq!(
            message.properties.expect("properties").subject.as_deref(),
            Some("room.7")
        );
        assert_eq!(
            AddressFormat::V2.queue_source("chatnode.x.node/1"),
            "/queues/chatnode.x.node%2F1"
        );
        assert_eq!(AddressFormat::V1.queue_source("q"), "/amq/queue/q");
    }
}
