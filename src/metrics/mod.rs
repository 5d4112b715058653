//! Prometheus metrics: what a node counts on its hot paths (a relaxed atomic add each) and
//! the text exposition `/metrics` serves on `--metrics-listen`. No user or room id is ever a
//! label: routes are their templates, so the series stay a fixed, small set.

pub mod routes;

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

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
struct BuildLabels {
    version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    messages_stored: Counter,
    open_sockets: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chatnode");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        // 1 ms to ~16 s.
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's head to its answer, by route template",
            durations.clone(),
        );
        let messages_stored = Counter::default();
        registry.register(
            "messages_stored",
            "Messages stored by this node (REST and WebSocket sends)",
            messages_stored.clone(),
        );
        let open_sockets = Gauge::default();
        registry.register(
            "websocket_connections",
            "WebSockets open on this node",
            open_sockets.clone(),
        );
        let version = env!("CARGO_PKG_VERSION");
        registry.register(
            "build",
            "The running build",
            Info::new(BuildLabels { version }),
        );
        Self {
            registry,
            requests,
            durations,
            messages_stored,
            open_sockets,
        }
    }
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

    /// The text exposition, with the gauges read now.
    pub fn render(&self, open_sockets: usize) -> String {
        self.open_sockets
            .set(i64::try_from(open_sockets).unwrap_or(i64::MAX));
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
        let text = metrics.render(3);
        assert!(text.contains(
            "chatnode_http_requests_total{route=\"/api/v1/chat/chatrooms/{id}/messages/\",method=\"GET\",status=\"200\"} 2"
        ), "{text}");
        assert!(text.contains("route=\"other\""), "{text}");
        assert!(!text.contains("/42"), "no raw path is a label: {text}");
        assert!(!text.contains("BREW"), "nor an invented method: {text}");
        assert!(text.contains("method=\"other\",status=\"405\""), "{text}");
        assert!(text.contains("chatnode_messages_stored_total 1"), "{text}");
        assert!(text.contains("chatnode_websocket_connections 3"), "{text}");
        assert!(text.contains("chatnode_build_info{version="), "{text}");
        assert!(
            text.contains("chatnode_http_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
