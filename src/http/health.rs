//! `/healthz` and `/readyz`.

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::state::SharedState;
use crate::store::StoreError;

use super::{ok, with_state};

pub fn health_routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let live = warp::path!("healthz").and(warp::get()).then(healthz);
    let ready = warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state))
        .then(readyz);
    live.or(ready).unify().boxed()
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The node is up")))]
pub async fn healthz() -> Response {
    ok(StatusCode::OK, json!({ "status": "ok" }))
}

/// Readiness: storage answers and accepts writes, the data directory accepts writes, and the
/// transport and its subscriber are running.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready to serve"),
              (status = 503, description = "A dependency is down or a disk is full or read-only; the body says which")))]
pub async fn readyz(state: SharedState) -> Response {
    let store = state.store.ping().await;
    let dirs = [state.config.data_dir.clone(), state.config.media_dir()];
    let data_dir = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .try_for_each(|dir| crate::store::probe_writable(dir))
    })
    .await
    .unwrap_or_else(|e| Err(StoreError::backend("the disk probe panicked", e)));
    let transport = state.transport.health();
    let subscriber = state.subscriber_up();
    let ready = store.is_ok() && data_dir.is_ok() && transport.is_ok() && subscriber;
    let body = json!({
        "store": match &store { Ok(()) => json!("ok"), Err(e) => json!(e.chain()) },
        "data_dir": match &data_dir { Ok(()) => json!("ok"), Err(e) => json!(e.chain()) },
        "transport": match &transport { Ok(kind) => json!(kind), Err(e) => json!(e) },
        "subscriber": if subscriber { "running" } else { "down" },
        "sockets": state.hub.socket_count(),
    });
    if ready {
        ok(StatusCode::OK, body)
    } else {
        warp::reply::with_status(
            warp::reply::json(&super::failure(body)),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response()
    }
}
