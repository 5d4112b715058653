//! The HTTP face: routes, the response envelope and the one place errors become statuses.

pub mod asyncapi;
pub mod auth;
pub mod conversations;
pub mod cors;
pub mod docs;
pub mod edits;
mod envelope;
pub mod events;
mod extract;
mod health;
pub mod media;
pub mod messages;
mod metrics;
pub mod presence;
mod ranges;
pub mod reactions;
pub mod receipts;
pub mod request_id;
pub mod rooms;
pub mod server;
pub mod shed;
pub mod users;
pub mod ws;

use warp::filters::BoxedFilter;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::state::SharedState;

pub use envelope::{error_response, failure, ok, recover, respond, ApiError, Detail};
pub use extract::{
    authenticated, bearer, check_json_depth, json_body, json_content_type, limited_body,
    page_limit, parse_json, room_id, user_for_token, user_id, with_state,
};
use health::health_routes;
pub use metrics::metrics_routes;

/// Largest JSON body accepted anywhere.
pub const MAX_JSON_BODY: u64 = 64 * 1024;
/// Deepest nesting of arrays and objects accepted in JSON (bodies and WebSocket frames).
pub const MAX_JSON_DEPTH: usize = 32;
/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Every route of the node, errors answered by [`recover`], one log line per request.
pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let api = auth::routes(state.clone())
        .or(rooms::routes(state.clone()))
        .unify()
        .or(messages::routes(state.clone()))
        .unify()
        .or(edits::routes(state.clone()))
        .unify()
        .or(reactions::routes(state.clone()))
        .unify()
        .or(events::routes(state.clone()))
        .unify()
        .or(conversations::routes(state.clone()))
        .unify()
        .or(receipts::routes(state.clone()))
        .unify()
        .or(users::routes(state.clone()))
        .unify()
        .or(presence::routes(state.clone()))
        .unify()
        .or(ws::routes(state.clone()))
        .unify()
        .or(media::routes(state.clone()))
        .unify()
        .or(docs::routes())
        .unify()
        .or(asyncapi::routes())
        .unify();
    // Every request but the health checks holds an in-flight slot while it is handled.
    let inflight = shed::Slots::new(
        state.config.max_inflight_requests,
        "The server is busy; try again shortly",
        state.metrics.shed(crate::metrics::Shed::Inflight).clone(),
    );
    let api = inflight
        .gate()
        .and(api)
        .map(|_slot, response: Response| response);
    let cors = cors::Cors::new(&state.config.cors_origins);
    let counted = state.clone();
    let api = health_routes(state)
        .or(cors.preflight())
        .unify()
        .or(api)
        .unify();
    // Only the path is logged: query strings carry tokens (`?token=`) and headers credentials.
    let log = warp::log::custom(move |info: warp::log::Info<'_>| {
        let status = info.status().as_u16();
        counted
            .metrics
            .request(info.method().as_str(), info.path(), status, info.elapsed());
        tracing::info!(
            target: "chatnode::request",
            method = %info.method(),
            path = info.path(),
            status = info.status().as_u16(),
            latency_ms = info.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    warp::header::headers_cloned()
        .and(api.recover(recover).unify())
        .map(
            move |request: warp::http::HeaderMap, mut response: Response| {
                let headers = response.headers_mut();
                headers.insert(
                    "x-content-type-options",
                    HeaderValue::from_static("nosniff"),
                );
                headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
                headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
                cors.decorate(&request, response)
            },
        )
        .with(log)
        .map(Reply::into_response)
        .boxed()
}
