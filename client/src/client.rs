//! The HTTP half: one [`Client`] per node, requests built on it, answers read as the
//! envelope. Typed endpoints live in `endpoints/`; this file is what they share.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, Error};

/// Bound on one request, from connect to the last byte of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's API at one base URL (`http://host:port`). Cheap to clone: clones share one
/// connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the node at `base` with [`REQUEST_TIMEOUT`] and TCP_NODELAY.
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            // Only a TLS backend or a system resolver config can fail here; neither is used.
            .expect("a plain HTTP client builds");
        Self::with_http(base, http)
    }

    /// A client on an HTTP client of your own (pool size, timeouts).
    pub fn with_http(base: impl Into<String>, http: reqwest::Client) -> Self {
        let base = base.into().trim_end_matches('/').to_string();
        Self { base, http }
    }

    /// `http://host:port`, as given.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `ws://` URL of `path`.
    pub fn ws_url(&self, path: &str) -> String {
        let rest = self.base.trim_start_matches("http://");
        format!("ws://{rest}{path}")
    }

    /// Any request: the typed endpoints are built on this, and tests use it for answers
    /// the typed layer would hide (headers, exact bodies, refusals).
    pub fn request(&self, method: Method, path: &str) -> Request {
        Request {
            method: method.to_string(),
            url: self.url(path),
            inner: self.http.request(method, self.url(path)),
        }
    }

    pub fn get(&self, path: &str) -> Request {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Request {
        self.request(Method::POST, path)
    }
}

/// A request being built; [`Request::send`] answers with the status and body whatever the
/// status, [`Request::data`] with the envelope's `data` or the error.
pub struct Request {
    method: String,
    url: String,
    inner: reqwest::RequestBuilder,
}

impl Request {
    /// `Authorization: Bearer <access token>`.
    pub fn token(mut self, access: &str) -> Self {
        self.inner = self.inner.bearer_auth(access);
        self
    }

    /// [`Self::token`] when there is one.
    pub fn maybe_token(self, access: Option<&str>) -> Self {
        match access {
            Some(access) => self.token(access),
            None => self,
        }
    }

    /// Query parameters, encoded.
    pub fn query(mut self, pairs: &impl Serialize) -> Self {
        self.inner = self.inner.query(pairs);
        self
    }

    pub fn json(mut self, body: &impl Serialize) -> Self {
        self.inner = self.inner.json(body);
        self
    }

    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let name = HeaderName::from_bytes(name.as_ref().as_bytes()).expect("a valid header name");
        let value = HeaderValue::from_str(value.as_ref()).expect("a valid header value");
        self.inner = self.inner.header(name, value);
        self
    }

    /// A body of raw bytes, sent as they are (set the content type with [`Self::header`]).
    pub fn body(mut self, bytes: impl Into<reqwest::Body>) -> Self {
        self.inner = self.inner.body(bytes);
        self
    }

    pub fn multipart(mut self, form: reqwest::multipart::Form) -> Self {
        self.inner = self.inner.multipart(form);
        self
    }

    pub fn timeout(mut self, bound: std::time::Duration) -> Self {
        self.inner = self.inner.timeout(bound);
        self
    }

    /// Sends the request and reads the whole answer.
    pub async fn send(self) -> Result<Answer, Error> {
        let failed = |source| Error::Http {
            method: self.method.clone(),
            url: self.url.clone(),
            source,
        };
        let response = self.inner.send().await.map_err(failed)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(failed)?;
        Ok(Answer {
            status,
            headers,
            bytes,
        })
    }

    /// Sends the request; the envelope's `data` when the status is `expected`, the typed
    /// error envelope when the node refused.
    pub async fn data<T: DeserializeOwned>(self, expected: StatusCode) -> Result<T, Error> {
        self.send().await?.data(expected)
    }
}

/// A whole answer: status, headers and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: bytes::Bytes,
}

impl Answer {
    /// The body as JSON; a body that is not JSON becomes a JSON string of its text.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.bytes).into_owned()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error envelope of a refusal; `None` for a success or a body that is not one.
    pub fn api_error(&self) -> Option<ApiError> {
        let body = self.json();
        if self.status.is_success() || body["success"] != Value::Bool(false) {
            return None;
        }
        Some(ApiError {
            status: self.status,
            errors: body["errors"].clone(),
            retry_after: self
                .header(RETRY_AFTER.as_str())
                .and_then(|s| s.parse().ok()),
            headers: self.headers.clone(),
        })
    }

    /// The envelope's `data` as `T` when the status is `expected`.
    pub fn data<T: DeserializeOwned>(&self, expected: StatusCode) -> Result<T, Error> {
        if self.status != expected {
            return Err(self
                .api_error()
                .map_or_else(|| self.unexpected(), |e| Error::Api(Box::new(e))));
        }
        let body = self.json();
        serde_json::from_value(body["data"].clone()).map_err(|_| self.unexpected())
    }

    fn unexpected(&self) -> Error {
        Error::Unexpected {
            status: self.status,
            body: self.text(),
        }
    }
}
