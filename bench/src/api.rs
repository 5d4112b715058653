//! The node's API as the bench uses it: targets, registration, rooms, sends and sockets.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// Bound on any one request, connect or handshake.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// tungstenite's default is 128 KiB per socket; thousands of receivers need far less.
const READ_BUFFER: usize = 4096;
const PASSWORD: &str = "bench-passphrase-42";

pub type Socket = WebSocketStream<TcpStream>;

/// A node to drive, resolved once to the address that answered.
#[derive(Debug, Clone)]
pub struct Target {
    /// As given on the command line.
    pub url: String,
    pub addr: SocketAddr,
}

impl Target {
    /// Resolves `url` (`http://host:port`) and checks a node listens there. Unless
    /// `allow_remote`, only loopback addresses are accepted, before and after resolution.
    pub async fn resolve(url: &str, allow_remote: bool) -> anyhow::Result<Self> {
        let parsed = Url::parse(url).with_context(|| format!("invalid target URL {url}"))?;
        if parsed.scheme() != "http" {
            bail!("target {url}: only http:// targets are supported");
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow!("target {url} has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = parsed.port_or_known_default().unwrap_or(80);
        if !allow_remote && !is_loopback_name(host) {
            bail!("target {url} is not a loopback address (127.0.0.0/8, ::1, localhost); pass --allow-remote to drive it anyway");
        }
        let addrs: Vec<SocketAddr> =
            timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .with_context(|| format!("resolving {url} timed out"))?
                .with_context(|| format!("cannot resolve {url}"))?
                .collect();
        if !allow_remote {
            if let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                bail!("target {url} resolves to {remote}, which is not loopback; pass --allow-remote to drive it anyway");
            }
        }
        // `localhost` may name ::1 and 127.0.0.1 while the node listens on one of them.
        for addr in &addrs {
            if let Ok(Ok(_)) = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                return Ok(Self {
                    url: url.to_string(),
                    addr: *addr,
                });
            }
        }
        bail!("no node answers at {url} (tried {addrs:?})")
    }

    fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn ws(&self, room: i64, token: &str, since: Option<i64>) -> String {
        let since = since.map_or(String::new(), |id| format!("&since={id}"));
        format!("ws://{}/ws/chat/{room}/?token={token}{since}", self.addr)
    }
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a request or handshake failed: the node's answer, or no answer at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The node answered with this status (and body, shortened).
    Status(StatusCode, String),
    /// No answer: connect, timeout, reset, handshake or protocol failure.
    Transport(String),
}

impl CallError {
    /// A short, low-cardinality name for counting errors by kind.
    pub fn kind(&self) -> String {
        match self {
            Self::Status(status, _) => format!("HTTP {}", status.as_u16()),
            Self::Transport(_) => "transport error".to_string(),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(status, body) => write!(f, "HTTP {status}: {body}"),
            Self::Transport(error) => f.write_str(error),
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub access: String,
}

/// An HTTP client: one keep-alive connection per target while used by one task at a time.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
}

impl Api {
    pub fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http })
    }

    async fn post(
        &self,
        target: &Target,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<(StatusCode, Value), CallError> {
        let mut request = self.http.post(target.http(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let transport = |e: reqwest::Error| CallError::Transport(describe(&e));
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    pub async fn register(&self, target: &Target, email: &str) -> anyhow::Result<User> {
        let body = json!({
            "email": email, "phone_number": "+14155552671", "password": PASSWORD,
            "first_name": "Bench", "last_name": "User",
        });
        let (status, body) = self
            .post(target, "/api/v1/auth/register/", None, &body)
            .await
            .map_err(|e| anyhow!("register {email} at {}: {e}", target.url))?;
        if status != StatusCode::CREATED {
            bail!("register {email} at {}: {status} {body}", target.url);
        }
        let data = &body["data"];
        Ok(User {
            id: data["user"]["id"]
                .as_i64()
                .ok_or_else(|| anyhow!("register answer without a user id: {body}"))?,
            access: data["credentials"]["access"]
                .as_str()
                .ok_or_else(|| anyhow!("register answer without an access token: {body}"))?
                .to_string(),
        })
    }

    pub async fn create_room(
        &self,
        target: &Target,
        owner: &User,
        name: &str,
        members: &[i64],
    ) -> anyhow::Result<i64> {
        let body = json!({ "name": name, "members": members });
        let (status, body) = self
            .post(
                target,
                "/api/v1/chat/chatrooms/create/",
                Some(&owner.access),
                &body,
            )
            .await
            .map_err(|e| anyhow!("create room at {}: {e}", target.url))?;
        if status != StatusCode::CREATED {
            bail!("create room at {}: {status} {body}", target.url);
        }
        body["data"]["chatroom"]["id"]
            .as_i64()
            .ok_or_else(|| anyhow!("create room answer without an id: {body}"))
    }

    /// Sends a message over REST; returns the stored message's id.
    pub async fn send(
        &self,
        target: &Target,
        user: &User,
        room: i64,
        content: &str,
    ) -> Result<i64, CallError> {
        let path = format!("/api/v1/chat/chatrooms/{room}/messages/send/");
        let body = json!({ "content": content });
        let body = self
            .expect(target, &path, user, &body, StatusCode::CREATED)
            .await?;
        body["data"]["detail"]["id"]
            .as_i64()
            .ok_or_else(|| CallError::Transport("send answer without a message id".to_string()))
    }

    /// Joins a room (`.../enter/`).
    pub async fn enter(&self, target: &Target, user: &User, room: i64) -> Result<(), CallError> {
        let path = format!("/api/v1/chat/chatrooms/{room}/enter/");
        self.expect(target, &path, user, &json!({}), StatusCode::OK)
            .await
            .map(drop)
    }

    /// Leaves a room.
    pub async fn leave(&self, target: &Target, user: &User, room: i64) -> Result<(), CallError> {
        let path = format!("/api/v1/chat/chatrooms/{room}/leave/");
        self.expect(target, &path, user, &json!({}), StatusCode::OK)
            .await
            .map(drop)
    }

    /// Marks a room read up to message `upto` (`.../read/`); returns the caller's read
    /// position after it (at least `upto` unless it was already further).
    pub async fn mark_read(
        &self,
        target: &Target,
        user: &User,
        room: i64,
        upto: i64,
    ) -> Result<i64, CallError> {
        let path = format!("/api/v1/chat/chatrooms/{room}/read/");
        let body = self
            .expect(
                target,
                &path,
                user,
                &json!({ "upto": upto }),
                StatusCode::OK,
            )
            .await?;
        body["data"]["read"]["upto"]
            .as_i64()
            .ok_or_else(|| CallError::Transport(format!("read answer without upto: {body:.200}")))
    }

    /// An authenticated GET of `path` (with its query); the status, the body's length in
    /// bytes and the body as JSON.
    pub async fn get(
        &self,
        target: &Target,
        path: &str,
        user: &User,
    ) -> Result<(StatusCode, usize, Value), CallError> {
        let transport = |e: reqwest::Error| CallError::Transport(describe(&e));
        let response = self
            .http
            .get(target.http(path))
            .bearer_auth(&user.access)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, bytes.len(), body))
    }

    /// An authenticated POST that must answer `expected`; any other status is an error.
    async fn expect(
        &self,
        target: &Target,
        path: &str,
        user: &User,
        body: &Value,
        expected: StatusCode,
    ) -> Result<Value, CallError> {
        let (status, body) = self.post(target, path, Some(&user.access), body).await?;
        if status == expected {
            Ok(body)
        } else {
            let mut body = body.to_string();
            body.truncate(200);
            Err(CallError::Status(status, body))
        }
    }

    /// The sockets the node has open, from `/readyz`.
    pub async fn sockets(&self, target: &Target) -> anyhow::Result<u64> {
        let response = self
            .http
            .get(target.http("/readyz"))
            .send()
            .await
            .map_err(|e| anyhow!("readyz at {}: {}", target.url, describe(&e)))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| anyhow!("readyz at {}: {}", target.url, describe(&e)))?;
        let data = if body["success"] == json!(true) {
            &body["data"]
        } else {
            &body["errors"]
        };
        data["sockets"]
            .as_u64()
            .ok_or_else(|| anyhow!("readyz at {} does not count sockets: {body}", target.url))
    }
}

/// reqwest's Display hides the cause ("error sending request"); the chain says why.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Opens a room's socket over a TCP connection of our own, with a small read buffer.
pub async fn open_socket(target: &Target, room: i64, token: &str) -> anyhow::Result<Socket> {
    open_socket_since(target, room, token, None)
        .await
        .map_err(|e| anyhow!("WebSocket to room {room} at {}: {e}", target.url))
}

/// Opens a room's socket; with `since`, the node first replays every message after that id.
pub async fn open_socket_since(
    target: &Target,
    room: i64,
    token: &str,
    since: Option<i64>,
) -> Result<Socket, CallError> {
    let transport = |what: String| CallError::Transport(what);
    let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr))
        .await
        .map_err(|_| transport("connect timed out".to_string()))?
        .map_err(|e| transport(format!("cannot connect: {e}")))?;
    // Frames are small; Nagle would hold a send back for the previous one's ACK.
    tcp.set_nodelay(true)
        .map_err(|e| transport(format!("TCP_NODELAY: {e}")))?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let request = target.ws(room, token, since);
    let (socket, _) = timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async_with_config(request, tcp, Some(config)),
    )
    .await
    .map_err(|_| transport("handshake timed out".to_string()))?
    .map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            CallError::Status(response.status(), "handshake refused".to_string())
        }
        other => transport(other.to_string()),
    })?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_targets_are_accepted_unless_allowed() {
        for url in [
            "http://10.0.0.1:8000",
            "http://192.168.1.2",
            "http://example.com:8000",
            "http://[2001:db8::1]:8000",
        ] {
            let error = Target::resolve(url, false).await.unwrap_err().to_string();
            assert!(error.contains("not a loopback"), "{url}: {error}");
        }
        let error = Target::resolve("https://127.0.0.1:8000", false)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("only http://"));
        for host in ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"] {
            assert!(is_loopback_name(host), "{host}");
        }
        assert!(!is_loopback_name("128.0.0.1"));
        assert!(!is_loopback_name("localhost.example.com"));
    }

    #[tokio::test]
    async fn a_loopback_target_resolves_to_the_address_that_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Target::resolve(&format!("http://localhost:{port}"), false)
            .await
            .unwrap();
        assert_eq!(target.addr, listener.local_addr().unwrap());
        drop(listener);
        let error = Target::resolve(&format!("http://127.0.0.1:{port}"), false)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("no node answers"));
    }
}
