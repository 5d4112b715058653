//! Prometheus metrics: what a node counts on its hot paths (a relaxed atomic add each) and
//! the text exposition `/metrics` serves on `--metrics-listen`. No user or room id is ever a
//! label: routes are their templates, so the series stay a fixed, small set.

pub mod routes;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

use crate::domain::OutboxDepth;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    /// The close code this node sent, `peer` when the client closed first, or `none` when
    /// the peer was dropped without a close frame.
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    messages_stored: Counter,
    open_sockets: Gauge,
    socket_closes: Family<CloseLabels, Counter>,
    frames_delivered: Counter,
    delivery_latency: Histogram,
    transport_up: Gauge,
    relay_lease: Gauge,
    outbox_rows: Gauge,
    outbox_age: Gauge<f64, AtomicU64>,
}

/// What a scrape reads from the node itself rather than counts.
pub struct Snapshot {
    pub open_sockets: usize,
    pub transport_up: bool,
    /// `None` when the store did not answer: the outbox gauges keep their last value.
    pub outbox: Option<OutboxDepth>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chatnode");
        let r = &mut registry;
        // 1 ms to ~16 s.
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let version = env!("CARGO_PKG_VERSION");
        r.register(
            "build",
            "The running build",
            Info::new(BuildLabels { version }),
        );
        Self {
            requests: registered(
                r,
                "http_requests",
                "HTTP requests answered, by route template, method and status",
                Family::default(),
            ),
            durations: registered(
                r,
                "http_request_duration_seconds",
                "Time from a request's head to its answer, by route template",
                durations,
            ),
            messages_stored: registered(
                r,
                "messages_stored",
                "Messages stored by this node (REST and WebSocket sends)",
                Counter::default(),
            ),
            open_sockets: registered(
                r,
                "websocket_connections",
                "WebSockets open on this node",
                Gauge::default(),
            ),
            socket_closes: registered(
                r,
                "websocket_closes",
                "WebSockets ended, by the close code this node sent (peer: the client closed first; none: dropped)",
                Family::default(),
            ),
            frames_delivered: registered(
                r,
                "frames_delivered",
                "Frames written to this node's WebSockets (messages, notices, receipts, signals)",
                Counter::default(),
            ),
            // 0.5 ms to ~8 s.
            delivery_latency: registered(
                r,
                "delivery_latency_seconds",
                "From a message's storing (its timestamp) to its hand-over to this node's sockets",
                Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            ),
            transport_up: registered(
                r,
                "transport_up",
                "1 while the transport can carry events, else 0",
                Gauge::default(),
            ),
            relay_lease: registered(
                r,
                "relay_lease_held",
                "1 while this node's relay holds the lease (publishes the outbox), else 0",
                Gauge::default(),
            ),
            outbox_rows: registered(
                r,
                "outbox_events",
                "Events stored and not yet published by a relay (every node sharing the database)",
                Gauge::default(),
            ),
            outbox_age: registered(
                r,
                "outbox_oldest_age_seconds",
                "Age of the oldest event waiting in the outbox, 0 when it is empty",
                Gauge::default(),
            ),
            registry,
        }
    }
}

/// Registers `metric` under `name` and hands it back (metrics are shared handles).
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// One answered request; `path` is mapped to its route template.
    pub fn request(&self, method: &str, path: &str, status: u16, took: Duration) {
        let route = routes::template(path);
        let labels = RequestLabels {
            route,
            method: routes::method(method),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    pub fn message_stored(&self) {
        self.messages_stored.inc();
    }

    /// A socket ended with `code` (`None`: dropped without a close frame).
    pub fn socket_closed(&self, code: Option<u16>) {
        let code = match code {
            Some(1000) => "1000",
            Some(1001) => "1001",
            Some(1002) => "1002",
            Some(1007) => "1007",
            Some(1008) => "1008",
            Some(1009) => "1009",
            Some(1011) => "1011",
            Some(_) => "other",
            None => "none",
        };
        self.socket_closes
            .get_or_create(&CloseLabels { code })
            .inc();
    }

    pub fn socket_closed_by_peer(&self) {
        let code = "peer";
        self.socket_closes
            .get_or_create(&CloseLabels { code })
            .inc();
    }

    pub fn frames_delivered(&self, frames: usize) {
        self.frames_delivered.inc_by(frames as u64);
    }

    /// A message stored at `stored_at` (RFC 3339) reached this node's sockets now.
    pub fn delivered(&self, stored_at: &str) {
        if let Ok(at) = chrono::DateTime::parse_from_rfc3339(stored_at) {
            let took = chrono::Utc::now().signed_duration_since(at);
            // Clocks of two nodes may disagree: a negative span says nothing.
            if let Ok(took) = took.to_std() {
                self.delivery_latency.observe(took.as_secs_f64());
            }
        }
    }

    pub fn relay_lease_held(&self, held: bool) {
        self.relay_lease.set(i64::from(held));
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, now: Snapshot) -> String {
        self.open_sockets
            .set(i64::try_from(now.open_sockets).unwrap_or(i64::MAX));
        self.transport_up.set(i64::from(now.transport_up));
        if let Some(outbox) = now.outbox {
            self.outbox_rows
                .set(i64::try_from(outbox.rows).unwrap_or(i64::MAX));
            let age = outbox.oldest_at.as_deref().and_then(|at| {
                let at = chrono::DateTime::parse_from_rfc3339(at).ok()?;
                chrono::Utc::now().signed_duration_since(at).to_std().ok()
            });
            self.outbox_age
                .set(age.map_or(0.0, |age| age.as_secs_f64()));
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_template_and_rendered_with_the_prefix() {
        let metrics = Metrics::default();
        let took = Duration::from_millis(3);
        metrics.request("GET", "/api/v1/chat/chatrooms/7/messages/", 200, took);
        metrics.request("GET", "/api/v1/chat/chatrooms/8/messages/", 200, took);
        metrics.request("GET", "/no/such/thing/42", 404, took);
        metrics.request("BREW", "/livez", 405, took);
        metrics.message_stored();
        metrics.socket_closed(Some(1008));
        metrics.socket_closed(Some(4321));
        metrics.frames_delivered(5);
        metrics.delivered(&crate::store::now_timestamp());
        metrics.relay_lease_held(true);
        let outbox = OutboxDepth {
            rows: 4,
            oldest_at: Some(crate::store::format_timestamp(
                chrono::Utc::now() - chrono::Duration::seconds(90),
            )),
        };
        let text = metrics.render(Snapshot {
            open_sockets: 3,
            transport_up: true,
            outbox: Some(outbox),
        });
        assert!(text.contains(
            "chatnode_http_requests_total{route=\"/api/v1/chat/chatrooms/{id}/messages/\",method=\"GET\",status=\"200\"} 2"
        ), "{text}");
        assert!(text.contains("route=\"other\""), "{text}");
        assert!(!text.contains("/42"), "no raw path is a label: {text}");
        assert!(!text.contains("BREW"), "nor an invented method: {text}");
        assert!(text.contains("method=\"other\",status=\"405\""), "{text}");
        assert!(text.contains("chatnode_messages_stored_total 1"), "{text}");
        assert!(text.contains("chatnode_websocket_connections 3"), "{text}");
        assert!(
            text.contains("chatnode_websocket_closes_total{code=\"1008\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chatnode_websocket_closes_total{code=\"other\"} 1"),
            "{text}"
        );
        assert!(text.contains("chatnode_frames_delivered_total 5"), "{text}");
        assert!(
            text.contains("chatnode_delivery_latency_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("chatnode_transport_up 1"), "{text}");
        assert!(text.contains("chatnode_relay_lease_held 1"), "{text}");
        assert!(text.contains("chatnode_outbox_events 4"), "{text}");
        let age = text
            .lines()
            .find_map(|l| l.strip_prefix("chatnode_outbox_oldest_age_seconds "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!((90.0..120.0).contains(&age), "{age}");
        assert!(text.contains("chatnode_build_info{version="), "{text}");
        assert!(
            text.contains("chatnode_http_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
