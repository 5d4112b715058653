//! `/metrics` on the `--metrics-listen` address: the node's Prometheus metrics as text.

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::metrics::Snapshot;
use crate::state::SharedState;

/// The OpenMetrics text format, which Prometheus scrapes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn metrics_routes(state: SharedState) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .then(move || {
            let state = state.clone();
            async move { scrape(&state).await }
        })
        .boxed()
}

/// The metrics, with what is read at scrape time (sockets, transport, outbox) read now.
async fn scrape(state: &SharedState) -> Response {
    let outbox = match state.store.outbox_depth().await {
        Ok(depth) => Some(depth),
        Err(error) => {
            tracing::debug!(error = %error.chain(), "outbox depth unknown for this scrape");
            None
        }
    };
    let now = Snapshot {
        open_sockets: state.hub.socket_count(),
        transport_up: state.transport.health().is_ok(),
        outbox,
        queue_depth: state.store.queue_depth(),
    };
    let mut response = state.metrics.render(now).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
