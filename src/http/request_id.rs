//! Request ids: every answer carries `X-Request-Id`, the client's (or its proxy's) when it
//! sent a sane one, a fresh one otherwise, and every log line of the request carries it.

use std::fmt;

use warp::http::{HeaderMap, HeaderValue};

pub const HEADER: &str = "x-request-id";
/// Longest id taken from a request; a longer one is replaced, so logs stay bounded.
pub const MAX_LEN: usize = 128;

/// An id safe to log and to echo: 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 . _ : -`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    pub fn parse(raw: &str) -> Option<Self> {
        let sane = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        sane.then(|| Self(raw.to_string()))
    }

    /// A fresh id: 32 hex digits.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The request's own id if it sent a sane one, a fresh one otherwise.
    pub fn of(headers: &HeaderMap) -> Self {
        headers
            .get(HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::generate)
    }

    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0).expect("a parsed or generated id is a valid header")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        for kept in ["abc", "req-42_x.y:z", &"a".repeat(MAX_LEN)] {
            assert_eq!(RequestId::parse(kept).unwrap().to_string(), kept);
        }
        for refused in ["", "has space", "semi;colon", "é", &"a".repeat(MAX_LEN + 1)] {
            assert!(RequestId::parse(refused).is_none(), "{refused:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static("bad id"));
        let fresh = RequestId::of(&headers).to_string();
        assert_eq!(fresh.len(), 32);
        assert!(fresh.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
