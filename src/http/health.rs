//! `/livez`, `/readyz` (`?verbose` for people) and `/healthz`, kept for compatibility.

use std::collections::HashMap;

use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::state::SharedState;
use crate::store::StoreError;

use super::{ok, with_state};

pub fn health_routes(state: SharedState) -> BoxedFilter<(Response,)> {
    let health = warp::path!("healthz").and(warp::get()).then(healthz);
    let live = warp::path!("livez").and(warp::get()).then(livez);
    let ready = warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state))
        .and(warp::query::<HashMap<String, String>>())
        .then(readyz);
    health.or(live).unify().or(ready).unify().boxed()
}

/// Liveness, as Kubernetes names it: the process answers (nothing else is checked, so a
/// broker or database outage never gets a node restarted).
#[utoipa::path(get, path = "/livez", tag = "operations",
    responses((status = 200, description = "The process is alive")))]
pub async fn livez() -> Response {
    ok(StatusCode::OK, json!({ "status": "ok" }))
}

/// Liveness under its older name, kept for compatibility: the same answer as `/livez`.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The node is up")))]
pub async fn healthz() -> Response {
    ok(StatusCode::OK, json!({ "status": "ok" }))
}

/// Readiness: storage answers and accepts writes, the data directory accepts writes, the
/// transport and its subscriber are running, and the node is not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    params(("verbose" = Option<String>, Query, description = "Present (any value): a plain-text report, one `[+]` or `[-]` line per check, as Kubernetes' own endpoints give")),
    responses((status = 200, description = "Ready to serve"),
              (status = 503, description = "A dependency is down, a disk is full or read-only, or the node is draining; the body says which")))]
pub async fn readyz(state: SharedState, query: HashMap<String, String>) -> Response {
    let store = state.store.ping().await;
    let dirs = [state.config.data_dir.clone(), state.config.media_dir()];
    let data_dir = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .try_for_each(|dir| crate::store::probe_writable(dir))
    })
    .await
    .unwrap_or_else(|e| Err(StoreError::backend("the disk probe panicked", e)));
    let subscriber = state.subscriber_up();
    // Each check: its name, and what it found (`Ok`) or why it failed (`Err`).
    let checks = [
        ("store", store.map(|()| "ok".into()).map_err(|e| e.chain())),
        (
            "data_dir",
            data_dir.map(|()| "ok".into()).map_err(|e| e.chain()),
        ),
        ("transport", state.transport.health().map(String::from)),
        (
            "subscriber",
            subscriber
                .then(|| "running".into())
                .ok_or_else(|| "down".into()),
        ),
        // Fails first in a drain, so a load balancer sends nothing new before the node stops.
        (
            "drain",
            if state.hub.is_draining() {
                Err("draining".into())
            } else {
                Ok("serving".into())
            },
        ),
    ];
    let ready = checks.iter().all(|(_, found)| found.is_ok());
    let sockets = state.hub.socket_count();
    if query.contains_key("verbose") {
        return verbose(ready, &checks, sockets);
    }
    let mut body = serde_json::Map::new();
    for (name, found) in &checks {
        let (Ok(said) | Err(said)) = found;
        body.insert((*name).into(), json!(said));
    }
    body.insert("sockets".into(), json!(sockets));
    if ready {
        ok(StatusCode::OK, Value::Object(body))
    } else {
        warp::reply::with_status(
            warp::reply::json(&super::failure(Value::Object(body))),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response()
    }
}

/// The report as text: `[+]name ok (what)` or `[-]name failed: why` per check, then the
/// verdict, as Kubernetes' own `?verbose` endpoints answer.
fn verbose(ready: bool, checks: &[(&str, Result<String, String>)], sockets: usize) -> Response {
    let mut text = String::new();
    for (name, found) in checks {
        match found {
            Ok(what) => text.push_str(&format!("[+]{name} ok ({what})\n")),
            Err(why) => text.push_str(&format!("[-]{name} failed: {why}\n")),
        }
    }
    text.push_str(&format!("sockets: {sockets}\n"));
    let (verdict, status) = if ready {
        ("readyz check passed", StatusCode::OK)
    } else {
        ("readyz check failed", StatusCode::SERVICE_UNAVAILABLE)
    };
    text.push_str(verdict);
    text.push('\n');
    warp::reply::with_status(text, status).into_response()
}
