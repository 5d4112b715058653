//! What the real binary logs: never a secret, even at the most verbose level, and a lost
//! log pipe costs nothing but the log.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{is_receipt, WAIT};

const SECRET: &str = "log-test-signing-secret-4f1c9a";
const PASSWORD: &str = "log-test-passphrase-77";

/// Copies every line of `pipe` into `log`, reporting the bound address on `address`.
fn collect(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    address: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if line.contains("chatnode listening") {
                if let Some(rest) = line.split("\"address\":\"").nth(1) {
                    let _ = address.send(rest.split('"').next().unwrap().to_string());
                }
            }
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    })
}

/// The node's process, killed if the test fails before stopping it.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Node {
    /// `chatnode serve` with JSON logs at `rust_log` on both pipes, the secret on its
    /// command line.
    fn serve(data_dir: &std::path::Path, rust_log: &str) -> Self {
        Self(
            Command::new(env!("CARGO_BIN_EXE_chatnode"))
                .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
                .args(["--jwt-secret", SECRET, "--data-dir"])
                .arg(data_dir)
                .env("RUST_LOG", rust_log)
                .env_remove("CHATNODE_JWT_SECRET")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    /// SIGTERM, then waits (bounded) for the exit.
    fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        while self.0.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the node did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let request = client.post(url).json(&body);
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn passwords_tokens_and_the_jwt_secret_never_appear_in_the_logs() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut node = Node::serve(data_dir.path(), "trace");
    let log = Arc::new(Mutex::new(String::new()));
    let (found, address) = mpsc::channel();
    let readers = [
        collect(node.0.stdout.take().unwrap(), log.clone(), found.clone()),
        collect(node.0.stderr.take().unwrap(), log.clone(), found),
    ];
    let address = address
        .recv_timeout(WAIT)
        .expect("the node logs the address it bound");
    let api = format!("http://{address}/api/v1");
    let client = reqwest::Client::new();

    let registered = post(
        &client,
        format!("{api}/auth/register/"),
        None,
        json!({"email": "log@example.com", "phone_number": "+14155552671",
               "password": PASSWORD, "first_name": "L", "last_name": "G"}),
    )
    .await;
    let logged_in = post(
        &client,
        format!("{api}/auth/login/"),
        None,
        json!({"email": "log@example.com", "password": PASSWORD}),
    )
    .await;
    let wrong = post(
        &client,
        format!("{api}/auth/login/"),
        None,
        json!({"email": "log@example.com", "password": format!("{PASSWORD}-wrong")}),
    )
    .await;
    assert_eq!(wrong["success"], false);
    let credentials = &logged_in["data"]["credentials"];
    let access = credentials["access"].as_str().unwrap().to_string();
    let refresh = credentials["refresh"].as_str().unwrap().to_string();
    let refreshed = post(
        &client,
        format!("{api}/auth/refresh/"),
        None,
        json!({"refresh": refresh}),
    )
    .await;
    let fresh = refreshed["data"]["access"].as_str().unwrap().to_string();
    let room = post(
        &client,
        format!("{api}/chat/chatrooms/create/"),
        Some(&fresh),
        json!({"name": "logged"}),
    )
    .await["data"]["chatroom"]["id"]
        .as_i64()
        .unwrap();

    // The socket carries its token in the query string; refused ones too.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{address}/ws/chat/{room}/?token={access}"))
            .await
            .unwrap();
    socket
        .send(Message::Text(
            json!({"purpose": "send_chat_message", "message": "hello logs"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    // The echo, past the receipt frames the node also writes.
    let echoed = loop {
        let frame = tokio::time::timeout(WAIT, socket.next()).await.unwrap();
        match &frame {
            Some(Ok(Message::Text(text)))
                if serde_json::from_str::<Value>(text).is_ok_and(|f| is_receipt(&f)) =>
            {
                continue
            }
            _ => break frame,
        }
    };
    assert!(matches!(echoed, Some(Ok(Message::Text(_)))), "{echoed:?}");
    let mut with_header = format!("ws://{address}/ws/chat/{}/", room + 1)
        .into_client_request()
        .unwrap();
    with_header
        .headers_mut()
        .insert("authorization", format!("Bearer {fresh}").parse().unwrap());
    assert!(tokio_tungstenite::connect_async(with_header).await.is_err());
    let unknown = client
        .get(format!("{api}/nothing-here?token={refresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);
    let logged_out = post(
        &client,
        format!("{api}/auth/logout/"),
        None,
        json!({"refresh": refresh}),
    )
    .await;
    assert_eq!(logged_out["success"], true);
    drop(socket);
    node.stop();
    for reader in readers {
        reader.join().unwrap();
    }

    let log = log.lock().unwrap();
    assert!(
        log.contains("\"path\":\"/api/v1/auth/login/\""),
        "requests are logged: {log}"
    );
    let registered_access = registered["data"]["credentials"]["access"]
        .as_str()
        .unwrap();
    let mut secrets = vec![SECRET.to_string(), PASSWORD.to_string()];
    for token in [registered_access, &access, &refresh, &fresh] {
        secrets.push(token.to_string());
        // The signature alone is as good as the token to whoever can pair it with a payload.
        secrets.push(token.rsplit('.').next().unwrap().to_string());
    }
    for secret in secrets {
        assert!(
            !log.contains(&secret),
            "the log contains a secret ({secret}):\n{log}"
        );
    }
}

#[tokio::test]
async fn a_node_whose_log_pipes_are_gone_keeps_serving_and_stops_on_sigterm() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut node = Node::serve(data_dir.path(), "info");
    drop(node.0.stderr.take());
    let stdout = node.0.stdout.take().unwrap();
    // Reads up to the address, then closes the pipe: every later log line has no reader.
    let address = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let rest = line.split("\"address\":\"").nth(1)?;
                Some(rest.split('"').next()?.to_string())
            })
    });
    let address = tokio::time::timeout(WAIT, address)
        .await
        .expect("the node logs its address in time")
        .unwrap()
        .expect("the node logs its address");
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let health = client
            .get(format!("http://{address}/healthz"))
            .send()
            .await
            .expect("answered although its log is gone");
        assert_eq!(health.status(), reqwest::StatusCode::OK);
    }
    let registered = post(
        &client,
        format!("http://{address}/api/v1/auth/register/"),
        None,
        json!({"email": "quiet@example.com", "phone_number": "+14155552671",
               "password": PASSWORD, "first_name": "Q", "last_name": "T"}),
    )
    .await;
    assert_eq!(registered["success"], true, "{registered}");
    node.stop();
}
