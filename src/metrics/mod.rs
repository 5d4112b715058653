//! Prometheus metrics: what a node counts on its hot paths and the text exposition `/metrics`
//! serves on `--metrics-listen`. No user or room id is ever a label: routes are their
//! templates, so the series stay a fixed, small set. Without `--metrics-listen` the hot paths
//! record nothing (one branch each), the store is not wrapped and the transport not probed.

mod families;
pub mod routes;
mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use self::families::{
    Backlog, CloseLabels, Http, LimitLabels, Refusals, RequestLabels, RouteLabels, Sockets,
};
use self::store::{StoreProbe, TimedStore};
use crate::domain::OutboxDepth;
use crate::store::Store;
use crate::transport::Transport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Why a request was shed with a 503 (the `cause` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// `--max-inflight-requests` requests were being handled.
    Inflight,
    /// `--max-connections` WebSockets were open.
    Sockets,
    /// `--max-queued-writes` writes waited for the SQLite writer.
    WriteQueue,
    /// Every password-hashing worker was busy and `--hash-queue` full.
    HashQueue,
}

impl Shed {
    const ALL: [Shed; 4] = [
        Shed::Inflight,
        Shed::Sockets,
        Shed::WriteQueue,
        Shed::HashQueue,
    ];

    fn label(self) -> &'static str {
        match self {
            Shed::Inflight => "inflight",
            Shed::Sockets => "sockets",
            Shed::WriteQueue => "write_queue",
            Shed::HashQueue => "hash_queue",
        }
    }
}

/// What a broker transport records; handed to it only when metrics are on.
#[derive(Clone)]
pub struct TransportProbe {
    reconnects: Counter,
    confirms: Histogram,
}

impl TransportProbe {
    /// A broker connection came back after one was lost or failed.
    pub fn reconnected(&self) {
        self.reconnects.inc();
    }

    /// The broker confirmed (or settled) a batch published at `since`.
    pub fn confirmed(&self, since: Instant) {
        self.confirms.observe(since.elapsed().as_secs_f64());
    }
}

pub struct Metrics {
    /// `--metrics-listen` is set: without it nothing reads what would be recorded.
    on: bool,
    registry: Registry,
    http: Http,
    sockets: Sockets,
    backlog: Backlog,
    refusals: Refusals,
    transport: TransportProbe,
    store: StoreProbe,
}

/// What a scrape reads from the node itself rather than counts.
pub struct Snapshot {
    pub open_sockets: usize,
    pub transport_up: bool,
    /// `None` when the store did not answer: the outbox gauges keep their last value.
    pub outbox: Option<OutboxDepth>,
    pub queue_depth: usize,
}

impl Metrics {
    /// The node's metrics; `on` when they are served (`--metrics-listen`).
    pub fn new(on: bool) -> Self {
        let mut registry = Registry::with_prefix("chatnode");
        let r = &mut registry;
        let version = env!("CARGO_PKG_VERSION");
        r.register(
            "build",
            "The running build",
            Info::new(BuildLabels { version }),
        );
        let http = Http::register(r);
        let sockets = Sockets::register(r);
        let backlog = Backlog::register(r);
        let refusals = Refusals::register(r);
        let transport = families::transport(r);
        let write_queue_full = refusals.shed[Shed::WriteQueue as usize].clone();
        let store = families::store(r, write_queue_full);
        Self {
            on,
            registry,
            http,
            sockets,
            backlog,
            refusals,
            transport,
            store,
        }
    }

    /// `store`, timed per operation when metrics are on; as it is otherwise.
    pub fn timed(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        if !self.on {
            return store;
        }
        Arc::new(TimedStore::new(store, self.store.clone()))
    }

    /// Lets a broker transport record reconnects and confirm latency, when metrics are on.
    pub fn probe(&self, transport: &dyn Transport) {
        if self.on {
            transport.observe(self.transport.clone());
        }
    }

    /// The counter of refusals by rate limit `limit` (a name from `limits.rs`' fixed set).
    pub fn limit_refusals(&self, limit: &'static str) -> Counter {
        self.refusals
            .limits
            .get_or_create_owned(&LimitLabels { limit })
    }

    /// The counter of 503s for `cause`.
    pub fn shed(&self, cause: Shed) -> &Counter {
        &self.refusals.shed[cause as usize]
    }

    /// One answered request; `path` is mapped to its route template.
    pub fn request(&self, method: &str, path: &str, status: u16, took: Duration) {
        if !self.on {
            return;
        }
        let route = routes::template(path);
        let labels = RequestLabels {
            route,
            method: routes::method(method),
            status,
        };
        self.http.requests.get_or_create(&labels).inc();
        self.http
            .durations
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    pub fn message_stored(&self) {
        if self.on {
            self.http.messages_stored.inc();
        }
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
        self.socket_closes(code);
    }

    pub fn socket_closed_by_peer(&self) {
        self.socket_closes("peer");
    }

    fn socket_closes(&self, code: &'static str) {
        if self.on {
            self.sockets
                .closes
                .get_or_create(&CloseLabels { code })
                .inc();
        }
    }

    pub fn frames_delivered(&self, frames: usize) {
        if self.on {
            self.sockets.frames.inc_by(frames as u64);
        }
    }

    /// The start of a socket write to time, `None` when metrics are off.
    pub fn write_started(&self) -> Option<Instant> {
        self.on.then(Instant::now)
    }

    /// A socket write begun at `started` has been flushed.
    pub fn socket_written(&self, started: Option<Instant>) {
        if let Some(started) = started {
            self.sockets.writes.observe(started.elapsed().as_secs_f64());
        }
    }

    /// A message stored at `stored_at` (RFC 3339) reached this node's sockets now.
    pub fn delivered(&self, stored_at: &str) {
        if !self.on {
            return;
        }
        if let Ok(at) = chrono::DateTime::parse_from_rfc3339(stored_at) {
            let took = chrono::Utc::now().signed_duration_since(at);
            // Clocks of two nodes may disagree: a negative span says nothing.
            if let Ok(took) = took.to_std() {
                self.sockets.delivery_latency.observe(took.as_secs_f64());
            }
        }
    }

    pub fn relay_lease_held(&self, held: bool) {
        self.backlog.relay_lease.set(i64::from(held));
    }

    /// Whether this node's relay holds the lease (it alone can publish the outbox then).
    pub fn relay_lease_is_held(&self) -> bool {
        self.backlog.relay_lease.get() == 1
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, now: Snapshot) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let backlog = &self.backlog;
        self.sockets.open.set(gauge(now.open_sockets));
        backlog.transport_up.set(i64::from(now.transport_up));
        backlog.queue_depth.set(gauge(now.queue_depth));
        if let Some(outbox) = now.outbox {
            backlog
                .outbox_rows
                .set(i64::try_from(outbox.rows).unwrap_or(i64::MAX));
            let age = outbox.oldest_at.as_deref().and_then(|at| {
                let at = chrono::DateTime::parse_from_rfc3339(at).ok()?;
                chrono::Utc::now().signed_duration_since(at).to_std().ok()
            });
            backlog
                .outbox_age
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
        let metrics = Metrics::new(true);
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
            queue_depth: 2,
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
        assert!(text.contains("chatnode_store_queue_depth 2"), "{text}");
        assert!(
            text.contains("chatnode_http_request_duration_seconds_bucket"),
            "{text}"
        );
    }

    #[test]
    fn without_metrics_listen_the_hot_paths_record_nothing() {
        let metrics = Metrics::new(false);
        metrics.request("GET", "/livez", 200, Duration::from_millis(1));
        metrics.message_stored();
        metrics.frames_delivered(3);
        metrics.delivered(&crate::store::now_timestamp());
        assert_eq!(metrics.write_started(), None);
        let text = metrics.render(Snapshot {
            open_sockets: 0,
            transport_up: true,
            outbox: None,
            queue_depth: 0,
        });
        assert!(!text.contains("chatnode_http_requests_total{"), "{text}");
        assert!(text.contains("chatnode_messages_stored_total 0"), "{text}");
        assert!(text.contains("chatnode_frames_delivered_total 0"), "{text}");
        assert!(
            text.contains("chatnode_delivery_latency_seconds_count 0"),
            "{text}"
        );
    }
}
