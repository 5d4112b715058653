//! Starts real nodes on random ports and talks to them over real HTTP and WebSocket.

use std::net::SocketAddr;
use std::time::Duration;

use chatnode::{Application, Config};
use chatnode_client::{
    Client, Incoming, NewAccount, Request, Session, Socket, StatusCode, WsMessage,
};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;
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
    /// The node's API, as every client speaks it.
    pub api: Client,
    /// `/metrics`, when the node was started with `--metrics-listen`.
    pub metrics: Option<Client>,
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

impl From<Session> for TestUser {
    fn from(session: Session) -> Self {
        Self {
            id: session.user.id,
            email: session.user.email,
            username: session.user.username,
            access: session.credentials.access,
            refresh: session.credentials.refresh,
        }
    }
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
    let metrics = app
        .metrics_address()
        .map(|address| Client::new(format!("http://{address}")));
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let node = TestNode {
        address,
        node_id,
        database: TestDatabase::default(),
        api: Client::new(format!("http://{address}")),
        metrics,
        data_dir,
        shutdown,
        server,
    };
    node.wait_ready().await;
    node
}

impl TestNode {
    async fn wait_ready(&self) {
        let ready = eventually(WAIT, "the node is ready", || async {
            self.api.readyz().await.is_ok_and(|r| r.ready).then_some(())
        });
        ready.await
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

    /// Sends `request` (with `token`, if any); the status and the JSON body.
    pub async fn send(&self, request: Request, token: Option<&str>) -> (StatusCode, Value) {
        let answer = request
            .maybe_token(token)
            .send()
            .await
            .expect("request is answered");
        let body = serde_json::from_slice(&answer.bytes).unwrap_or_else(|_| {
            panic!("answer is not JSON ({}): {}", answer.status, answer.text())
        });
        (answer.status, body)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(self.api.get(path), token).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(self.api.post(path).json(&body), token).await
    }

    pub async fn register(&self, name: &str) -> TestUser {
        self.register_with_phone(name, "+14155552671").await
    }

    /// [`Self::register`] with a phone number of its own (`register` gives every user the
    /// same one).
    pub async fn register_with_phone(&self, name: &str, phone: &str) -> TestUser {
        let account = NewAccount {
            email: format!("{name}@example.com"),
            phone_number: phone.to_string(),
            password: PASSWORD.to_string(),
            first_name: name.to_string(),
            last_name: "Tester".to_string(),
        };
        let session = self
            .api
            .register(&account)
            .await
            .unwrap_or_else(|e| panic!("register {name}: {e}"));
        TestUser::from(session)
    }

    pub async fn create_room(&self, owner: &TestUser, name: &str, members: &[&TestUser]) -> i64 {
        let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
        let room = self.api.create_room(&owner.access, name, &ids).await;
        room.unwrap_or_else(|e| panic!("create room: {e}")).id
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

    /// Counted also while the node is not ready (then the body is an error envelope).
    pub async fn socket_count(&self) -> u64 {
        self.api
            .socket_count()
            .await
            .expect("readyz counts sockets")
    }

    pub fn ws_url(&self, room: i64, token: &str) -> String {
        self.api.ws_url(&format!("/ws/chat/{room}/?token={token}"))
    }

    /// A WebSocket to `room`, upgraded and registered with the node's hub.
    pub async fn ws(&self, room: i64, user: &TestUser) -> WsClient {
        let before = self.socket_count().await;
        let socket = self
            .api
            .socket(room, &user.access)
            .await
            .expect("WebSocket connects");
        self.wait_for_sockets(before + 1).await;
        WsClient { socket }
    }

    /// Waits until the node has exactly `count` registered sockets.
    pub async fn wait_for_sockets(&self, count: u64) {
        self.wait_for_sockets_within(count, WAIT).await
    }

    /// [`Self::wait_for_sockets`] with a bound of its own, for a socket count that follows
    /// a long load (a loaded CI machine sends it more slowly).
    pub async fn wait_for_sockets_within(&self, count: u64, bound: Duration) {
        let what = format!("the node has {count} sockets");
        eventually(bound, &what, || async {
            (self.socket_count().await == count).then_some(())
        })
        .await
    }

    /// The HTTP status and JSON body of a refused WebSocket handshake.
    pub async fn refused_ws(&self, url: &str) -> (u16, Value) {
        match Socket::connect(url, None).await {
            Ok(_) => panic!("handshake to {url} was accepted"),
            Err(chatnode_client::Error::Refused(refusal)) => {
                let body = json!({ "success": false, "errors": refusal.errors });
                (refusal.status.as_u16(), body)
            }
            Err(other) => panic!("unexpected handshake error: {other}"),
        }
    }
}

/// Polls `check` until it gives a value, for at most `bound`; panics naming `what` after.
/// Waits (at most `bound`) until the outbox of the database at `database_url` is empty:
/// every stored event has been published.
pub async fn outbox_drained(database_url: &str, bound: Duration) {
    let store = chatnode::store::open(database_url)
        .await
        .expect("open the database");
    eventually(bound, "the outbox drains", || async {
        store
            .outbox_batch(1)
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
}

pub async fn eventually<T, F, Fut>(bound: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll(bound, what, || {
        let attempt = check();
        async move { attempt.await.ok_or(None) }
    })
    .await
}

/// [`eventually`] for a check that says what it saw instead: polls `check` until it gives
/// `Ok`, for at most `bound`; panics naming `what` and the last `Err` after.
pub async fn eventually_ok<T, F, Fut>(bound: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    poll(bound, what, || {
        let attempt = check();
        async move { attempt.await.map_err(Some) }
    })
    .await
}

/// The one poll loop of [`eventually`] and [`eventually_ok`]: `Err` holds what the last
/// check saw, if it says.
async fn poll<T, F, Fut>(bound: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Option<String>>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            match last {
                Some(last) => panic!("not within {bound:?}: {what}; last: {last}"),
                None => panic!("not within {bound:?}: {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct WsClient {
    pub socket: Socket,
}

/// Whether `frame` is a receipt frame (`receipt` or `receipts`) or a presence frame, which
/// the node writes on sockets besides messages: readers of messages and errors skip them.
pub fn is_background(frame: &Value) -> bool {
    matches!(
        frame["data"]["purpose"].as_str(),
        Some("receipt" | "receipts" | "presence")
    )
}

impl WsClient {
    /// The tungstenite stream, for tests that write frames no client library would.
    pub fn stream(&mut self) -> &mut WebSocketStream<TcpStream> {
        self.socket.stream_mut()
    }

    /// The next text frame as JSON, receipt frames included (pings and pongs are skipped);
    /// `None` when `deadline` passes first.
    pub async fn next_frame_until(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self
            .socket
            .recv_within(left)
            .await
            .expect("the frame is valid")
        {
            None => None,
            Some(Incoming::Frame(frame)) => Some(frame),
            Some(other) => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame as JSON, receipt frames included (pings and pongs are skipped).
    pub async fn next_frame(&mut self) -> Value {
        self.next_frame_until(tokio::time::Instant::now() + WAIT)
            .await
            .expect("a frame arrives in time")
    }

    /// The next text frame as JSON that is neither a receipt nor a presence frame (see [`is_background`]).
    pub async fn next_json(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if !is_background(&frame) {
                return frame;
            }
        }
    }

    /// The `data` of the next broadcast frame (receipt and presence frames skipped).
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
        self.socket.send_json(&value).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send_raw(WsMessage::Text(text.into()))
            .await
            .unwrap();
    }

    /// Reads until the server's close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.socket.recv_within(WAIT).await {
                Ok(Some(Incoming::Close { code, reason })) => return (code, reason),
                Ok(Some(Incoming::Frame(_))) => continue,
                Ok(Some(Incoming::Ended)) => panic!("socket ended without a close frame"),
                Ok(None) => panic!("no close frame within {WAIT:?}"),
                Err(e) => panic!("socket failed before a close frame: {e}"),
            }
        }
    }

    /// Asserts nothing but control, receipt and presence frames arrives for `window`.
    pub async fn expect_silence(&mut self, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.socket.recv_within(left).await {
                Ok(None) => return,
                Ok(Some(Incoming::Frame(frame))) if is_background(&frame) => continue,
                other => panic!("expected silence, got {other:?}"),
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
