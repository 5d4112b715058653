//! `/metrics` on the `--metrics-listen` address: the node's Prometheus metrics as text.

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::state::SharedState;

/// The OpenMetrics text format, which Prometheus scrapes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn metrics_routes(state: SharedState) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .map(move || {
            let transport_up = state.transport.health().is_ok();
            let text = state.metrics.render(state.hub.socket_count(), transport_up);
            let mut response = text.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        })
        .boxed()
}
