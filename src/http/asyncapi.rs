//! `/api/v1/asyncapi.json`: the AsyncAPI 3.0 document of the room events on the broker,
//! the bytes of `docs/asyncapi.json` (kept in the repository, where other teams read it and
//! the contract test checks published events against it).

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::Filter;

/// The document, compiled in so every node serves the contract it was built with.
pub const DOCUMENT: &str = include_str!("../../docs/asyncapi.json");

pub fn routes() -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "asyncapi.json")
        .and(warp::get())
        .then(document)
        .boxed()
}

/// The AsyncAPI document of the broker's room events, as it is (not in the envelope, like
/// `/api/v1/schema`).
#[utoipa::path(get, path = "/api/v1/asyncapi.json", tag = "operations",
    responses((status = 200, description = "The AsyncAPI 3.0 document of the room events on the broker \
        (channel `room.{id}`, one message per event kind, the AMQP 0-9-1 bindings): the bytes of \
        `docs/asyncapi.json`, as it is, not in the envelope",
        content_type = "application/json")))]
pub async fn document() -> Response {
    let mut response = Response::new(DOCUMENT.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
