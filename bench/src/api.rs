//! The node's API as the bench uses it, through `chatnode-client`: targets, registration,
//! rooms, sends and sockets, with errors counted by kind.

use std::net::{IpAddr, SocketAddr};

use anyhow::{anyhow, bail, Context};
use chatnode_client::{Client, Error as ClientError, NewAccount};
pub use chatnode_client::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
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

    /// `http://<the address that answered>`.
    fn base(&self) -> String {
        format!("http://{}", self.addr)
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

impl From<ClientError> for CallError {
    fn from(error: ClientError) -> Self {
        match &error {
            ClientError::Api(refusal) | ClientError::Refused(refusal) => {
                let mut body = refusal.errors.to_string();
                body.truncate(200);
                Self::Status(refusal.status, body)
            }
            ClientError::Unexpected { status, body } => {
                Self::Status(*status, body.chars().take(200).collect())
            }
            _ => Self::Transport(describe(&error)),
        }
    }
}

/// The node's API through `chatnode-client`, on one HTTP client: one keep-alive connection
/// per target while used by one task at a time.
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

    fn at(&self, target: &Target) -> Client {
        Client::with_http(target.base(), self.http.clone())
    }

    pub async fn register(&self, target: &Target, email: &str) -> anyhow::Result<User> {
        let account = NewAccount {
            email: email.to_string(),
            phone_number: "+14155552671".to_string(),
            password: PASSWORD.to_string(),
            first_name: "Bench".to_string(),
            last_name: "User".to_string(),
        };
        let session = self
            .at(target)
            .register(&account)
            .await
            .map_err(|e| anyhow!("register {email} at {}: {}", target.url, describe(&e)))?;
        Ok(User {
            id: session.user.id,
            access: session.credentials.access,
        })
    }

    pub async fn create_room(
        &self,
        target: &Target,
        owner: &User,
        name: &str,
        members: &[i64],
    ) -> anyhow::Result<i64> {
        let room = self
            .at(target)
            .create_room(&owner.access, name, members)
            .await
            .map_err(|e| anyhow!("create room at {}: {}", target.url, describe(&e)))?;
        Ok(room.id)
    }

    /// Sends a message over REST; returns the stored message's id.
    pub async fn send(
        &self,
        target: &Target,
        user: &User,
        room: i64,
        content: &str,
    ) -> Result<i64, CallError> {
        let sent = self.at(target).send(&user.access, room, content).await?;
        Ok(sent.id)
    }

    /// Joins a room (`.../enter/`).
    pub async fn enter(&self, target: &Target, user: &User, room: i64) -> Result<(), CallError> {
        self.at(target).enter(&user.access, room).await?;
        Ok(())
    }

    /// Leaves a room.
    pub async fn leave(&self, target: &Target, user: &User, room: i64) -> Result<(), CallError> {
        self.at(target).leave(&user.access, room).await?;
        Ok(())
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
        let read = self.at(target).mark_read(&user.access, room, upto).await?;
        Ok(read.upto)
    }

    /// An authenticated GET of `path` (with its query); the status, the body's length in
    /// bytes and the body as JSON.
    pub async fn get(
        &self,
        target: &Target,
        path: &str,
        user: &User,
    ) -> Result<(StatusCode, usize, Value), CallError> {
        let answer = self.at(target).get(path).token(&user.access).send().await?;
        Ok((answer.status, answer.bytes.len(), answer.json()))
    }

    /// The sockets the node has open, from `/readyz`.
    pub async fn sockets(&self, target: &Target) -> anyhow::Result<u64> {
        self.at(target)
            .socket_count()
            .await
            .map_err(|e| anyhow!("readyz at {}: {}", target.url, describe(&e)))
    }
}

/// The error and its causes: reqwest's Display alone hides why ("error sending request").
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
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
/// A socket needs no HTTP client, so none is built for it.
pub async fn open_socket_since(
    target: &Target,
    room: i64,
    token: &str,
    since: Option<i64>,
) -> Result<Socket, CallError> {
    let url = socket_url(target, room, token, since);
    let socket = chatnode_client::Socket::connect(&url, Some(READ_BUFFER)).await?;
    Ok(socket.into_inner())
}

/// The URL `Client::socket_with` opens for these options: the token, then `since`, in the
/// query.
fn socket_url(target: &Target, room: i64, token: &str, since: Option<i64>) -> String {
    let since = since.map_or(String::new(), |id| format!("&since={id}"));
    format!("ws://{}/ws/chat/{room}/?token={token}{since}", target.addr)
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

    #[test]
    fn the_socket_url_is_the_one_the_client_builds() {
        for addr in ["127.0.0.1:8000", "[::1]:9000"] {
            let target = Target {
                url: format!("http://{addr}"),
                addr: addr.parse().unwrap(),
            };
            let ws = Client::new(target.base()).ws_url("/ws/chat/7/");
            assert_eq!(
                socket_url(&target, 7, "tok", None),
                format!("{ws}?token=tok")
            );
            assert_eq!(
                socket_url(&target, 7, "tok", Some(42)),
                format!("{ws}?token=tok&since=42")
            );
        }
    }
}
