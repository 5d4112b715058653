//! The read sides of a run: receivers account every frame (and mark rooms read if asked);
//! WebSocket senders' sockets are only watched for refusals, receipts and closes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::shared::Shared;
use super::CLOSE_TIMEOUT;
use crate::api::{Socket, REQUEST_TIMEOUT};
use crate::ledger::Tally;

/// `mark_read_every`: after every this many fresh messages, mark the room read up to the
/// last one over the socket.
pub(super) async fn receive(
    mut socket: Socket,
    shared: Arc<Shared>,
    room: u64,
    room_id: i64,
    mark_read_every: Option<u64>,
) -> Tally {
    let mut tally = Tally::new(shared.plan, shared.run, room);
    let mut unread = 0;
    loop {
        let frame = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            frame = socket.next() => frame,
        };
        let ended = match frame {
            Some(Ok(Message::Text(text))) => {
                let fresh = shared.take_frame(&text, room_id, &mut tally);
                let (Some(every), Some(id)) = (mark_read_every, fresh) else {
                    continue;
                };
                unread += 1;
                if unread < every {
                    continue;
                }
                unread = 0;
                let mark = json!({ "purpose": "mark_read", "upto": id }).to_string();
                match timeout(REQUEST_TIMEOUT, socket.send(Message::Text(mark.into()))).await {
                    Ok(Ok(())) => {
                        shared.reads_sent.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok(Err(error)) => format!("failed to write mark_read: {error}"),
                    Err(_) => "timed out writing mark_read".to_string(),
                }
            }
            // Pings are answered by tungstenite on the next read.
            Some(Ok(Message::Close(close))) => format!("closed by the node: {close:?}"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => format!("failed: {error}"),
            None => "ended without a close frame".to_string(),
        };
        tally.closed_early = true;
        shared.socket_closed(format!("receiver socket in room {room_id} {ended}"));
        return tally;
    }
    let _ = timeout(CLOSE_TIMEOUT, socket.close(None)).await;
    tally
}

pub(super) async fn watch_sender_socket(mut stream: SplitStream<Socket>, shared: Arc<Shared>) {
    loop {
        let frame = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return,
            frame = stream.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                // The node answers a refused send with an error frame on the sender's socket.
                if text.contains("\"success\":false") {
                    shared.send_error(format!("refused over WebSocket: {text:.200}"));
                } else {
                    shared.take_sender_frame(&text);
                }
            }
            Some(Ok(Message::Close(close))) => {
                return shared.socket_closed(format!("sender socket closed by the node: {close:?}"))
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                return shared.socket_closed(format!("sender socket failed: {error}"))
            }
            None => return shared.socket_closed("sender socket ended".to_string()),
        }
    }
}
