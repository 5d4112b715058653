//! CORS for browser clients on other origins: only the configured origins (none by default)
//! may read answers. Requests without an `Origin` (non-browser clients) are untouched.

use std::collections::HashSet;
use std::sync::Arc;

use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::ApiError;

const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
const ALLOW_HEADERS: &str = "authorization, content-type, x-request-id";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_SECS: &str = "600";

#[derive(Clone, Default)]
pub struct Cors {
    origins: Arc<HashSet<String>>,
}

impl Cors {
    /// Origins as `scheme://host[:port]`; a trailing `/` is ignored.
    pub fn new(origins: &[String]) -> Self {
        let origins = origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        Self {
            origins: Arc::new(origins),
        }
    }

    fn enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    fn allowed<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        headers
            .get(header::ORIGIN)
            .filter(|o| o.to_str().is_ok_and(|o| self.origins.contains(o)))
    }

    /// Answers a preflight (`OPTIONS` with `Access-Control-Request-Method`): 204 for an
    /// allowed origin, 403 otherwise. Any other request passes through.
    pub fn preflight(&self) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
        let cors = self.clone();
        // Not `warp::options()`: its "method not allowed" would outrank a later "not found".
        warp::method().and(warp::header::headers_cloned()).and_then(
            move |method: Method, headers: HeaderMap| {
                let answer = cors.answer_preflight(&method, &headers);
                async move { answer }
            },
        )
    }

    fn answer_preflight(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Response, Rejection> {
        if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Err(warp::reject::not_found());
        }
        if self.allowed(headers).is_none() {
            return Err(warp::reject::custom(ApiError::forbidden(
                "CORS: this origin is not allowed",
            )));
        }
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NO_CONTENT;
        let out = response.headers_mut();
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECS),
        );
        Ok(response)
    }

    /// Lets an allowed origin read `response` (errors included, so browsers see the envelope).
    pub fn decorate(&self, request: &HeaderMap, mut response: Response) -> Response {
        if !self.enabled() {
            return response;
        }
        let out = response.headers_mut();
        // Answers differ by origin: caches must not hand one origin's answer to another.
        out.append(header::VARY, HeaderValue::from_static("origin"));
        if let Some(origin) = self.allowed(request) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            out.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("retry-after, x-request-id"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers
    }

    #[test]
    fn only_configured_origins_are_allowed_exactly() {
        let cors = Cors::new(&["https://app.example.com/".into(), " ".into()]);
        assert!(cors
            .allowed(&with_origin("https://app.example.com"))
            .is_some());
        for other in [
            "https://evil.example.com",
            "http://app.example.com",
            "https://app.example.com.evil.net",
            "null",
        ] {
            assert!(cors.allowed(&with_origin(other)).is_none(), "{other}");
        }
        assert!(!Cors::new(&[]).enabled());
    }
}
