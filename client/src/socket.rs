//! The WebSocket half: a room's live feed (`/ws/chat/<room>/`), the frames a client sends,
//! and what arrives, raw or typed.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request as ClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::client::CONNECT_TIMEOUT;
use crate::error::{ApiError, Error};
use crate::Client;

/// How to open a socket.
#[derive(Debug, Clone, Default)]
pub struct SocketOptions {
    /// Replay every message after this id before going live.
    pub since: Option<i64>,
    /// Replay every event of the room's log after this position before going live.
    pub after_seq: Option<i64>,
    /// tungstenite's read buffer (default 128 KiB); thousands of sockets want far less.
    pub read_buffer: Option<usize>,
    /// Send the token as `Authorization: Bearer` instead of `?token=` (keeps it out of
    /// proxies' access logs; browsers cannot do this, other clients can).
    pub token_in_header: bool,
}

/// What arrives on a socket, pings and pongs aside.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A text frame, as JSON.
    Frame(Value),
    /// The node's close frame (1005 when it carried no code).
    Close { code: u16, reason: String },
    /// The connection ended without a close frame.
    Ended,
}

/// A frame, typed. Unknown purposes are [`Event::Other`], so newer nodes do not break it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message or a join/leave notice (`event` says which).
    Message(MessageFrame),
    /// A member's delivered or read position moved forward.
    Receipt(ReceiptFrame),
    /// Every member's positions: a socket's first frame.
    Positions(Value),
    /// The node cannot replay from the asked position: reload the history.
    Reset {
        chat_id: i64,
        reason: String,
    },
    /// The node refused a frame this client sent.
    Error(String),
    Other(Value),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessageFrame {
    /// `message`, `member_joined` or `member_left`.
    pub event: String,
    pub message: String,
    /// The sender's username (the bot's for notices).
    pub sender: String,
    /// The message id; `None` for notices.
    pub id: Option<i64>,
    pub chat_id: i64,
    pub sender_id: Option<i64>,
    pub file: Option<String>,
    pub created_at: String,
    /// The event's position in the room's log.
    #[serde(default)]
    pub seq: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReceiptFrame {
    /// `delivered` or `read`.
    pub event: String,
    pub chat_id: i64,
    pub user_id: i64,
    pub upto: i64,
    /// The event's position in the room's log.
    #[serde(default)]
    pub seq: Option<i64>,
}

impl Event {
    pub fn parse(frame: &Value) -> Self {
        let data = &frame["data"];
        let typed = match data["purpose"].as_str() {
            Some("new_chat_message") => serde_json::from_value(data.clone()).map(Self::Message),
            Some("receipt") => serde_json::from_value(data.clone()).map(Self::Receipt),
            Some("receipts") => Ok(Self::Positions(data["positions"].clone())),
            Some("reset") => Ok(Self::Reset {
                chat_id: data["chat_id"].as_i64().unwrap_or_default(),
                reason: data["reason"].as_str().unwrap_or_default().to_string(),
            }),
            _ if frame["success"] == false => Ok(Self::Error(
                frame["errors"]["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )),
            _ => Ok(Self::Other(frame.clone())),
        };
        typed.unwrap_or_else(|_| Self::Other(frame.clone()))
    }
}

/// An open socket to one room.
pub struct Socket {
    stream: WebSocketStream<TcpStream>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Socket")
    }
}

impl Client {
    /// Opens `room`'s socket as the holder of `access`.
    pub async fn socket(&self, room: i64, access: &str) -> Result<Socket, Error> {
        self.socket_with(room, access, &SocketOptions::default())
            .await
    }

    /// [`Client::socket`] with options (catch up from a message id, a small buffer).
    pub async fn socket_with(
        &self,
        room: i64,
        access: &str,
        options: &SocketOptions,
    ) -> Result<Socket, Error> {
        let mut query = Vec::new();
        if !options.token_in_header {
            query.push(format!("token={access}"));
        }
        if let Some(since) = options.since {
            query.push(format!("since={since}"));
        }
        if let Some(seq) = options.after_seq {
            query.push(format!("after_seq={seq}"));
        }
        let url = self.ws_url(&format!("/ws/chat/{room}/?{}", query.join("&")));
        let mut request =
            url.as_str()
                .into_client_request()
                .map_err(|source| Error::WebSocket {
                    what: "request",
                    source,
                })?;
        if options.token_in_header {
            let bearer = format!("Bearer {access}")
                .parse()
                .map_err(|_| Error::Unexpected {
                    status: reqwest::StatusCode::BAD_REQUEST,
                    body: "the token is not a valid header value".to_string(),
                })?;
            request.headers_mut().insert("authorization", bearer);
        }
        Socket::open(request, options.read_buffer).await
    }
}

impl Socket {
    /// Opens a socket at a full `ws://` URL, over a TCP connection with TCP_NODELAY.
    pub async fn connect(url: &str, read_buffer: Option<usize>) -> Result<Self, Error> {
        let request = url
            .into_client_request()
            .map_err(|source| Error::WebSocket {
                what: "request",
                source,
            })?;
        Self::open(request, read_buffer).await
    }

    async fn open(request: ClientRequest, read_buffer: Option<usize>) -> Result<Self, Error> {
        let url = request.uri().to_string();
        let address = authority(&url)?;
        let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| Error::Timeout(format!("connecting to {address}")))?
            .map_err(|source| Error::Process {
                what: format!("connecting to {address}"),
                source,
            })?;
        // Frames are small; Nagle would hold one back for the previous one's ACK.
        let _ = tcp.set_nodelay(true);
        let config = read_buffer.map(|size| WebSocketConfig::default().read_buffer_size(size));
        let handshake = tokio_tungstenite::client_async_with_config(request, tcp, config);
        let (stream, _) = timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| Error::Timeout("the WebSocket handshake".to_string()))?
            .map_err(refusal)?;
        Ok(Self { stream })
    }

    /// The next frame, close or end; `Ok(None)` when `within` passes first.
    pub async fn recv_within(&mut self, within: Duration) -> Result<Option<Incoming>, Error> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, self.stream.next()).await else {
                return Ok(None);
            };
            let message = match next {
                None => return Ok(Some(Incoming::Ended)),
                Some(message) => message.map_err(|source| Error::WebSocket {
                    what: "read",
                    source,
                })?,
            };
            match message {
                WsMessage::Text(text) => {
                    let frame = serde_json::from_str(&text).map_err(|source| Error::Frame {
                        text: text.to_string(),
                        source,
                    })?;
                    return Ok(Some(Incoming::Frame(frame)));
                }
                WsMessage::Close(close) => {
                    let (code, reason) = close.map_or((1005, String::new()), |c| {
                        (c.code.into(), c.reason.to_string())
                    });
                    return Ok(Some(Incoming::Close { code, reason }));
                }
                WsMessage::Binary(_) => {
                    return Err(Error::Unexpected {
                        status: reqwest::StatusCode::OK,
                        body: "a binary frame".to_string(),
                    })
                }
                _ => continue,
            }
        }
    }

    /// The next typed event, waiting at most `within`; `Ok(None)` on timeout, close or end.
    pub async fn event_within(&mut self, within: Duration) -> Result<Option<Event>, Error> {
        match self.recv_within(within).await? {
            Some(Incoming::Frame(frame)) => Ok(Some(Event::parse(&frame))),
            _ => Ok(None),
        }
    }

    /// `{"purpose": "send_chat_message", "message": content}`.
    pub async fn send_message(&mut self, content: &str) -> Result<(), Error> {
        self.send_json(&json!({ "purpose": "send_chat_message", "message": content }))
            .await
    }

    /// `{"purpose": "catch_up", "since": id}`: replay every message after `id`.
    pub async fn catch_up(&mut self, since: i64) -> Result<(), Error> {
        self.send_json(&json!({ "purpose": "catch_up", "since": since }))
            .await
    }

    /// `{"purpose": "mark_read", "upto": id}`.
    pub async fn mark_read(&mut self, upto: i64) -> Result<(), Error> {
        self.send_json(&json!({ "purpose": "mark_read", "upto": upto }))
            .await
    }

    pub async fn send_json(&mut self, frame: &Value) -> Result<(), Error> {
        self.send_raw(WsMessage::Text(frame.to_string().into()))
            .await
    }

    /// Any WebSocket message, as it is (tests send what a broken client would).
    pub async fn send_raw(&mut self, message: WsMessage) -> Result<(), Error> {
        self.stream
            .send(message)
            .await
            .map_err(|source| Error::WebSocket {
                what: "write",
                source,
            })
    }

    /// A clean close (1000), then waits for the node's answer.
    pub async fn close(mut self) -> Result<(), Error> {
        self.stream
            .close(None)
            .await
            .map_err(|source| Error::WebSocket {
                what: "close",
                source,
            })
    }

    /// The tungstenite stream, for callers that split it into halves.
    pub fn into_inner(self) -> WebSocketStream<TcpStream> {
        self.stream
    }

    pub fn stream_mut(&mut self) -> &mut WebSocketStream<TcpStream> {
        &mut self.stream
    }
}

/// `host:port` of a `ws://` URL.
fn authority(url: &str) -> Result<&str, Error> {
    url.strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .filter(|authority| !authority.is_empty())
        .ok_or_else(|| Error::Unexpected {
            status: reqwest::StatusCode::BAD_REQUEST,
            body: format!("{url} is not ws://<host>:<port>/..."),
        })
}

/// A refused handshake's answer as the error envelope; any other failure as it is.
fn refusal(error: tokio_tungstenite::tungstenite::Error) -> Error {
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            let errors = response
                .body()
                .as_ref()
                .and_then(|body| serde_json::from_slice::<Value>(body).ok())
                .map_or(Value::Null, |body| body["errors"].clone());
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            Error::Refused(Box::new(ApiError {
                status: reqwest::StatusCode::from_u16(response.status().as_u16())
                    .unwrap_or(reqwest::StatusCode::BAD_GATEWAY),
                errors,
                retry_after,
                headers: response.headers().clone(),
            }))
        }
        source => Error::WebSocket {
            what: "handshake",
            source,
        },
    }
}
