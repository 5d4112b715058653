//! How a WebSocket ends (RFC 6455 sections 5.5.1 and 7): a client's close frame is echoed, a
//! client that breaks the protocol is told why (1002, or 1007 for invalid UTF-8), and the TCP
//! connection is closed only after the close frame has been written.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame};

use super::Socket;
use crate::hub::CloseReason;

/// How long a closing socket waits for its peer to take the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// After our close frame and FIN, how long the peer's remaining input is read and dropped.
const LINGER: Duration = Duration::from_secs(1);
/// At most this much of that input is read.
const LINGER_BYTES: usize = 64 * 1024;

pub const CLOSE_TOO_BIG: CloseReason = CloseReason {
    code: 1009,
    reason: "message too big",
};
const CLOSE_BAD_UTF8: CloseReason = CloseReason {
    code: 1007,
    reason: "invalid UTF-8 in a text frame",
};

/// How a socket ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Nothing can be sent: the peer is gone or stopped reading.
    Drop,
    /// The server closes with this code and reason.
    Close(CloseReason),
    /// The peer sent a close frame; tungstenite has queued the echo of its code (1002 for a
    /// code not allowed on the wire, such as 999), which only a flush sends.
    Echo,
}

impl From<CloseReason> for End {
    fn from(reason: CloseReason) -> Self {
        Self::Close(reason)
    }
}

const fn protocol(reason: &'static str) -> End {
    End::Close(CloseReason { code: 1002, reason })
}

/// How to end a socket whose read failed with `error`.
pub fn after_read_error(error: &WsError) -> End {
    use ProtocolError as P;
    match error {
        WsError::Capacity(_) => End::Close(CLOSE_TOO_BIG),
        WsError::Utf8(_) => End::Close(CLOSE_BAD_UTF8),
        WsError::Protocol(error) => match error {
            // The peer closed TCP: there is no one to tell.
            P::ResetWithoutClosingHandshake => End::Drop,
            P::UnmaskedFrameFromClient => protocol("unmasked client frame"),
            P::NonZeroReservedBits => protocol("reserved bits set"),
            P::FragmentedControlFrame => protocol("fragmented control frame"),
            P::ControlFrameTooBig => protocol("control frame over 125 bytes"),
            P::UnknownControlFrameType(_) | P::UnknownDataFrameType(_) | P::InvalidOpcode(_) => {
                protocol("reserved opcode")
            }
            P::UnexpectedContinueFrame => protocol("continuation frame without a start"),
            P::ExpectedFragment(_) => protocol("new message inside a fragmented one"),
            P::InvalidCloseSequence => protocol("invalid close frame"),
            _ => protocol("protocol error"),
        },
        _ => End::Drop,
    }
}

pub fn close_frame(reason: CloseReason) -> Frame {
    Frame::Close(Some(CloseFrame {
        code: CloseCode::from(reason.code),
        reason: reason.reason.into(),
    }))
}

/// Sends the close frame `end` calls for, then closes TCP: our FIN first, then the peer's
/// remaining input is read and dropped until its FIN (bounded), since closing a socket with
/// unread input sends a reset, which can destroy the close frame still in flight.
pub async fn finish(sink: SplitSink<Socket, Frame>, stream: SplitStream<Socket>, end: End) {
    let Ok(mut socket) = sink.reunite(stream) else {
        return;
    };
    // A peer that does not read its close frame must not hold shutdown up.
    let sent = timeout(CLOSE_TIMEOUT, async {
        match end {
            End::Drop => false,
            End::Close(reason) => socket.send(close_frame(reason)).await.is_ok(),
            End::Echo => socket.flush().await.is_ok(),
        }
    })
    .await;
    if sent != Ok(true) {
        return;
    }
    let io = socket.get_mut();
    let _ = timeout(LINGER, async {
        let _ = io.shutdown().await;
        let mut scratch = [0u8; 1024];
        let mut read = 0;
        while read < LINGER_BYTES {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}
