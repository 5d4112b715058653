//! `--soak`: a bounded set of users churns for a long time: each sends over REST and over its
//! sockets, joins and leaves rooms, drops and reopens sockets with `?since=`, and marks rooms
//! read (over REST or its socket), at an offered rate. The report counts errors by kind,
//! samples memory over time, counts receipt frames and accounts every delivery exactly (see
//! `soak_ledger`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{self, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{interval, interval_at, timeout, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::api::{open_socket_since, Api, CallError, Socket, Target, User, REQUEST_TIMEOUT};
use super::load::{
    self, is_positive, ReceiptCounter, ReceiptFrames, ReceiptKind, OPEN_CONCURRENCY,
};
use super::memory::{MemorySample, RssTrend};
use super::procstat::{self, ProcessReport, Sample};
use super::progress::Progress;
use super::soak_ledger::{Audit, Ledger, Reception};

/// How long a socket may take to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Error messages kept for the report.
const ERROR_SAMPLES: usize = 10;
/// How often a waiting leaver or the final drain looks at the feeds.
const POLL: Duration = Duration::from_millis(10);
/// How long a `mark_read` over a socket may take to come back as the user's own read receipt
/// (the node coalesces receipts over ~200 ms).
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(5);
const PREFIX: &str = "soak:";

#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Users and rooms are spread round-robin over these.
    pub targets: Vec<Target>,
    pub users: usize,
    pub rooms: usize,
    pub duration: Duration,
    /// Offered actions per second, over all users.
    pub rate: f64,
    pub mix: Mix,
    pub seed: u64,
    pub message_bytes: usize,
    /// How long a leaver waits for its socket to catch up, and the final wait for stragglers.
    pub drain: Duration,
    /// Time between two memory samples.
    pub sample_every: Duration,
    /// Memory is flat when no node's mean RSS over the last third of the run exceeds the
    /// middle third's by more than this many percent.
    pub max_rss_growth: f64,
    /// Nodes whose memory is sampled.
    pub server_pids: Vec<i32>,
    pub progress: bool,
}

impl SoakOptions {
    /// Defaults for a soak of `duration` against `targets`: small enough for a shared machine.
    pub fn new(targets: Vec<Target>, duration: Duration) -> Self {
        Self {
            targets,
            users: 20,
            rooms: 10,
            duration,
            rate: 100.0,
            mix: Mix::default(),
            seed: rand::random(),
            message_bytes: 100,
            drain: Duration::from_secs(10),
            sample_every: Duration::from_secs(5),
            max_rss_growth: 10.0,
            server_pids: Vec::new(),
            progress: false,
        }
    }

    /// Sockets the soak may hold at once: every user in every room.
    pub fn sockets_needed(&self) -> u64 {
        (self.users * (self.rooms + 1)) as u64
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.targets.is_empty() {
            bail!("no target");
        }
        if self.users == 0 || self.rooms == 0 {
            bail!("--users and --rooms must be at least 1");
        }
        if !is_positive(self.rate) {
            bail!("--rate must be a positive number of actions per second");
        }
        if self.duration.is_zero() || self.sample_every.is_zero() {
            bail!("--duration and --sample-secs must be positive");
        }
        if self.max_rss_growth.is_nan() || self.max_rss_growth < 0.0 {
            bail!("--max-rss-growth must be a percentage");
        }
        if self.message_bytes > 10_000 {
            bail!("--message-bytes: the node accepts at most 10000 characters");
        }
        Ok(())
    }
}

/// What a virtual user does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST .../messages/send/`; acknowledged by its 201.
    Rest,
    /// A `send_chat_message` frame; acknowledged by its echo on the sender's own socket.
    Ws,
    /// Enter a room it is not in, then open the room's socket with `since`.
    Join,
    /// Leave a room (never its last one) once its socket has everything acknowledged.
    Leave,
    /// Close a socket and reopen it with `since` = the last id it received.
    Reconnect,
    /// Mark the newest message it has seen in a room read: `POST .../read/` (answered with
    /// its position), or a `mark_read` frame on the room's socket (answered by its own read
    /// receipt on that socket).
    Read,
}

const ACTIONS: [(Action, &str); 6] = [
    (Action::Rest, "rest"),
    (Action::Ws, "ws"),
    (Action::Join, "join"),
    (Action::Leave, "leave"),
    (Action::Reconnect, "reconnect"),
    (Action::Read, "read"),
];

/// Weights of the actions, e.g. `rest=36,ws=36,join=6,leave=6,reconnect=8,read=8`; an action
/// not named has weight 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix([u32; 6]);

impl Default for Mix {
    fn default() -> Self {
        Self([36, 36, 6, 6, 8, 8])
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut weights = [0; 6];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=weight"))?;
            let slot = ACTIONS
                .iter()
                .position(|(_, n)| *n == name.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown action {name:?}: expected rest, ws, join, leave, reconnect or read"
                    )
                })?;
            weights[slot] = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
        }
        if weights.iter().all(|&w| w == 0) {
            return Err("at least one action needs a weight above 0".to_string());
        }
        Ok(Self(weights))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = ACTIONS
            .iter()
            .zip(self.0)
            .filter(|(_, w)| *w > 0)
            .map(|((_, name), w)| format!("{name}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Mix {
    fn pick(&self, rng: &mut impl Rng) -> Action {
        let total: u32 = self.0.iter().sum();
        let mut roll = rng.random_range(0..total);
        for ((action, _), weight) in ACTIONS.iter().zip(self.0) {
            if roll < weight {
                return *action;
            }
            roll -= weight;
        }
        unreachable!("the roll is below the total weight")
    }
}

/// Parses `90`, `90s`, `1.5m`, `10m`, `2h` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with an optional unit (ms, s, m, h)"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(number * scale).map_err(|_| format!("{text:?}: out of range"))
}

/// `soak:<run>:<user>:<n>:` padded with `x` to `bytes`.
fn content(run: u32, user: usize, n: u64, bytes: usize) -> String {
    let mut text = format!("{PREFIX}{run:08x}:{user}:{n}:");
    if text.len() < bytes {
        text.extend(std::iter::repeat_n('x', bytes - text.len()));
    }
    text
}

/// The run, user and number of a soak message.
fn parse_content(text: &str) -> Option<(u32, usize, u64)> {
    let mut parts = text.strip_prefix(PREFIX)?.splitn(4, ':');
    let run = u32::from_str_radix(parts.next()?, 16).ok()?;
    let user = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((run, user, n))
}

/// Actions done, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActionCounts {
    pub rest_sends: u64,
    pub ws_sends: u64,
    pub joins: u64,
    pub leaves: u64,
    pub reconnects: u64,
    /// Rooms marked read, over REST and over sockets.
    pub reads: u64,
    /// Of `reads`, those sent as a `mark_read` frame on the room's socket.
    pub reads_over_ws: u64,
}

impl ActionCounts {
    pub fn total(&self) -> u64 {
        self.rest_sends + self.ws_sends + self.joins + self.leaves + self.reconnects + self.reads
    }
}

#[derive(Default)]
struct Counters {
    actions: [AtomicU64; 6],
    reads_over_ws: AtomicU64,
    /// Fresh deliveries over all users.
    deliveries: AtomicU64,
    /// Receipt frames over all sockets, by kind.
    receipts: ReceiptCounter,
    /// Receipt frames whose position was below an earlier one for the same user and event
    /// on the same socket.
    receipts_moved_back: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn count(&self, action: Action) {
        let slot = ACTIONS.iter().position(|(a, _)| *a == action).unwrap_or(0);
        self.actions[slot].fetch_add(1, Ordering::Relaxed);
    }

    fn actions(&self) -> ActionCounts {
        let n = |i: usize| self.actions[i].load(Ordering::Relaxed);
        ActionCounts {
            rest_sends: n(0),
            ws_sends: n(1),
            joins: n(2),
            leaves: n(3),
            reconnects: n(4),
            reads: n(5),
            reads_over_ws: self.reads_over_ws.load(Ordering::Relaxed),
        }
    }
}

/// What every task of a soak shares.
struct Soak {
    run: u32,
    ledger: Ledger,
    /// Room ids, by room index.
    rooms: Vec<i64>,
    /// User ids, by user index.
    user_ids: Vec<i64>,
    message_bytes: usize,
    drain: Duration,
    stop: CancellationToken,
    counters: Counters,
    errors_by_kind: Mutex<BTreeMap<String, u64>>,
    error_samples: Mutex<Vec<String>>,
}

impl Soak {
    /// Counts an error under `kind` (few distinct values) and keeps the first few details.
    fn error(&self, kind: impl Into<String>, detail: impl fmt::Display) {
        let kind = kind.into();
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self
            .error_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if samples.len() < ERROR_SAMPLES {
            samples.push(format!("{kind}: {detail:.300}"));
        }
        drop(samples);
        *self
            .errors_by_kind
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
    }

    /// Accounts one text frame on `user`'s socket in `room`.
    fn take_frame(&self, text: &str, user: usize, room: usize, conn: &ConnState) {
        let room_id = self.rooms[room];
        let frame = match serde_json::from_str::<Frame>(text) {
            Ok(frame) => frame,
            Err(_) => {
                self.ledger.track(user, room).malformed += 1;
                return self.error("frame: not JSON", format!("room {room_id}: {text}"));
            }
        };
        if frame.success == Some(false) {
            // The node refuses a send or a mark_read over the socket with an error frame on
            // that socket; a user waits for one of them at a time.
            if let Some(echo) = conn.take_echo() {
                let _ = echo.reply.send(Err(text.to_string()));
            } else if let Some(mark) = conn.take_mark() {
                let _ = mark.reply.send(Err(text.to_string()));
            } else {
                self.error("frame: unexpected error frame", text);
            }
            return;
        }
        let Some(data) = frame.data else {
            self.ledger.track(user, room).malformed += 1;
            return self.error("frame: no data", format!("room {room_id}: {text}"));
        };
        if let Some(kind) = ReceiptKind::classify(data.purpose.as_deref(), data.event.as_deref()) {
            return self.take_receipt(kind, &data, text, user, room, conn);
        }
        if data.event.as_deref() != Some("message") {
            return; // a join or leave notice
        }
        let stamp = data.message.as_deref().and_then(parse_content);
        let Some((_, sender, n)) = stamp.filter(|s| s.0 == self.run) else {
            self.ledger.track(user, room).foreign += 1;
            return;
        };
        let (Some(id), Some(room_id_sent), Some(_)) = (data.id, data.chat_id, data.created_at)
        else {
            self.ledger.track(user, room).malformed += 1;
            return self.error("frame: without id, chat_id or created_at", text);
        };
        if room_id_sent != room_id {
            self.ledger.track(user, room).foreign += 1;
            return self.error("frame: another room's message", text);
        }
        if self.ledger.track(user, room).receive(id) == Reception::Fresh {
            self.counters.deliveries.fetch_add(1, Ordering::Relaxed);
        }
        if sender == user {
            if let Some(echo) = conn.take_echo_of(n) {
                let _ = echo.reply.send(Ok(id));
            }
        }
    }

    /// Counts a receipt frame (never a delivery) and answers a `mark_read` waiting for the
    /// user's own read receipt.
    fn take_receipt(
        &self,
        kind: ReceiptKind,
        data: &FrameData,
        text: &str,
        user: usize,
        room: usize,
        conn: &ConnState,
    ) {
        self.counters.receipts.count(kind);
        let room_id = self.rooms[room];
        if data.chat_id != Some(room_id) {
            self.ledger.track(user, room).foreign += 1;
            return self.error("frame: another room's receipt", text);
        }
        let (Some(of), Some(upto)) = (data.user_id, data.upto) else {
            // The positions frame lists them inside; an event this bench does not know may
            // carry anything.
            if matches!(kind, ReceiptKind::Delivered | ReceiptKind::Read) {
                self.ledger.track(user, room).malformed += 1;
                self.error("frame: receipt without user_id or upto", text);
            }
            return;
        };
        if conn.note_position(of, kind, upto) {
            self.counters
                .receipts_moved_back
                .fetch_add(1, Ordering::Relaxed);
        }
        if kind == ReceiptKind::Read && of == self.user_ids[user] {
            if let Some(mark) = conn.take_mark_upto(upto) {
                let _ = mark.reply.send(Ok(upto));
            }
        }
    }
}

#[derive(Deserialize)]
struct Frame {
    success: Option<bool>,
    data: Option<FrameData>,
}

#[derive(Deserialize)]
struct FrameData {
    purpose: Option<String>,
    event: Option<String>,
    user_id: Option<i64>,
    upto: Option<i64>,
    message: Option<String>,
    id: Option<i64>,
    chat_id: Option<i64>,
    created_at: Option<IgnoredAny>,
}

/// A send over a socket waiting for its echo: the stored message's id, or the error frame.
struct Echo {
    n: u64,
    reply: oneshot::Sender<Result<i64, String>>,
}

/// A `mark_read` over a socket waiting for the user's own read receipt at `upto` or above
/// (its new position), or the error frame.
struct Mark {
    upto: i64,
    reply: oneshot::Sender<Result<i64, String>>,
}

#[derive(Default)]
struct ConnState {
    /// Set before the bench closes the socket, so the close is not an error.
    closing: AtomicBool,
    echo: Mutex<Option<Echo>>,
    mark: Mutex<Option<Mark>>,
    /// The highest receipt position seen on this socket, by (user id, kind).
    positions: Mutex<BTreeMap<(i64, u8), i64>>,
}

impl ConnState {
    fn take_mark(&self) -> Option<Mark> {
        self.mark
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn take_mark_upto(&self, upto: i64) -> Option<Mark> {
        let mut mark = self.mark.lock().unwrap_or_else(PoisonError::into_inner);
        if mark.as_ref().is_some_and(|m| upto >= m.upto) {
            mark.take()
        } else {
            None
        }
    }

    /// Records a receipt position; true when it is below one seen before for the same user
    /// and kind.
    fn note_position(&self, user_id: i64, kind: ReceiptKind, upto: i64) -> bool {
        let mut positions = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let highest = positions.entry((user_id, kind as u8)).or_insert(upto);
        let moved_back = upto < *highest;
        *highest = (*highest).max(upto);
        moved_back
    }

    fn take_echo(&self) -> Option<Echo> {
        self.echo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn take_echo_of(&self, n: u64) -> Option<Echo> {
        let mut echo = self.echo.lock().unwrap_or_else(PoisonError::into_inner);
        if echo.as_ref().is_some_and(|e| e.n == n) {
            echo.take()
        } else {
            None
        }
    }
}

type Sink = SplitSink<Socket, Message>;

/// One open socket of a user in a room.
struct Conn {
    sink: Sink,
    reader: JoinHandle<()>,
    state: Arc<ConnState>,
}

impl Conn {
    fn is_live(&self) -> bool {
        !self.reader.is_finished()
    }

    /// Closes from our side and waits (bounded) until the reader has taken every frame.
    async fn close(self) {
        self.state.closing.store(true, Ordering::SeqCst);
        let Self {
            mut sink,
            mut reader,
            ..
        } = self;
        let _ = timeout(CLOSE_TIMEOUT, sink.close()).await;
        if timeout(CLOSE_TIMEOUT, &mut reader).await.is_err() {
            reader.abort();
        }
    }
}

async fn read_feed(
    mut stream: SplitStream<Socket>,
    soak: Arc<Soak>,
    user: usize,
    room: usize,
    state: Arc<ConnState>,
) {
    let (kind, detail) = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => soak.take_frame(&text, user, room, &state),
            // Pings are answered by tungstenite on the next read.
            Some(Ok(Message::Close(close))) => {
                break match close {
                    Some(frame) => (
                        format!("socket: closed by the node with {}", u16::from(frame.code)),
                        frame.reason.to_string(),
                    ),
                    None => (
                        "socket: closed by the node without a code".to_string(),
                        String::new(),
                    ),
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => break ("socket: transport error".to_string(), error.to_string()),
            None => {
                break (
                    "socket: ended without a close frame".to_string(),
                    String::new(),
                )
            }
        }
    };
    if !state.closing.load(Ordering::SeqCst) {
        soak.error(kind, format!("room {}: {detail}", soak.rooms[room]));
    }
    // A send waiting for its echo (or a read for its receipt) learns that it will not come.
    drop(state.take_echo());
    drop(state.take_mark());
}

/// One user's loop and its sockets.
struct VirtualUser {
    index: usize,
    user: User,
    target: Target,
    api: Api,
    rng: StdRng,
    mix: Mix,
    soak: Arc<Soak>,
    /// The rooms it is a member of, with their socket (`None`: not open now).
    conns: BTreeMap<usize, Option<Conn>>,
    /// Messages it sent, numbering its contents.
    sent: u64,
    /// Per room, the highest position it marked read (and the node confirmed).
    read_upto: BTreeMap<usize, i64>,
}

impl VirtualUser {
    async fn run(mut self, every: Duration, offset: Duration) -> Self {
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
    async fn reopen(&mut self, room: usize) {
        if let Some(conn) = self.conns.get_mut(&room).and_then(Option::take) {
            conn.close().await;
        }
        let since = self.soak.ledger.track(self.index, room).cursor;
        self.open(room, since).await;
    }

    async fn open(&mut self, room: usize, since: i64) -> bool {
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

    fn socket_open(&self, room: usize) -> bool {
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

    /// Marks `room` read up to `upto`, an id it has seen there (so never above the room's
    /// newest): over the socket when that moves its position (a no-op sends no receipt to
    /// wait for) and the coin says so, else over REST.
    async fn read(&mut self, room: usize, upto: i64) {
        let room_id = self.soak.rooms[room];
        let marked = self.read_upto.get(&room).copied().unwrap_or(0);
        if upto > marked && self.socket_open(room) && self.rng.random_bool(0.5) {
            self.soak
                .counters
                .reads_over_ws
                .fetch_add(1, Ordering::Relaxed);
            return self.read_ws(room, upto).await;
        }
        match self
            .api
            .mark_read(&self.target, &self.user, room_id, upto)
            .await
        {
            Ok(position) if position >= upto => {
                self.read_upto.insert(room, position.max(marked));
            }
            Ok(position) => self.soak.error(
                "read over REST: position below upto",
                format!("room {room_id}: marked {upto}, position {position}"),
            ),
            Err(error) => self.soak.error(
                format!("read over REST: {}", error.kind()),
                format!("room {room_id}: upto {upto}: {error}"),
            ),
        }
    }

    async fn read_ws(&mut self, room: usize, upto: i64) {
        let room_id = self.soak.rooms[room];
        let Some(conn) = self.conns.get_mut(&room).and_then(Option::as_mut) else {
            return self.soak.error(
                "read over WebSocket: no open socket",
                format!("room {room_id}"),
            );
        };
        let (reply, receipt) = oneshot::channel();
        *conn
            .state
            .mark
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Mark { upto, reply });
        let frame = json!({ "purpose": "mark_read", "upto": upto }).to_string();
        let written = timeout(REQUEST_TIMEOUT, conn.sink.send(Message::Text(frame.into()))).await;
        let outcome = match written {
            Ok(Ok(())) => timeout(RECEIPT_TIMEOUT, receipt).await,
            Ok(Err(error)) => {
                conn.state.take_mark();
                return self.soak.error(
                    "read over WebSocket: write failed",
                    format!("room {room_id}: {error}"),
                );
            }
            Err(_) => {
                conn.state.take_mark();
                return self.soak.error(
                    "read over WebSocket: write timed out",
                    format!("room {room_id}"),
                );
            }
        };
        match outcome {
            Ok(Ok(Ok(position))) => {
                let marked = self.read_upto.entry(room).or_default();
                *marked = (*marked).max(position);
            }
            Ok(Ok(Err(frame))) => self.soak.error(
                "read over WebSocket: refused",
                format!("room {room_id}: upto {upto}: {frame}"),
            ),
            Ok(Err(_)) => self.soak.error(
                "read over WebSocket: socket closed before the receipt",
                format!("room {room_id}"),
            ),
            Err(_) => {
                conn.state.take_mark();
                self.soak.error(
                    "read over WebSocket: no read receipt in time",
                    format!("room {room_id}: upto {upto}, none within {RECEIPT_TIMEOUT:?}"),
                )
            }
        }
    }

    fn next_content(&mut self) -> (u64, String) {
        self.sent += 1;
        let text = content(
            self.soak.run,
            self.index,
            self.sent,
            self.soak.message_bytes,
        );
        (self.sent, text)
    }

    async fn send_rest(&mut self, room: usize) {
        let (_, text) = self.next_content();
        let room_id = self.soak.rooms[room];
        let issued = self.soak.ledger.tick();
        match self
            .api
            .send(&self.target, &self.user, room_id, &text)
            .await
        {
            Ok(id) => self.soak.ledger.acknowledge(room, id, issued),
            Err(error) => self.soak.error(
                format!("send over REST: {}", error.kind()),
                format!("room {room_id}: {error}"),
            ),
        }
    }

    async fn send_ws(&mut self, room: usize) {
        let (n, text) = self.next_content();
        let room_id = self.soak.rooms[room];
        let Some(conn) = self.conns.get_mut(&room).and_then(Option::as_mut) else {
            return self.soak.error(
                "send over WebSocket: no open socket",
                format!("room {room_id}"),
            );
        };
        let (reply, echo) = oneshot::channel();
        *conn
            .state
            .echo
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Echo { n, reply });
        let frame = json!({ "purpose": "send_chat_message", "message": text }).to_string();
        let issued = self.soak.ledger.tick();
        let written = timeout(REQUEST_TIMEOUT, conn.sink.send(Message::Text(frame.into()))).await;
        let outcome = match written {
            Ok(Ok(())) => timeout(REQUEST_TIMEOUT, echo).await,
            Ok(Err(error)) => {
                conn.state.take_echo();
                return self.soak.error(
                    "send over WebSocket: write failed",
                    format!("room {room_id}: {error}"),
                );
            }
            Err(_) => {
                conn.state.take_echo();
                return self.soak.error(
                    "send over WebSocket: write timed out",
                    format!("room {room_id}"),
                );
            }
        };
        match outcome {
            Ok(Ok(Ok(id))) => self.soak.ledger.acknowledge(room, id, issued),
            Ok(Ok(Err(frame))) => self.soak.error(
                "send over WebSocket: refused",
                format!("room {room_id}: {frame}"),
            ),
            Ok(Err(_)) => self.soak.error(
                "send over WebSocket: socket closed before the echo",
                format!("room {room_id}"),
            ),
            Err(_) => {
                conn.state.take_echo();
                self.soak.error(
                    "send over WebSocket: no echo in time",
                    format!("room {room_id}: none within {REQUEST_TIMEOUT:?}"),
                )
            }
        }
    }

    async fn join(&mut self, room: usize) {
        let room_id = self.soak.rooms[room];
        // Read before the join is issued: every message acknowledged by then is older than it.
        let floor_before = self.soak.ledger.floor(room);
        match self.api.enter(&self.target, &self.user, room_id).await {
            Ok(()) => {}
            // An earlier join whose answer was lost went through: a member now all the same.
            Err(error @ CallError::Status(status, _)) if status == StatusCode::BAD_REQUEST => {
                self.soak
                    .error("join: HTTP 400", format!("room {room_id}: {error}"));
            }
            Err(error) => {
                return self.soak.error(
                    format!("join: {}", error.kind()),
                    format!("room {room_id}: {error}"),
                )
            }
        }
        let since = self.soak.ledger.joined(self.index, room, floor_before);
        self.conns.insert(room, None);
        self.open(room, since).await;
    }

    async fn leave(&mut self, room: usize) {
        let room_id = self.soak.rooms[room];
        // From here on, sends to the room are not owed to this user; those acknowledged so far
        // are, so its socket must pass them before it goes.
        let owed_up_to = self.soak.ledger.leaving(self.index, room);
        let deadline = Instant::now() + self.soak.drain;
        while self.soak.ledger.track(self.index, room).cursor < owed_up_to {
            if Instant::now() >= deadline {
                self.soak.error(
                    "leave: the socket did not catch up in time",
                    format!(
                        "room {room_id}: at id {}, owed up to {owed_up_to}",
                        self.soak.ledger.track(self.index, room).cursor
                    ),
                );
                break;
            }
            if !self.socket_open(room) {
                self.reopen(room).await;
            }
            tokio::time::sleep(POLL).await;
        }
        if let Some(conn) = self.conns.remove(&room).flatten() {
            conn.close().await;
        }
        // Whatever the answer, it is no longer counted a member (a lost answer is settled by
        // a later join answering 400).
        if let Err(error) = self.api.leave(&self.target, &self.user, room_id).await {
            self.soak.error(
                format!("leave: {}", error.kind()),
                format!("room {room_id}: {error}"),
            );
        }
    }

    async fn close_all(&mut self) {
        for (_, conn) in std::mem::take(&mut self.conns) {
            if let Some(conn) = conn {
                conn.close().await;
            }
        }
    }
}

/// Samples every node and this process until `stop`, then once more.
async fn sample_memory(
    soak: Arc<Soak>,
    pids: Vec<i32>,
    every: Duration,
    started: Instant,
    stop: CancellationToken,
) -> Vec<MemorySample> {
    let take = || MemorySample {
        secs: started.elapsed().as_secs_f64(),
        servers_rss_kib: pids
            .iter()
            .map(|&pid| match Sample::read(pid) {
                Ok(sample) => sample.rss_kib,
                Err(error) => {
                    soak.error("memory: node not readable", format!("{error:#}"));
                    0
                }
            })
            .collect(),
        bench_rss_kib: Sample::own().map_or(0, |s| s.rss_kib),
        messages: soak.ledger.acked_count(),
    };
    let mut samples = Vec::new();
    let mut ticks = interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ticks.tick() => samples.push(take()),
        }
    }
    samples.push(take());
    samples
}

/// Initial memberships: each user in each room with probability 1/2 and in at least one
/// room; each room has at least one member.
fn memberships(users: usize, rooms: usize, rng: &mut impl Rng) -> Vec<Vec<bool>> {
    let mut member: Vec<Vec<bool>> = (0..users)
        .map(|_| (0..rooms).map(|_| rng.random_bool(0.5)).collect())
        .collect();
    for row in &mut member {
        if !row.contains(&true) {
            row[rng.random_range(0..rooms)] = true;
        }
    }
    for room in 0..rooms {
        if !member.iter().any(|row| row[room]) {
            member[room % users][room] = true;
        }
    }
    member
}

/// Registers the users, creates the rooms and opens every member's sockets.
async fn setup(options: &SoakOptions, api: &Api) -> anyhow::Result<(Arc<Soak>, Vec<VirtualUser>)> {
    let targets = &options.targets;
    let tag = load::tag();
    let users =
        load::register_users(api, targets, &tag, "user", options.users, options.progress).await?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let member = memberships(options.users, options.rooms, &mut rng);
    let rooms: Vec<i64> = stream::iter(0..options.rooms)
        .map(|room| {
            let in_room: Vec<usize> = (0..options.users).filter(|&u| member[u][room]).collect();
            let owner = &users[in_room[0]];
            let others: Vec<i64> = in_room[1..].iter().map(|&u| users[u].id).collect();
            let name = format!("soak {tag} {room}");
            let target = &targets[room % targets.len()];
            async move { api.create_room(target, owner, &name, &others).await }
        })
        .buffered(OPEN_CONCURRENCY)
        .try_collect()
        .await
        .context("cannot create the rooms")?;

    let soak = Arc::new(Soak {
        run: rand::random(),
        ledger: Ledger::new(options.users, options.rooms),
        rooms,
        user_ids: users.iter().map(|u| u.id).collect(),
        message_bytes: options.message_bytes,
        drain: options.drain,
        stop: CancellationToken::new(),
        counters: Counters::default(),
        errors_by_kind: Mutex::new(BTreeMap::new()),
        error_samples: Mutex::new(Vec::new()),
    });
    let mut virtual_users = Vec::with_capacity(options.users);
    for (index, user) in users.into_iter().enumerate() {
        virtual_users.push(VirtualUser {
            index,
            user,
            target: targets[index % targets.len()].clone(),
            api: Api::new()?,
            rng: StdRng::seed_from_u64(options.seed.wrapping_add(1 + index as u64)),
            mix: options.mix.clone(),
            soak: soak.clone(),
            conns: BTreeMap::new(),
            sent: 0,
            read_upto: BTreeMap::new(),
        });
    }
    // Fresh rooms: `since=0` replays nothing and leaves no gap before the first send.
    let opened: Vec<bool> = stream::iter(virtual_users.iter_mut())
        .map(|vu| {
            let rooms: Vec<usize> = (0..options.rooms)
                .filter(|&r| member[vu.index][r])
                .collect();
            async move {
                let mut all = true;
                for room in rooms {
                    vu.soak.ledger.founding_member(vu.index, room);
                    vu.conns.insert(room, None);
                    all &= vu.open(room, 0).await;
                }
                all
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect()
        .await;
    if opened.contains(&false) {
        let samples = soak
            .error_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("; ");
        bail!("cannot open the soak's first sockets: {samples}");
    }
    Ok((soak, virtual_users))
}

pub async fn run(options: &SoakOptions) -> anyhow::Result<SoakReport> {
    options.check()?;
    let api = Api::new()?;
    let setup_started = Instant::now();
    let (soak, virtual_users) = setup(options, &api).await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();

    let usage = procstat::RunUsage::start(&options.server_pids)?;
    let started = Instant::now();
    let sampling = CancellationToken::new();
    let sampler = tokio::spawn(sample_memory(
        soak.clone(),
        options.server_pids.clone(),
        options.sample_every,
        started,
        sampling.clone(),
    ));
    let bar = Progress::start(
        options.progress,
        "soak",
        options.duration.as_secs().max(1),
        {
            let soak = soak.clone();
            move || {
                let c = &soak.counters;
                (
                    started.elapsed().as_secs(),
                    format!(
                        "s; messages {}, deliveries {}, errors {}",
                        soak.ledger.acked_count(),
                        c.deliveries.load(Ordering::Relaxed),
                        c.errors.load(Ordering::Relaxed)
                    ),
                )
            }
        },
    );

    // Each user acts every `users / rate` seconds; their starts are spread over one period.
    let every = Duration::from_secs_f64(options.users as f64 / options.rate);
    let mut running = JoinSet::new();
    let count = virtual_users.len() as u32;
    for (i, vu) in virtual_users.into_iter().enumerate() {
        running.spawn(vu.run(every, every * i as u32 / count));
    }
    tokio::time::sleep(options.duration).await;
    soak.stop.cancel();
    // Users end by themselves: every action is bounded.
    let mut virtual_users = Vec::new();
    while let Some(done) = running.join_next().await {
        virtual_users.push(done.context("a virtual user panicked")?);
    }
    let run_secs = started.elapsed().as_secs_f64();
    sampling.cancel();
    let samples = sampler.await.context("the memory sampler panicked")?;
    let (servers, bench) = usage.end(run_secs)?;
    bar.finish().await;

    // Stragglers: until every member's socket has its room's last acknowledged message.
    let drain_started = Instant::now();
    while drain_started.elapsed() < options.drain
        && (0..options.users).any(|u| soak.ledger.behind(u) > 0)
    {
        tokio::time::sleep(POLL).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    for vu in &mut virtual_users {
        vu.close_all().await;
    }

    let completeness = soak.ledger.audit();
    let errors_by_kind = soak
        .errors_by_kind
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let errors = errors_by_kind.values().sum();
    let error_samples = soak
        .error_samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let per_sec = |n: u64| n as f64 / run_secs;
    let actions = soak.counters.actions();
    let total_actions = actions.total();
    let receipt_frames = soak.counters.receipts.counts();
    let memory = MemoryReport::of(samples, options);
    Ok(SoakReport {
        mode: "soak",
        targets: options.targets.iter().map(|t| t.url.clone()).collect(),
        users: options.users,
        rooms: options.rooms,
        seed: options.seed,
        mix: options.mix.to_string(),
        offered_rate: options.rate,
        message_bytes: options.message_bytes,
        duration_secs: options.duration.as_secs_f64(),
        setup_secs,
        run_secs,
        drain_secs,
        actions_per_sec: per_sec(total_actions),
        actions,
        messages: completeness.messages,
        messages_per_sec: per_sec(completeness.messages),
        deliveries: soak.counters.deliveries.load(Ordering::Relaxed),
        receipt_frames: receipt_frames.total(),
        receipt_frames_by_event: receipt_frames,
        receipts_moved_back: soak.counters.receipts_moved_back.load(Ordering::Relaxed),
        complete: completeness.is_exact(),
        completeness,
        errors,
        errors_by_kind,
        error_samples,
        memory,
        servers,
        bench,
    })
}

/// Resident memory over the soak.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub sample_secs: f64,
    pub max_growth_percent: f64,
    /// Every node's memory grew by at most `max_growth_percent`; `null` without a node to
    /// judge or with too few samples.
    pub flat: Option<bool>,
    /// Per `--server-pid`; `trend` is `null` with too few samples.
    pub servers: Vec<ServerMemory>,
    pub bench: Option<RssTrend>,
    pub samples: Vec<MemorySample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerMemory {
    pub pid: i32,
    pub trend: Option<RssTrend>,
}

impl MemoryReport {
    fn of(samples: Vec<MemorySample>, options: &SoakOptions) -> Self {
        let servers: Vec<ServerMemory> = options
            .server_pids
            .iter()
            .enumerate()
            .map(|(i, &pid)| {
                let series: Vec<u64> = samples
                    .iter()
                    .filter_map(|s| s.servers_rss_kib.get(i).copied())
                    .collect();
                ServerMemory {
                    pid,
                    trend: RssTrend::of(&series),
                }
            })
            .collect();
        let bench: Vec<u64> = samples.iter().map(|s| s.bench_rss_kib).collect();
        let trends: Option<Vec<&RssTrend>> = servers.iter().map(|s| s.trend.as_ref()).collect();
        let flat = match trends {
            Some(trends) if !trends.is_empty() => {
                Some(trends.iter().all(|t| t.is_flat(options.max_rss_growth)))
            }
            _ => None,
        };
        Self {
            sample_secs: options.sample_every.as_secs_f64(),
            max_growth_percent: options.max_rss_growth,
            flat,
            servers,
            bench: RssTrend::of(&bench),
            samples,
        }
    }
}

/// Everything a soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub mode: &'static str,
    pub targets: Vec<String>,
    pub users: usize,
    pub rooms: usize,
    /// Seed of the users' choices; `--seed` repeats them.
    pub seed: u64,
    pub mix: String,
    /// Offered actions per second.
    pub offered_rate: f64,
    pub message_bytes: usize,
    pub duration_secs: f64,
    /// Registering users, creating rooms, opening the first sockets.
    pub setup_secs: f64,
    /// The soak itself, to the last user's last action.
    pub run_secs: f64,
    /// The wait for stragglers after it.
    pub drain_secs: f64,
    pub actions: ActionCounts,
    pub actions_per_sec: f64,
    /// Acknowledged messages.
    pub messages: u64,
    pub messages_per_sec: f64,
    /// First receipts of messages, over every user and room (owed or not).
    pub deliveries: u64,
    /// Receipt frames (`receipts` on connect, `receipt` delivered / read) over every socket;
    /// never counted as deliveries.
    pub receipt_frames: u64,
    pub receipt_frames_by_event: ReceiptFrames,
    /// Receipt frames on a socket whose position was below an earlier frame's for the same
    /// user and event (reported, not counted as an error).
    pub receipts_moved_back: u64,
    /// Every owed delivery arrived once, in order; nothing foreign, malformed or unacknowledged.
    pub complete: bool,
    pub completeness: Audit,
    /// Sum of `errors_by_kind`.
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub error_samples: Vec<String>,
    pub memory: MemoryReport,
    /// The nodes given by `--server-pid`, over the soak.
    pub servers: Vec<ProcessReport>,
    /// This process, over the soak.
    pub bench: ProcessReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "m", "10 weeks", "-1s", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mixes_parse_print_and_pick_only_weighted_actions() {
        let mix: Mix = "rest=36,ws=36,join=6,leave=6,reconnect=8,read=8"
            .parse()
            .unwrap();
        assert_eq!(mix, Mix::default());
        assert_eq!(
            mix.to_string(),
            "rest=36,ws=36,join=6,leave=6,reconnect=8,read=8"
        );
        // The mix before reads existed still parses, with no reads.
        let old: Mix = "rest=40,ws=40,join=6,leave=6,reconnect=8".parse().unwrap();
        assert_eq!(old.to_string(), "rest=40,ws=40,join=6,leave=6,reconnect=8");
        let only_reads: Mix = "read=3".parse().unwrap();
        assert!((0..100).all(|_| only_reads.pick(&mut StdRng::seed_from_u64(1)) == Action::Read));
        let only_joins: Mix = "join=1, rest=0".parse().unwrap();
        assert_eq!(only_joins.to_string(), "join=1");
        let mut rng = StdRng::seed_from_u64(7);
        assert!((0..100).all(|_| only_joins.pick(&mut rng) == Action::Join));
        let picks: Vec<Action> = (0..1000).map(|_| mix.pick(&mut rng)).collect();
        for (action, _) in ACTIONS {
            assert!(picks.contains(&action), "{action:?}");
        }
        for bad in ["", "rest=0", "talk=3", "rest", "rest=-1", "rest=x"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad}");
        }
    }

    fn one_room_soak() -> Soak {
        Soak {
            run: 1,
            ledger: Ledger::new(1, 1),
            rooms: vec![42],
            user_ids: vec![7],
            message_bytes: 60,
            drain: Duration::from_secs(1),
            stop: CancellationToken::new(),
            counters: Counters::default(),
            errors_by_kind: Mutex::new(BTreeMap::new()),
            error_samples: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn receipts_are_counted_never_delivered_and_answer_a_mark_read() {
        let soak = one_room_soak();
        soak.ledger.founding_member(0, 0);
        let conn = ConnState::default();
        let receipt = |event: &str, user: i64, upto: i64| {
            json!({"data": {"purpose": "receipt", "event": event, "chat_id": 42,
                            "user_id": user, "upto": upto}})
            .to_string()
        };
        soak.take_frame(
            r#"{"data":{"purpose":"receipts","chat_id":42,"positions":[{"user_id":7,"delivered_upto":0,"read_upto":0}]}}"#,
            0,
            0,
            &conn,
        );
        soak.take_frame(&receipt("delivered", 3, 5), 0, 0, &conn);
        soak.take_frame(&receipt("delivered", 3, 4), 0, 0, &conn);
        // A mark_read waits for the user's own read receipt at or above its upto.
        let (reply, mut answer) = oneshot::channel();
        *conn.mark.lock().unwrap() = Some(Mark { upto: 10, reply });
        soak.take_frame(&receipt("read", 3, 12), 0, 0, &conn);
        soak.take_frame(&receipt("read", 7, 9), 0, 0, &conn);
        assert!(answer.try_recv().is_err(), "not yet");
        soak.take_frame(&receipt("read", 7, 11), 0, 0, &conn);
        assert_eq!(answer.try_recv(), Ok(Ok(11)));
        // ... or for the error frame refusing it.
        let (reply, mut answer) = oneshot::channel();
        *conn.mark.lock().unwrap() = Some(Mark { upto: 99, reply });
        let refused = r#"{"success":false,"errors":{"detail":"upto is above the newest message"}}"#;
        soak.take_frame(refused, 0, 0, &conn);
        assert_eq!(answer.try_recv(), Ok(Err(refused.to_string())));

        let counts = soak.counters.receipts.counts();
        assert_eq!(
            (
                counts.positions,
                counts.delivered,
                counts.read,
                counts.other
            ),
            (1, 2, 3, 0)
        );
        assert_eq!(soak.counters.receipts_moved_back.load(Ordering::Relaxed), 1);
        assert_eq!(soak.counters.deliveries.load(Ordering::Relaxed), 0);
        assert_eq!(soak.counters.errors.load(Ordering::Relaxed), 0);
        let track = soak.ledger.track(0, 0);
        assert!(track.received().is_empty());
        assert_eq!((track.malformed, track.foreign), (0, 0));
        drop(track);
        // Another room's receipt is an error; so is an error frame nobody waits for.
        soak.take_frame(
            &json!({"data": {"purpose": "receipt", "event": "read", "chat_id": 43,
                             "user_id": 7, "upto": 1}})
            .to_string(),
            0,
            0,
            &conn,
        );
        soak.take_frame(refused, 0, 0, &conn);
        assert_eq!(soak.counters.errors.load(Ordering::Relaxed), 2);
        assert_eq!(soak.ledger.track(0, 0).foreign, 1);
    }

    #[test]
    fn contents_carry_run_user_and_number() {
        let text = content(0xabcd, 3, 17, 60);
        assert_eq!(text.len(), 60);
        assert_eq!(parse_content(&text), Some((0xabcd, 3, 17)));
        assert_eq!(parse_content("bench:0000abcd:3:17:"), None);
        assert_eq!(parse_content("soak:0000abcd:3"), None);
    }

    #[test]
    fn every_user_and_room_has_a_membership() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (users, rooms) = (1 + seed as usize % 7, 1 + seed as usize % 5);
            let member = memberships(users, rooms, &mut rng);
            assert!(member.iter().all(|row| row.contains(&true)));
            assert!((0..rooms).all(|r| member.iter().any(|row| row[r])));
        }
        // The same seed gives the same rooms.
        let a = memberships(20, 10, &mut StdRng::seed_from_u64(1));
        let b = memberships(20, 10, &mut StdRng::seed_from_u64(1));
        assert_eq!(a, b);
    }
}
