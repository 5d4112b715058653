//! A virtual user: its loop of actions at a steady pace and the sockets of its rooms.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use tokio::time::{interval_at, MissedTickBehavior};

use super::conn::{read_feed, Conn, ConnState};
use super::frames::content;
use super::mix::{Action, Mix};
use super::shared::Soak;
use crate::api::{open_socket_since, Api, Target, User};

/// One user's loop and its sockets.
pub(super) struct VirtualUser {
    pub(super) index: usize,
    pub(super) user: User,
    pub(super) target: Target,
    pub(super) api: Api,
    pub(super) rng: StdRng,
    pub(super) mix: Mix,
    pub(super) soak: Arc<Soak>,
    /// The rooms it is a member of, with their socket (`None`: not open now).
    pub(super) conns: BTreeMap<usize, Option<Conn>>,
    /// Messages it sent, numbering its contents.
    pub(super) sent: u64,
    /// Per room, the highest position it marked read (and the node confirmed).
    pub(super) read_upto: BTreeMap<usize, i64>,
}

impl VirtualUser {
    pub(super) async fn run(mut self, every: Duration, offset: Duration) -> Self {
        let mut ticks = interval_at(tokio::time::Instant::now() + offset, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.soak.stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            self.heal().await;
            let action = self.mix.pick(&mut self.rng);
            self.act(action).await;
        }
        // Every room it is in has a socket for the final drain.
        self.heal().await;
        self
    }

    /// Reopens (with `since`) the sockets of its rooms that the node closed or never opened.
    async fn heal(&mut self) {
        let dead: Vec<usize> = self
            .member_rooms()
            .into_iter()
            .filter(|&room| !self.socket_open(room))
            .collect();
        for room in dead {
            self.reopen(room).await;
        }
    }

    /// Closes the room's socket if open, and opens it again after the last id received.
    pub(super) async fn reopen(&mut self, room: usize) {
        if let Some(conn) = self.conns.get_mut(&room).and_then(Option::take) {
            conn.close().await;
        }
        let since = self.soak.ledger.track(self.index, room).cursor;
        self.open(room, since).await;
    }

    pub(super) async fn open(&mut self, room: usize, since: i64) -> bool {
        let room_id = self.soak.rooms[room];
        match open_socket_since(&self.target, room_id, &self.user.access, Some(since)).await {
            Ok(socket) => {
                let (sink, stream) = socket.split();
                let state = Arc::new(ConnState::default());
                let reader = tokio::spawn(read_feed(
                    stream,
                    self.soak.clone(),
                    self.index,
                    room,
                    state.clone(),
                ));
                self.conns.insert(
                    room,
                    Some(Conn {
                        sink,
                        reader,
                        state,
                    }),
                );
                true
            }
            Err(error) => {
                self.soak.error(
                    format!("socket: open refused ({})", error.kind()),
                    format!("room {room_id}: {error}"),
                );
                false
            }
        }
    }

    pub(super) fn socket_open(&self, room: usize) -> bool {
        self.conns
            .get(&room)
            .is_some_and(|c| c.as_ref().is_some_and(Conn::is_live))
    }

    fn member_rooms(&self) -> Vec<usize> {
        self.conns.keys().copied().collect()
    }

    fn other_rooms(&self) -> Vec<usize> {
        (0..self.soak.rooms.len())
            .filter(|r| !self.conns.contains_key(r))
            .collect()
    }

    /// Does `action`, or the nearest one that makes sense: never leave the last room (so that
    /// every user keeps sending), join when in no room, send over REST without a socket.
    async fn act(&mut self, action: Action) {
        let members = self.member_rooms();
        let others = self.other_rooms();
        let action = match action {
            _ if members.is_empty() && !others.is_empty() => Action::Join,
            Action::Join if others.is_empty() => Action::Ws,
            Action::Leave if members.len() < 2 => Action::Rest,
            other => other,
        };
        let Some(&room) = (match action {
            Action::Join => others.choose(&mut self.rng),
            _ => members.choose(&mut self.rng),
        }) else {
            return;
        };
        let newest_seen = self.soak.ledger.track(self.index, room).cursor;
        let action = match action {
            // Its reopening failed (and was counted) a moment ago.
            Action::Ws if !self.socket_open(room) => Action::Rest,
            // Nothing to mark read yet.
            Action::Read if newest_seen <= 0 => Action::Rest,
            other => other,
        };
        self.soak.counters.count(action);
        match action {
            Action::Rest => self.send_rest(room).await,
            Action::Ws => self.send_ws(room).await,
            Action::Join => self.join(room).await,
            Action::Leave => self.leave(room).await,
            Action::Reconnect => self.reopen(room).await,
            Action::Read => self.read(room, newest_seen).await,
        }
    }

    pub(super) fn next_content(&mut self) -> (u64, String) {
        self.sent += 1;
        let text = content(
            self.soak.run,
            self.index,
            self.sent,
            self.soak.message_bytes,
        );
        (self.sent, text)
    }

    pub(super) async fn close_all(&mut self) {
        for (_, conn) in std::mem::take(&mut self.conns) {
            if let Some(conn) = conn {
                conn.close().await;
            }
        }
    }
}
