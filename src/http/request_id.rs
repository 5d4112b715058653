//! Request ids on the wire: every answer carries `X-Request-Id`, the client's (or its
//! proxy's) when it sent a sane one, a fresh one otherwise ([`RequestId`] in the domain).

use warp::http::{HeaderMap, HeaderValue};

pub use crate::domain::request_id::RequestId;

pub const HEADER: &str = "x-request-id";

/// The request's own id if it sent a sane one, a fresh one otherwise.
pub fn of(headers: &HeaderMap) -> RequestId {
    headers
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate)
}

pub fn header_value(id: &RequestId) -> HeaderValue {
    HeaderValue::from_str(id.as_str()).expect("a parsed or generated id is a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_header_is_kept_and_another_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static("req-7"));
        assert_eq!(of(&headers).as_str(), "req-7");
        headers.insert(HEADER, HeaderValue::from_static("bad id"));
        assert_eq!(of(&headers).as_str().len(), 32);
    }
}
