//! The WebSocket close handshake (RFC 6455 5.5.1 and 7.4): a client's close is echoed, a
//! protocol error is answered with 1002 (1007 for invalid UTF-8) and a reason, and the node
//! closes TCP after its close frame. Checked with two real client libraries and with frames
//! written by hand.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn, TestNode, WAIT};

#[tokio::test]
async fn a_client_close_is_echoed_with_its_code_then_tcp_closes() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    for (code, reason) in [(1000, "bye"), (3001, "app-defined")] {
        let mut socket = node.ws(room, &alice).await;
        socket
            .stream()
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            })))
            .await
            .unwrap();
        // tokio-tungstenite yields the server's close frame, then the end of the stream.
        assert_eq!(socket.expect_close().await, (code, reason.to_string()));
        let end = tokio::time::timeout(WAIT, socket.stream().next())
            .await
            .expect("the node closes TCP");
        assert!(end.is_none(), "{end:?}");
    }
    node.wait_for_sockets(0).await;
}

/// Python's `websockets` (required: `.ci/run` installs it) closes with 1000 and reports what
/// it received (before the fix: no close frame, 1006); then the node closes one with 1009.
#[tokio::test]
async fn python_websockets_receives_the_echoed_1000() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let script = r#"
import asyncio, json, sys
try:
    from websockets.asyncio.client import connect
except ImportError:
    sys.exit("Python's websockets library is missing: pip install websockets")

async def main(url):
    async with connect(url, close_timeout=5) as ws:
        await ws.close(code=1000, reason="done")
        rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        print(json.dumps({
            "received": None if rcvd is None else [rcvd.code, rcvd.reason],
            "sent": [sent.code, sent.reason],
            # What an application sees: 1006 when no close frame came back.
            "close_code": ws.close_code,
        }))

    # The node closes (a message over 64 KiB): the library sees its 1009 and answers it.
    async with connect(url, close_timeout=5, max_size=None) as ws:
        await ws.send("x" * 70000)
        await ws.wait_closed()
        rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        print(json.dumps({
            "received": None if rcvd is None else [rcvd.code, rcvd.reason],
            "sent": None if sent is None else [sent.code, sent.reason],
        }))

asyncio.run(main(sys.argv[1]))
"#;
    let run = tokio::process::Command::new("python3")
        .args(["-c", script, &node.ws_url(room, &alice.access)])
        .output();
    let output = tokio::time::timeout(WAIT, run)
        .await
        .expect("the Python client finishes")
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python3 failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut reports = stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap());
    let report = reports.next().expect("the client's close is reported");
    assert_eq!(report["sent"], serde_json::json!([1000, "done"]));
    assert_eq!(report["close_code"], 1000, "{report}");
    assert_eq!(
        report["received"],
        serde_json::json!([1000, "done"]),
        "{stderr}"
    );
    let report = reports.next().expect("the node's close is reported");
    let closed = serde_json::json!([1009, "message too big"]);
    assert_eq!(report["received"], closed, "{stderr}");
    assert_eq!(
        report["sent"], closed,
        "the library answered the node's close"
    );
}

/// A raw client past the handshake: frames are written as given, nothing is checked.
async fn raw_socket(node: &TestNode, room: i64, token: &str) -> TcpStream {
    let tcp = TcpStream::connect(node.address).await.unwrap();
    upgrade(tcp, &node.address.to_string(), room, token).await
}

/// Completes the WebSocket handshake over `tcp` by hand.
pub async fn upgrade(mut tcp: TcpStream, host: &str, room: i64, token: &str) -> TcpStream {
    let request = format!(
        "GET /ws/chat/{room}/?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // The 101 head, byte by byte, so no frame byte after it is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    tcp
}

/// A client frame: `first` is the FIN/RSV/opcode byte; masked with a fixed key if `masked`.
pub fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut frame = vec![first];
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if masked {
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

/// Reads server frames until EOF; returns the close frame's code and reason, and the frames
/// that came after it (there must be none).
async fn close_then_eof(tcp: &mut TcpStream) -> (u16, String, usize) {
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut bytes))
        .await
        .expect("the node closes TCP")
        .expect("a clean FIN, not a reset");
    let mut at = 0;
    let mut close = None;
    let mut after = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        assert_eq!(bytes[at + 1] & 0x80, 0, "server frames are unmasked");
        let (len, start) = match bytes[at + 1] & 0x7f {
            126 => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                at + 4,
            ),
            127 => panic!("unexpected 64-bit length"),
            n => (n as usize, at + 2),
        };
        let payload = &bytes[start..start + len];
        if close.is_some() {
            after += 1;
        } else if opcode == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            close = Some((code, String::from_utf8(payload[2..].to_vec()).unwrap()));
        }
        at = start + len;
    }
    let (code, reason) = close.expect("a close frame before EOF");
    (code, reason, after)
}

#[tokio::test]
async fn protocol_errors_close_with_1002_or_1007_and_a_reason_before_eof() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, "r", &[]).await;
    let cases: [(&str, Vec<u8>, u16, &str); 9] = [
        (
            "continuation without a start",
            client_frame(0x80, b"x", true),
            1002,
            "continuation",
        ),
        (
            "invalid UTF-8 in a text frame",
            client_frame(0x81, &[0xc3, 0x28, 0xff], true),
            1007,
            "UTF-8",
        ),
        (
            "an unmasked client frame",
            client_frame(0x81, b"{}", false),
            1002,
            "unmasked",
        ),
        (
            "a reserved data opcode",
            client_frame(0x83, b"x", true),
            1002,
            "reserved opcode",
        ),
        (
            "a reserved control opcode",
            client_frame(0x8b, b"", true),
            1002,
            "reserved opcode",
        ),
        (
            "a ping over 125 bytes",
            client_frame(0x89, &[b'p'; 126], true),
            1002,
            "125",
        ),
        (
            "a fragmented ping",
            client_frame(0x09, b"p", true),
            1002,
            "fragmented",
        ),
        (
            "a reserved bit",
            client_frame(0xc1, b"{}", true),
            1002,
            "reserved bits",
        ),
        (
            "close code 999",
            client_frame(0x88, &999u16.to_be_bytes(), true),
            1002,
            "",
        ),
    ];
    for (what, frame, code, reason) in cases {
        let mut tcp = raw_socket(&node, room, &alice.access).await;
        node.wait_for_sockets(1).await;
        tcp.write_all(&frame).await.unwrap();
        let (got, got_reason, after) = close_then_eof(&mut tcp).await;
        assert_eq!(got, code, "{what}: {got_reason}");
        assert!(got_reason.contains(reason), "{what}: {got_reason:?}");
        assert!(!got_reason.is_empty(), "{what}: a reason is given");
        assert_eq!(after, 0, "{what}: nothing after the close frame");
        node.wait_for_sockets(0).await;
    }
    // A well-formed raw close is echoed the same way.
    let mut tcp = raw_socket(&node, room, &alice.access).await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"raw bye");
    tcp.write_all(&client_frame(0x88, &payload, true))
        .await
        .unwrap();
    let (code, reason, after) = close_then_eof(&mut tcp).await;
    assert_eq!((code, reason.as_str(), after), (1000, "raw bye", 0));
    // The node is unharmed.
    let mut socket = node.ws(room, &alice).await;
    node.send_message(&alice, room, "still serving").await;
    assert_eq!(socket.next_data().await["message"], "still serving");
    socket.expect_silence(Duration::from_millis(100)).await;
}
