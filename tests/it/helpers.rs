//! Starts real nodes on random ports and talks to them over real HTTP and WebSocket.

use std::net::SocketAddr;
use std::time::Duration;

use chatnode::{Application, Config};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub const JWT_SECRET: &str = "integration-test-secret-0123456789";
pub const PASSWORD: &str = "a-long-passphrase-42";
/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestNode {
    pub address: SocketAddr,
    pub node_id: String,
    /// Keeps a PostgreSQL test database alive as long as the node.
    pub database: TestDatabase,
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub email: String,
    pub username: String,
    pub access: String,
    pub refresh: String,
}

pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config::new(data_dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.jwt_secret = Some(JWT_SECRET.to_string());
    // The suite registers many users from 127.0.0.1; tests/it/limits.rs turns limits on.
    config.limits.enabled = false;
    config
}

pub async fn spawn() -> TestNode {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestNode {
    let data_dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new().await;
    let mut config = test_config(data_dir.path());
    config.database_url = database.url.clone();
    adjust(&mut config);
    let mut node = start(config, data_dir).await;
    node.database = database;
    node
}

/// The database of a test node. The whole black-box suite runs on SQLite (a file in the
/// node's data directory), and again on PostgreSQL when built with the `postgres` feature
/// and given `CHATNODE_TEST_DATABASE_URL`: then each test gets a fresh database.
#[derive(Default)]
pub struct TestDatabase {
    /// `None`: the node's default SQLite file.
    pub url: Option<String>,
    #[cfg(feature = "postgres")]
    _fresh: Option<crate::backends::FreshDatabase>,
}

impl TestDatabase {
    #[cfg(feature = "postgres")]
    pub async fn new() -> Self {
        let fresh = crate::backends::fresh_database_url().await;
        Self {
            url: fresh.as_ref().map(|db| db.url.clone()),
            _fresh: fresh,
        }
    }

    #[cfg(not(feature = "postgres"))]
    pub async fn new() -> Self {
        Self::default()
    }

    /// The URL to give every node sharing this database; SQLite needs a file they all reach.
    pub fn shared_url(&self, sqlite_file: &std::path::Path) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", sqlite_file.display()))
    }
}

/// Starts a node on `config`, keeping `data_dir` alive as long as the node.
pub async fn start(config: Config, data_dir: tempfile::TempDir) -> TestNode {
    // Node logs, shown for failing tests; `RUST_LOG` sets the level (default: warnings).
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let node_id = config.node_id.clone();
    let app = Application::build(config).await.expect("node starts");
    let address = app.address();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let node = TestNode {
        address,
        node_id,
        database: TestDatabase::default(),
        base: format!("http://{address}"),
        client: reqwest::Client::new(),
        data_dir,
        shutdown,
        server,
    };
    node.wait_ready().await;
    node
}

impl TestNode {
    async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("node at {} never became ready", self.address);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the node and waits for `run` to return; returns the data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.server)
            .await
            .expect("node stops within the timeout")
            .unwrap();
        self.data_dir
    }

    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.expect("request is answered");
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("answer is not JSON ({status}): {text}"));
        (status, body)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path)), token).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(self.client.post(self.url(path)).json(&body), token)
            .await
    }

    pub async fn register(&self, name: &str) -> TestUser {
        self.register_with_phone(name, "+14155552671").await
    }

    /// [`Self::register`] with a phone number of its own (`register` gives every user the
    /// same one).
    pub async fn register_with_phone(&self, name: &str, phone: &str) -> TestUser {
        let email = format!("{name}@example.com");
        let (status, body) = self
            .post(
                "/api/v1/auth/register/",
                None,
                json!({
                    "email": email, "phone_number": phone, "password": PASSWORD,
                    "first_name": name, "last_name": "Tester",
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "register {name}: {body}");
        let data = &body["data"];
        TestUser {
            id: data["user"]["id"].as_i64().unwrap(),
            email,
            username: data["user"]["username"].as_str().unwrap().to_string(),
            access: data["credentials"]["access"].as_str().unwrap().to_string(),
            refresh: data["credentials"]["refresh"].as_str().unwrap().to_string(),
        }
    }

    pub async fn create_room(&self, owner: &TestUser, name: &str, members: &[&TestUser]) -> i64 {
        let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
        let (status, body) = self
            .post(
                "/api/v1/chat/chatrooms/create/",
                Some(&owner.access),
                json!({ "name": name, "members": ids }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create room: {body}");
        body["data"]["chatroom"]["id"].as_i64().unwrap()
    }

    pub async fn send_message(&self, user: &TestUser, room: i64, content: &str) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/v1/chat/chatrooms/{room}/messages/send/"),
                Some(&user.access),
                json!({ "content": content }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "send: {body}");
        body["data"]["detail"].clone()
    }

    pub async fn history(&self, user: &TestUser, room: i64, query: &str) -> Vec<Value> {
        let (status, body) = self
            .get(
                &format!("/api/v1/chat/chatrooms/{room}/messages/{query}"),
                Some(&user.access),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "history: {body}");
        body["data"]["detail"].as_array().unwrap().clone()
    }

    pub async fn socket_count(&self) -> u64 {
        // Counted also while the node is not ready (then the body is an error envelope).
        let (_, body) = self.get("/readyz", None).await;
        body["data"]["sockets"]
            .as_u64()
            .or(body["errors"]["sockets"].as_u64())
            .expect("readyz counts sockets")
    }

    pub fn ws_url(&self, room: i64, token: &str) -> String {
        format!("ws://{}/ws/chat/{room}/?token={token}", self.address)
    }

    /// A WebSocket to `room`, upgraded and registered with the node's hub.
    pub async fn ws(&self, room: i64, user: &TestUser) -> WsClient {
        let before = self.socket_count().await;
        let (stream, response) = tokio_tungstenite::connect_async(self.ws_url(room, &user.access))
            .await
            .expect("WebSocket connects");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        self.wait_for_sockets(before + 1).await;
        WsClient { stream }
    }

    /// Waits until the node has exactly `count` registered sockets.
    pub async fn wait_for_sockets(&self, count: u64) {
        self.wait_for_sockets_within(count, WAIT).await
    }

    /// [`Self::wait_for_sockets`] with a bound of its own, for a socket count that follows
    /// a long load (a loaded CI machine sends it more slowly).
    pub async fn wait_for_sockets_within(&self, count: u64, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        while self.socket_count().await != count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node never reached {count} sockets"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The HTTP status and JSON body of a refused WebSocket handshake.
    pub async fn refused_ws(&self, url: &str) -> (u16, Value) {
        let request = url.into_client_request().unwrap();
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => panic!("handshake to {url} was accepted"),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| serde_json::from_slice(b).expect("refusal body is JSON"))
                    .unwrap_or(Value::Null);
                (status, body)
            }
            Err(other) => panic!("unexpected handshake error: {other}"),
        }
    }
}

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Whether `frame` is a receipt frame (`receipt` or `receipts`), which the node writes on
/// every socket besides messages: readers of messages and errors skip them.
pub fn is_receipt(frame: &Value) -> bool {
    matches!(
        frame["data"]["purpose"].as_str(),
        Some("receipt" | "receipts")
    )
}

impl WsClient {
    /// The next text frame as JSON, receipt frames included (pings and pongs are skipped);
    /// `None` when `deadline` passes first.
    async fn next_frame_until(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?
                .expect("the socket is open")
                .expect("the frame is valid");
            match frame {
                Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame as JSON, receipt frames included (pings and pongs are skipped).
    pub async fn next_frame(&mut self) -> Value {
        self.next_frame_until(tokio::time::Instant::now() + WAIT)
            .await
            .expect("a frame arrives in time")
    }

    /// The next text frame as JSON that is not a receipt frame (see [`is_receipt`]).
    pub async fn next_json(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if !is_receipt(&frame) {
                return frame;
            }
        }
    }

    /// The `data` of the next broadcast frame (receipt frames skipped).
    pub async fn next_data(&mut self) -> Value {
        let frame = self.next_json().await;
        assert!(frame["data"].is_object(), "not a broadcast frame: {frame}");
        frame["data"].clone()
    }

    /// The `data` of the next frame whose `data.purpose` is `purpose`, skipping others,
    /// within [`WAIT`].
    pub async fn next_purpose(&mut self, purpose: &str) -> Value {
        self.next_purpose_within(purpose, WAIT)
            .await
            .unwrap_or_else(|| panic!("no {purpose:?} frame within {WAIT:?}"))
    }

    /// The `data` of the next frame whose `data.purpose` is `purpose`, or `None` when none
    /// arrives within `window`.
    pub async fn next_purpose_within(&mut self, purpose: &str, window: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let frame = self.next_frame_until(deadline).await?;
            if frame["data"]["purpose"] == purpose {
                return Some(frame["data"].clone());
            }
        }
    }

    /// The `data` of the next `receipt` frame of `event` ("read" or "delivered") for
    /// `user_id` whose `upto` is at least `upto` (earlier receipts and other frames skipped),
    /// within [`WAIT`].
    pub async fn next_receipt(&mut self, event: &str, user_id: i64, upto: i64) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(data) = self.next_purpose_within("receipt", left).await else {
                panic!(
                    "no {event:?} receipt for user {user_id} reaching {upto} within {WAIT:?}; \
                     receipts seen: {seen:?}"
                );
            };
            if data["event"] == event
                && data["user_id"] == user_id
                && data["upto"].as_i64().is_some_and(|got| got >= upto)
            {
                return data;
            }
            seen.push(data);
        }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.stream
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::Text(text.into())).await.unwrap();
    }

    /// Reads until the server's close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            let frame = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("the close arrives in time");
            match frame {
                Some(Ok(Message::Close(Some(close)))) => {
                    return (close.code.into(), close.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket failed before a close frame: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    /// Asserts nothing but control frames and receipt frames arrives for `window`.
    pub async fn expect_silence(&mut self, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(Message::Text(text))))
                    if serde_json::from_str::<Value>(&text).is_ok_and(|f| is_receipt(&f)) =>
                {
                    continue
                }
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}

/// A client whose TCP receive window is tiny and which never reads: a slow reader.
pub async fn stalled_ws(url: &str) -> WebSocketStream<TcpStream> {
    let address: SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(address).await.unwrap();
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (stream, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
        .await
        .expect("slow client connects");
    stream
}
