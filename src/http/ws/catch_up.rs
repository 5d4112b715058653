//! Catching a socket up: new messages after a message id (`since`), or every change after a
//! position of the room's log (`after_seq`), then live events, with no gap or duplicate.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::close::End;
use super::protocol::Start;
use super::session::{Feed, Sink, CLOSE_STORE_DOWN};
use crate::domain::conversations::RoomPositions;
use crate::domain::events::{EventKind, RoomEvent};
use crate::hub::CLOSE_LEFT_ROOM;
use crate::store::events::{LogPage, ReplayGap};
use crate::store::{Page, StoreError};

/// Messages or events read from the store per page of a catch-up: each page is written (and
/// the peer must take it) before the next is read, so a replay holds at most one page.
const CATCH_UP_PAGE: u32 = 200;

impl Feed {
    /// Replays from `start`; from now on de-duplicates by what `start` counts.
    pub(super) async fn catch_up(&mut self, sink: &mut Sink, start: Start) -> Result<(), End> {
        match start {
            Start::Since(from) => {
                self.by_seq = false;
                self.since(sink, from).await
            }
            Start::AfterSeq(after) => {
                self.by_seq = true;
                self.after_seq(sink, after).await
            }
        }
    }

    /// Sends every event of the room's log after position `after`, oldest first, page by
    /// page; a position the log cannot replay from is answered with a `reset` frame.
    async fn after_seq(&mut self, sink: &mut Sink, mut after: i64) -> Result<(), End> {
        self.seq = after;
        loop {
            let read = self
                .state
                .store
                .events_after(self.room, self.user, after, CATCH_UP_PAGE)
                .await
                .map_err(|error| self.store_failed(error))?;
            let page = match read {
                Ok(page) => page,
                Err(gap) => return self.reset(sink, gap).await,
            };
            let complete = page.events.len() < CATCH_UP_PAGE as usize;
            let Some(last) = page.events.last().and_then(|e| e.seq) else {
                return Ok(());
            };
            self.write_events(sink, page).await?;
            after = last;
            self.seq = self.seq.max(last);
            if complete {
                return Ok(());
            }
        }
    }

    /// Writes a page of the log as the live feed would have: the caller's own messages with
    /// their state, attachments with fresh signed URLs.
    async fn write_events(&mut self, sink: &mut Sink, page: LogPage) -> Result<(), End> {
        let user = self.user;
        let own = |e: &RoomEvent| e.kind == EventKind::Message && e.sender_id == Some(user);
        let positions = match page.events.iter().any(own) {
            true => Some(self.positions().await?),
            false => None,
        };
        let mut newest_other = None;
        let frames: Vec<Frame> = page
            .events
            .into_iter()
            .map(|mut event| {
                event.file = event.file.map(|path| self.state.media_urls.mint(&path));
                let frame = match (&positions, event.id) {
                    (Some(positions), Some(id)) if own(&event) => {
                        event.frame_for_sender(positions.state_of(id, user))
                    }
                    _ => event.frame_json(),
                };
                if let (EventKind::Message, Some(id)) = (event.kind, event.id) {
                    self.cursor = self.cursor.max(id);
                    if !own(&event) {
                        newest_other = newest_other.max(Some(id));
                    }
                }
                Frame::Text(frame.into())
            })
            .collect();
        self.write_all(sink, frames.into_iter()).await?;
        if let Some(newest) = newest_other {
            self.written = self.written.max(newest);
            self.mark_delivered();
        }
        Ok(())
    }

    /// Tells the client its position cannot be replayed from: it must reload the history.
    /// Live events follow.
    async fn reset(&mut self, sink: &mut Sink, gap: ReplayGap) -> Result<(), End> {
        let frame = json!({ "data": {
            "purpose": "reset",
            "chat_id": self.room,
            "reason": gap.reason(),
        }});
        self.write(sink, &mut vec![Frame::Text(frame.to_string().into())])
            .await
    }

    async fn positions(&self) -> Result<RoomPositions, End> {
        self.state
            .store
            .positions(self.room)
            .await
            .map_err(|error| self.store_failed(error))
    }

    /// How a failed read ends the socket: the room is gone for the user, or storage is.
    fn store_failed(&self, error: StoreError) -> End {
        match error {
            StoreError::NotMember | StoreError::RoomNotFound => CLOSE_LEFT_ROOM.into(),
            error => {
                tracing::warn!(room = self.room, error = %error.chain(), "catch-up failed");
                CLOSE_STORE_DOWN.into()
            }
        }
    }

    /// Sends every message after `from`, oldest first, page by page.
    async fn since(&mut self, sink: &mut Sink, mut from: i64) -> Result<(), End> {
        loop {
            let page = Page {
                limit: CATCH_UP_PAGE,
                before: None,
                after: Some(from),
            };
            let messages = self
                .state
                .store
                .messages(self.room, self.user, page)
                .await
                .map_err(|error| self.store_failed(error))?;
            let complete = messages.len() < CATCH_UP_PAGE as usize;
            let Some(last) = messages.last().map(|m| m.id) else {
                return Ok(());
            };
            let user = self.user;
            // The user's own messages carry their state, from the members' positions.
            let positions = match messages.iter().any(|m| m.sender_id == user) {
                true => Some(self.positions().await?),
                false => None,
            };
            // Nothing of a deleted message is served again.
            let frames = messages.iter().filter(|m| !m.deleted).map(|m| {
                let mut event = RoomEvent::message(m);
                event.file = event.file.map(|path| self.state.media_urls.mint(&path));
                let frame = match &positions {
                    Some(positions) if m.sender_id == user => {
                        event.frame_for_sender(positions.state_of(m.id, user))
                    }
                    _ => event.frame_json(),
                };
                Frame::Text(frame.into())
            });
            self.write_all(sink, frames).await?;
            if let Some(newest) = messages.iter().rev().find(|m| m.sender_id != user) {
                self.written = self.written.max(newest.id);
                self.mark_delivered();
            }
            from = last;
            self.cursor = self.cursor.max(last);
            if complete {
                return Ok(());
            }
        }
    }
}
