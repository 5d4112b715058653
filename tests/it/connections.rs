//! The accept loop's bounds over raw TCP: a connection that sends no request head in time is
//! closed (fresh or idle after a response), one client address cannot take every connection
//! slot, and a request head is capped at 32 KiB.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use chatnode_client::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{eventually, spawn_with, WAIT};

/// A connection to `node` from 127.0.0.`host` (all of 127.0.0.0/8 is loopback on Linux).
async fn connect_from(node: SocketAddr, host: u8) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)),
            0,
        ))
        .unwrap();
    socket.connect(node).await.unwrap()
}

/// Reads until the peer closes; fails the test if it is still open after [`WAIT`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the node never closed the connection");
    answer
}

/// One `GET path` with `Connection: close`, answered as (status, JSON body if any).
async fn get_closing(stream: &mut TcpStream, path: &str, extra_headers: &str) -> (u16, Value) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: chatnode\r\n{extra_headers}connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    parse(&read_until_closed(stream).await)
}

fn parse(answer: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| serde_json::from_str(body).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_after_the_header_timeout() {
    let node = spawn_with(|config| config.header_read_timeout_secs = 1).await;
    let mut silent = connect_from(node.address, 1).await;
    let answer = read_until_closed(&mut silent).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    node.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_idle_after_a_response_is_closed_after_the_header_timeout() {
    let node = spawn_with(|config| config.header_read_timeout_secs = 1).await;
    let mut stream = connect_from(node.address, 1).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: chatnode\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, then the connection, kept alive but sent nothing more, is closed.
    let (status, body) = parse(&read_until_closed(&mut stream).await);
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "ok");
    node.stop().await;
}

#[tokio::test]
async fn one_address_at_its_connection_cap_is_refused_while_others_get_in() {
    let node = spawn_with(|config| {
        config.limits.enabled = true;
        config.max_connections_per_address = 3;
    })
    .await;
    // Three silent connections from 127.0.0.3 take its places (accepted in arrival order).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(node.address, 3).await);
    }
    let mut fourth = connect_from(node.address, 3).await;
    let (status, body) = get_closing(&mut fourth, "/healthz", "").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["success"], false);
    let detail = body["errors"]["detail"].as_str().unwrap();
    assert!(detail.contains("from your address"), "{detail}");

    let mut other = connect_from(node.address, 2).await;
    let (status, body) = get_closing(&mut other, "/healthz", "").await;
    assert_eq!(status, 200, "{body}");

    // A closed connection gives its place back.
    held.pop();
    eventually(WAIT, "the place comes back", || async {
        let mut again = connect_from(node.address, 3).await;
        let (status, _) = get_closing(&mut again, "/healthz", "").await;
        if status == 200 {
            return Some(());
        }
        assert_eq!(status, 503);
        None
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn with_rate_limits_off_one_address_is_not_capped() {
    let node = spawn_with(|config| {
        config.limits.enabled = false;
        config.max_connections_per_address = 1;
    })
    .await;
    let _held = connect_from(node.address, 3).await;
    let mut second = connect_from(node.address, 3).await;
    let (status, body) = get_closing(&mut second, "/healthz", "").await;
    assert_eq!(status, 200, "{body}");
    node.stop().await;
}

#[tokio::test]
async fn a_request_head_over_32_kib_is_answered_431() {
    let node = spawn_with(|_| {}).await;
    let mut stream = connect_from(node.address, 1).await;
    let big = format!("x-filler: {}\r\n", "a".repeat(64 * 1024));
    let (status, _) = get_closing(&mut stream, "/healthz", &big).await;
    assert_eq!(status, 431);
    // A head well inside the cap is served as usual.
    let mut stream = connect_from(node.address, 1).await;
    let fine = format!("x-filler: {}\r\n", "a".repeat(16 * 1024));
    let (status, body) = get_closing(&mut stream, "/healthz", &fine).await;
    assert_eq!(
        StatusCode::from_u16(status).unwrap(),
        StatusCode::OK,
        "{body}"
    );
    node.stop().await;
}
