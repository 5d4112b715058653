//! One load run: users and rooms (set up once, reusable across runs), receiving sockets,
//! timed sends over REST or WebSocket, a bounded wait for stragglers, and the report.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::ValueEnum;
use futures_util::stream::{self, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::api::{open_socket, Api, Socket, Target, User, REQUEST_TIMEOUT};
use super::histogram::{Histogram, LatencySummary};
use super::ledger::{self, Accepted, Completeness, Delivery, Plan, Tally};
use super::procstat::{self, ProcessReport};
use super::progress::Progress;

/// Registrations in flight: each costs the node an argon2 hash, a core's worth of work.
const REGISTER_CONCURRENCY: usize = 4;
/// Socket handshakes and room creations in flight.
pub const OPEN_CONCURRENCY: usize = 64;
/// A sender that fails this many sends in a row stops: the node is down or refusing.
const MAX_CONSECUTIVE_ERRORS: u32 = 10;
/// Error messages kept for the report.
const ERROR_SAMPLES: usize = 5;
/// How long a socket may take to close at the end of a run.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the nodes may take to count sockets a handshake already answered.
const REGISTER_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendOver {
    /// `POST .../messages/send/`, one request at a time per sender; accepted on 201.
    Rest,
    /// `send_chat_message` frames on the sender's room socket; accepted once written.
    Ws,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Users, rooms and sockets are spread round-robin over these.
    pub targets: Vec<Target>,
    pub rooms: usize,
    /// Sockets per room.
    pub receivers: usize,
    pub senders: usize,
    /// Total over all rooms.
    pub messages: u64,
    pub send_over: SendOver,
    /// Offered messages per second over all senders; `None`: as fast as the senders go.
    pub rate: Option<f64>,
    pub message_bytes: usize,
    /// How long to wait for stragglers after the last send.
    pub drain: Duration,
    /// Nodes whose CPU time and memory are reported.
    pub server_pids: Vec<i32>,
    /// Progress bars on stderr for phases longer than a few seconds.
    pub progress: bool,
    /// Receivers mark their room read (a `mark_read` frame on their socket, `upto` the id
    /// just received) after every this many messages; `None`: they never do.
    pub mark_read_every: Option<u64>,
}

impl LoadOptions {
    /// Defaults for a run against `targets`: small enough for a shared machine.
    pub fn new(targets: Vec<Target>) -> Self {
        Self {
            targets,
            rooms: 10,
            receivers: 10,
            senders: 4,
            messages: 10_000,
            send_over: SendOver::Rest,
            rate: None,
            message_bytes: 100,
            drain: Duration::from_secs(10),
            server_pids: Vec::new(),
            progress: false,
            mark_read_every: None,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.targets.is_empty() {
            bail!("no target");
        }
        if self.rooms == 0 || self.receivers == 0 || self.senders == 0 || self.messages == 0 {
            bail!("--rooms, --receivers, --senders and --messages must be at least 1");
        }
        if self
            .rate
            .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
        {
            bail!("--rate must be a positive number of messages per second");
        }
        if self.message_bytes > 10_000 {
            bail!("--message-bytes: the node accepts at most 10000 characters");
        }
        if self.mark_read_every == Some(0) {
            bail!("--mark-read must be at least 1 (every message)");
        }
        Ok(())
    }
}

/// A finite number above zero (NaN is not).
pub(crate) fn is_positive(x: f64) -> bool {
    x > 0.0 && x.is_finite()
}

/// Users and rooms: every user is a member of every room; sender 0 owns them.
pub struct Fixture {
    senders: Vec<User>,
    receivers: Vec<User>,
    rooms: Vec<i64>,
    pub setup_secs: f64,
}

/// A random tag so that repeated runs against one node never collide on emails.
pub fn tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Registers `count` users named `bench-<tag>-<role><i>`, spread over the targets.
pub async fn register_users(
    api: &Api,
    targets: &[Target],
    tag: &str,
    role: &str,
    count: usize,
    progress: bool,
) -> anyhow::Result<Vec<User>> {
    let done = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(progress, role, count as u64, {
        let done = done.clone();
        move || (done.load(Ordering::Relaxed), String::new())
    });
    let users = stream::iter(0..count)
        .map(|i| {
            let done = done.clone();
            async move {
                let email = format!("bench-{tag}-{role}{i}@example.com");
                let user = api.register(&targets[i % targets.len()], &email).await;
                done.fetch_add(1, Ordering::Relaxed);
                user
            }
        })
        .buffered(REGISTER_CONCURRENCY)
        .try_collect()
        .await;
    bar.finish().await;
    users
}

/// Creates `count` rooms owned by `owner` with `members`, spread over the targets.
pub async fn create_rooms(
    api: &Api,
    targets: &[Target],
    tag: &str,
    owner: &User,
    members: &[i64],
    count: usize,
) -> anyhow::Result<Vec<i64>> {
    stream::iter(0..count)
        .map(|i| async move {
            let name = format!("bench {tag} {i}");
            api.create_room(&targets[i % targets.len()], owner, &name, members)
                .await
        })
        .buffered(OPEN_CONCURRENCY)
        .try_collect()
        .await
}

/// Sockets the targets have open together.
pub async fn open_sockets_on(api: &Api, targets: &[Target]) -> anyhow::Result<u64> {
    let mut total = 0;
    for target in targets {
        total += api.sockets(target).await?;
    }
    Ok(total)
}

/// Waits (bounded) until the nodes' socket count satisfies `done`: a handshake is answered
/// just before the node registers the socket, and a close is seen before it deregisters it.
/// Returns whether it did.
pub async fn wait_for_sockets(api: &Api, targets: &[Target], done: impl Fn(u64) -> bool) -> bool {
    let deadline = Instant::now() + REGISTER_WAIT;
    while Instant::now() < deadline {
        if open_sockets_on(api, targets).await.is_ok_and(&done) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

impl Fixture {
    pub async fn setup(options: &LoadOptions) -> anyhow::Result<Self> {
        options.check()?;
        let started = Instant::now();
        let api = Api::new()?;
        let tag = tag();
        let targets = &options.targets;
        let senders =
            register_users(&api, targets, &tag, "s", options.senders, options.progress).await?;
        let receivers = register_users(
            &api,
            targets,
            &tag,
            "r",
            options.receivers,
            options.progress,
        )
        .await?;
        let members: Vec<i64> = senders[1..]
            .iter()
            .chain(&receivers)
            .map(|u| u.id)
            .collect();
        let rooms = create_rooms(&api, targets, &tag, &senders[0], &members, options.rooms)
            .await
            .context(
                "cannot create the rooms (is --max-room-members at least senders + receivers?)",
            )?;
        Ok(Self {
            senders,
            receivers,
            rooms,
            setup_secs: started.elapsed().as_secs_f64(),
        })
    }

    /// One run on these users and rooms: `options` must have the shape the fixture was set
    /// up with; messages, rate, transport and size may differ from run to run.
    pub async fn run(&self, options: &LoadOptions) -> anyhow::Result<LoadReport> {
        options.check()?;
        if (options.rooms, options.receivers, options.senders)
            != (self.rooms.len(), self.receivers.len(), self.senders.len())
        {
            bail!("a fixture runs only loads of the shape it was set up for");
        }
        let api = Api::new()?;
        let targets = &options.targets;
        let plan = Plan {
            rooms: options.rooms as u64,
            senders: options.senders as u64,
            messages: options.messages,
        };
        let shared = Arc::new(Shared::new(plan, rand::random()));
        let setup_started = Instant::now();
        let sockets_before = open_sockets_on(&api, targets).await?;

        // Receivers: socket `j` of room `r` belongs to receiver user `j`.
        let receiver_count = options.rooms * options.receivers;
        let opened = Arc::new(AtomicU64::new(0));
        let bar = Progress::start(
            options.progress,
            "sockets",
            receiver_count as u64,
            counter(&opened),
        );
        let receivers: Vec<(usize, Socket)> = stream::iter(0..receiver_count)
            .map(|i| {
                let (room, user) = (i / options.receivers, i % options.receivers);
                let (target, room_id) = (&targets[i % targets.len()], self.rooms[room]);
                let token = &self.receivers[user].access;
                let opened = opened.clone();
                async move {
                    let socket = open_socket(target, room_id, token).await?;
                    opened.fetch_add(1, Ordering::Relaxed);
                    anyhow::Ok((room, socket))
                }
            })
            .buffer_unordered(OPEN_CONCURRENCY)
            .try_collect()
            .await?;
        bar.finish().await;
        let mut receiving = JoinSet::new();
        for (room, socket) in receivers {
            receiving.spawn(receive(
                socket,
                shared.clone(),
                room as u64,
                self.rooms[room],
                options.mark_read_every,
            ));
        }

        // WebSocket senders: one socket per room a sender owns; their read halves only watch
        // for error frames and closes.
        let mut sender_sinks: Vec<Vec<(u64, Sink)>> = Vec::new();
        let mut watching = JoinSet::new();
        if options.send_over == SendOver::Ws {
            for (s, user) in self.senders.iter().enumerate() {
                let target = &targets[s % targets.len()];
                let mut sinks = Vec::new();
                for room in plan.rooms_of_sender(s as u64) {
                    let socket =
                        open_socket(target, self.rooms[room as usize], &user.access).await?;
                    let (sink, stream) = socket.split();
                    watching.spawn(watch_sender_socket(stream, shared.clone()));
                    sinks.push((room, sink));
                }
                sender_sinks.push(sinks);
            }
        }
        let sender_sockets = sender_sinks.iter().map(Vec::len).sum::<usize>();
        let all_sockets = sockets_before + (receiver_count + sender_sockets) as u64;
        if !wait_for_sockets(&api, targets, |n| n >= all_sockets).await && options.progress {
            eprintln!("warning: the nodes did not count all {all_sockets} sockets within {REGISTER_WAIT:?}; going on (sockets catch up from their handshake)");
        }
        let socket_secs = setup_started.elapsed().as_secs_f64();

        // The run.
        let usage = procstat::RunUsage::start(&options.server_pids)?;
        let started = Instant::now();
        let started_unix = unix_nanos();
        let expected_per_message = options.receivers as u64;
        let bar = Progress::start(options.progress, "messages", options.messages, {
            let shared = shared.clone();
            move || {
                let accepted = shared.accepted_count.load(Ordering::Relaxed);
                let delivered = shared.delivered.load(Ordering::Relaxed);
                (
                    shared.sent.load(Ordering::Relaxed),
                    format!(
                        "sent; deliveries {delivered}/{}",
                        accepted * expected_per_message
                    ),
                )
            }
        });
        let mut sending = JoinSet::new();
        let rooms = Arc::new(self.rooms.clone());
        let schedule = Schedule {
            started,
            rate: options.rate,
            bytes: options.message_bytes,
        };
        let mut sinks = sender_sinks.into_iter();
        for (s, seqs) in plan.seqs_by_sender().into_iter().enumerate() {
            let shared = shared.clone();
            let target = targets[s % targets.len()].clone();
            match options.send_over {
                SendOver::Rest => {
                    let (user, rooms) = (self.senders[s].clone(), rooms.clone());
                    sending.spawn(send_rest(shared, schedule, seqs, target, user, rooms));
                }
                SendOver::Ws => {
                    let sinks = sinks.next().unwrap_or_default();
                    sending.spawn(send_ws(shared, schedule, seqs, sinks));
                }
            }
        }
        // Senders end by themselves: every send is bounded and repeated failures stop them.
        let mut sinks_to_close = Vec::new();
        while let Some(done) = sending.join_next().await {
            sinks_to_close.extend(done.context("a sender panicked")?);
        }
        let send_secs = started.elapsed().as_secs_f64();

        // Stragglers: until every accepted message reached every receiver, or the deadline.
        let deadline = Instant::now() + options.drain;
        let accepted = shared.accepted.count();
        while Instant::now() < deadline
            && shared.delivered.load(Ordering::Relaxed) < accepted * expected_per_message
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let run_secs = started.elapsed().as_secs_f64();
        let (servers, bench) = usage.end(run_secs)?;
        bar.finish().await;

        shared.stop.cancel();
        let mut tallies = Vec::with_capacity(receiver_count);
        while let Some(tally) = receiving.join_next().await {
            tallies.push(tally.context("a receiver panicked")?);
        }
        for mut sink in sinks_to_close {
            let _ = timeout(CLOSE_TIMEOUT, sink.close()).await;
        }
        while watching.join_next().await.is_some() {}
        // The next run counts its sockets on top of what is open before it.
        wait_for_sockets(&api, targets, |n| n <= sockets_before).await;

        let completeness = Completeness::of(&plan, &shared.accepted, &tallies);
        let last_delivery = shared.last_delivery_unix.load(Ordering::Relaxed);
        let delivery_secs = last_delivery.saturating_sub(started_unix) as f64 / 1e9;
        let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let send_errors = shared.send_errors.load(Ordering::Relaxed);
        let socket_closes = shared.socket_closes.load(Ordering::Relaxed);
        let refused_frames = shared.refused_frames.load(Ordering::Relaxed);
        let receipt_frames = shared.receipts.counts();
        Ok(LoadReport {
            mode: "load",
            send_over: options.send_over,
            targets: targets.iter().map(|t| t.url.clone()).collect(),
            rooms: options.rooms,
            receivers_per_room: options.receivers,
            receiver_sockets: receiver_count,
            senders: options.senders,
            sender_sockets,
            messages: options.messages,
            message_bytes: options.message_bytes,
            offered_rate: options.rate,
            setup_secs: self.setup_secs,
            socket_secs,
            send_secs,
            run_secs,
            sent: shared.sent.load(Ordering::Relaxed),
            accepted,
            send_errors,
            accepted_per_sec: per_sec(accepted, send_secs),
            deliveries: completeness.delivered,
            deliveries_per_sec: per_sec(completeness.delivered, delivery_secs),
            messages_per_sec: per_sec(accepted, delivery_secs),
            receipt_frames: receipt_frames.total(),
            receipt_frames_by_event: receipt_frames,
            mark_read_every: options.mark_read_every,
            reads_sent: shared.reads_sent.load(Ordering::Relaxed),
            refused_frames,
            complete: completeness.is_exact(),
            completeness: completeness.clone(),
            latency_ms: shared.latency.summary_ms(),
            socket_closes,
            errors: send_errors + socket_closes + completeness.malformed + refused_frames,
            error_samples: shared.samples.lock().map(|s| s.clone()).unwrap_or_default(),
            servers,
            bench,
        })
    }
}

/// Sets up users and rooms, then does one run.
pub async fn run(options: &LoadOptions) -> anyhow::Result<LoadReport> {
    Fixture::setup(options).await?.run(options).await
}

fn counter(value: &Arc<AtomicU64>) -> impl Fn() -> (u64, String) + Send + 'static {
    let value = value.clone();
    move || (value.load(Ordering::Relaxed), String::new())
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What every task of a run shares.
struct Shared {
    plan: Plan,
    run: u32,
    stop: CancellationToken,
    latency: Histogram,
    accepted: Accepted,
    sent: AtomicU64,
    accepted_count: AtomicU64,
    send_errors: AtomicU64,
    socket_closes: AtomicU64,
    /// Fresh deliveries over all receivers.
    delivered: AtomicU64,
    last_delivery_unix: AtomicU64,
    /// Receipt frames on every socket of the run, by kind.
    receipts: ReceiptCounter,
    /// `mark_read` frames written by receivers.
    reads_sent: AtomicU64,
    /// Error frames (`success: false`) on receivers' sockets: a refused `mark_read`.
    refused_frames: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Shared {
    fn new(plan: Plan, run: u32) -> Self {
        Self {
            plan,
            run,
            stop: CancellationToken::new(),
            latency: Histogram::default(),
            accepted: Accepted::new(plan.messages),
            sent: AtomicU64::new(0),
            accepted_count: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            socket_closes: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            last_delivery_unix: AtomicU64::new(0),
            receipts: ReceiptCounter::default(),
            reads_sent: AtomicU64::new(0),
            refused_frames: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
        }
    }

    fn sample(&self, error: String) {
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() < ERROR_SAMPLES {
                samples.push(error);
            }
        }
    }

    fn send_error(&self, error: String) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        self.sample(error);
    }

    fn socket_closed(&self, what: String) {
        self.socket_closes.fetch_add(1, Ordering::Relaxed);
        self.sample(what);
    }

    fn accept(&self, seq: u64) {
        self.accepted.insert(seq);
        self.accepted_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Accounts one text frame at a receiver of room `room_id`; returns the message id of a
    /// fresh delivery.
    fn take_frame(&self, text: &str, room_id: i64, tally: &mut Tally) -> Option<i64> {
        let received = unix_nanos();
        let frame = match serde_json::from_str::<Frame>(text) {
            Ok(Frame {
                success: Some(false),
                ..
            }) => {
                self.refused_frames.fetch_add(1, Ordering::Relaxed);
                self.sample(format!("room {room_id}: refused: {text:.200}"));
                return None;
            }
            Ok(Frame {
                data: Some(data), ..
            }) => data,
            _ => {
                tally.malformed += 1;
                self.sample(format!("room {room_id}: unexpected frame {text:.200}"));
                return None;
            }
        };
        if let Some(kind) = ReceiptKind::of(&frame) {
            if frame.chat_id != Some(room_id) {
                tally.foreign += 1;
                self.sample(format!(
                    "room {room_id}: another room's receipt {text:.200}"
                ));
            }
            self.receipts.count(kind);
            return None;
        }
        let Some(stamp) = frame.message.as_deref().and_then(ledger::parse_content) else {
            if frame.event.as_deref() == Some("message") {
                tally.foreign += 1;
            }
            return None;
        };
        if frame.id.is_none() || frame.chat_id != Some(room_id) || frame.created_at.is_none() {
            tally.malformed += 1;
            self.sample(format!(
                "room {room_id}: frame without id, chat_id or created_at: {text:.200}"
            ));
        }
        if let Some(id) = frame.id {
            tally.note_id(id);
        }
        if tally.record(&stamp) == Delivery::Fresh {
            self.latency
                .record(received.saturating_sub(stamp.sent_unix_nanos) / 1_000);
            self.delivered.fetch_add(1, Ordering::Relaxed);
            self.last_delivery_unix
                .fetch_max(received, Ordering::Relaxed);
            return frame.id;
        }
        None
    }

    /// Counts a receipt frame on a WebSocket sender's socket (which gets its rooms' frames).
    fn take_sender_frame(&self, text: &str) {
        // Most frames there are messages: parse only what may be a receipt.
        if !text.contains("receipt") {
            return;
        }
        if let Ok(Frame {
            data: Some(data), ..
        }) = serde_json::from_str::<Frame>(text)
        {
            if let Some(kind) = ReceiptKind::of(&data) {
                self.receipts.count(kind);
            }
        }
    }
}

/// The receipt frames of the node: `{"data": {"purpose": "receipts", "positions": [...]}}`
/// first on every socket, then `{"data": {"purpose": "receipt", "event": "delivered" |
/// "read", ...}}` as members' positions move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// The positions frame a socket gets first.
    Positions,
    Delivered,
    Read,
    /// A `receipt` frame of an event this bench does not know.
    Other,
}

impl ReceiptKind {
    fn of(data: &FrameData<'_>) -> Option<Self> {
        Self::classify(data.purpose.as_deref(), data.event.as_deref())
    }

    /// What a frame's `purpose` and `event` make of it; `None`: not a receipt.
    pub fn classify(purpose: Option<&str>, event: Option<&str>) -> Option<Self> {
        match (purpose?, event) {
            ("receipts", _) => Some(Self::Positions),
            ("receipt", Some("delivered")) => Some(Self::Delivered),
            ("receipt", Some("read")) => Some(Self::Read),
            ("receipt", _) => Some(Self::Other),
            _ => None,
        }
    }
}

/// Receipt frames received, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReceiptFrames {
    /// `receipts` frames (one per socket opened).
    pub positions: u64,
    pub delivered: u64,
    pub read: u64,
    pub other: u64,
}

impl ReceiptFrames {
    pub fn total(&self) -> u64 {
        self.positions + self.delivered + self.read + self.other
    }
}

/// Shared counters of receipt frames.
#[derive(Default)]
pub struct ReceiptCounter([AtomicU64; 4]);

impl ReceiptCounter {
    pub fn count(&self, kind: ReceiptKind) {
        self.0[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> ReceiptFrames {
        let n = |kind: ReceiptKind| self.0[kind as usize].load(Ordering::Relaxed);
        ReceiptFrames {
            positions: n(ReceiptKind::Positions),
            delivered: n(ReceiptKind::Delivered),
            read: n(ReceiptKind::Read),
            other: n(ReceiptKind::Other),
        }
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    success: Option<bool>,
    #[serde(borrow)]
    data: Option<FrameData<'a>>,
}

#[derive(Deserialize)]
struct FrameData<'a> {
    #[serde(borrow)]
    purpose: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    id: Option<i64>,
    chat_id: Option<i64>,
    created_at: Option<IgnoredAny>,
}

/// `mark_read_every`: after every this many fresh messages, mark the room read up to the
/// last one over the socket.
async fn receive(
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

type Sink = SplitSink<Socket, Message>;

async fn watch_sender_socket(mut stream: SplitStream<Socket>, shared: Arc<Shared>) {
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

/// When each message is due, and how big it is.
#[derive(Clone, Copy)]
struct Schedule {
    started: Instant,
    rate: Option<f64>,
    bytes: usize,
}

impl Schedule {
    /// Open loop: message `seq` is due at `seq / rate` whatever happened to earlier ones, so a
    /// slow node shows as latency (and a lower accepted rate), not as a lower offered load.
    async fn wait_for(&self, seq: u64) {
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_secs_f64(seq as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

async fn send_rest(
    shared: Arc<Shared>,
    schedule: Schedule,
    seqs: Vec<u64>,
    target: Target,
    user: User,
    rooms: Arc<Vec<i64>>,
) -> Vec<Sink> {
    // A client of its own: one keep-alive connection, as one chat client would have.
    let api = match Api::new() {
        Ok(api) => api,
        Err(error) => {
            shared.send_error(format!("{error:#}"));
            return Vec::new();
        }
    };
    let mut failures = 0;
    for seq in seqs {
        schedule.wait_for(seq).await;
        let content = ledger::content(shared.run, seq, unix_nanos(), schedule.bytes);
        let room = rooms[shared.plan.room_of(seq) as usize];
        shared.sent.fetch_add(1, Ordering::Relaxed);
        match api.send(&target, &user, room, &content).await {
            Ok(_) => {
                shared.accept(seq);
                failures = 0;
            }
            Err(error) => {
                shared.send_error(format!("send to room {room}: {error}"));
                failures += 1;
                if failures == MAX_CONSECUTIVE_ERRORS {
                    shared.sample(format!(
                        "a sender stopped after {MAX_CONSECUTIVE_ERRORS} failures in a row"
                    ));
                    break;
                }
            }
        }
    }
    Vec::new()
}

/// Sends on the sockets of the rooms this sender owns; returns them to be closed once the
/// receivers have everything (closing earlier could race the node's last stores).
async fn send_ws(
    shared: Arc<Shared>,
    schedule: Schedule,
    seqs: Vec<u64>,
    mut sinks: Vec<(u64, Sink)>,
) -> Vec<Sink> {
    let mut failures = 0;
    for seq in seqs {
        schedule.wait_for(seq).await;
        let room = shared.plan.room_of(seq);
        let Some((_, sink)) = sinks.iter_mut().find(|(r, _)| *r == room) else {
            shared.send_error(format!("no sender socket for room index {room}"));
            continue;
        };
        let content = ledger::content(shared.run, seq, unix_nanos(), schedule.bytes);
        let frame = json!({ "purpose": "send_chat_message", "message": content }).to_string();
        shared.sent.fetch_add(1, Ordering::Relaxed);
        match timeout(REQUEST_TIMEOUT, sink.send(Message::Text(frame.into()))).await {
            Ok(Ok(())) => {
                shared.accept(seq);
                failures = 0;
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_string(),
                };
                shared.send_error(format!("WebSocket send: {error}"));
                failures += 1;
                if failures == MAX_CONSECUTIVE_ERRORS {
                    shared.sample(format!(
                        "a sender stopped after {MAX_CONSECUTIVE_ERRORS} failures in a row"
                    ));
                    break;
                }
            }
        }
    }
    sinks.into_iter().map(|(_, sink)| sink).collect()
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub mode: &'static str,
    pub send_over: SendOver,
    pub targets: Vec<String>,
    pub rooms: usize,
    pub receivers_per_room: usize,
    pub receiver_sockets: usize,
    pub senders: usize,
    /// Sockets the WebSocket senders send on (they receive their rooms' frames too).
    pub sender_sockets: usize,
    pub messages: u64,
    pub message_bytes: usize,
    /// Offered messages per second; `null`: as fast as possible.
    pub offered_rate: Option<f64>,
    /// Registering users and creating rooms.
    pub setup_secs: f64,
    /// Opening this run's sockets.
    pub socket_secs: f64,
    /// First send to last send's answer.
    pub send_secs: f64,
    /// First send to the end of the wait for stragglers.
    pub run_secs: f64,
    pub sent: u64,
    pub accepted: u64,
    pub send_errors: u64,
    pub accepted_per_sec: f64,
    /// Distinct accepted messages received, over all receivers.
    pub deliveries: u64,
    /// Deliveries over the time from the first send to the last delivery.
    pub deliveries_per_sec: f64,
    /// End to end: accepted messages over the time from the first send to the last delivery.
    /// Unlike `accepted_per_sec` it is not inflated by WebSocket sends that only fill buffers.
    pub messages_per_sec: f64,
    /// Receipt frames (`receipts` on connect, `receipt` delivered / read) on every socket of
    /// the run; never counted as deliveries.
    pub receipt_frames: u64,
    pub receipt_frames_by_event: ReceiptFrames,
    /// `--mark-read`: receivers marked read after every this many messages (`null`: never).
    pub mark_read_every: Option<u64>,
    /// `mark_read` frames the receivers wrote.
    pub reads_sent: u64,
    /// Error frames on receivers' sockets (a refused `mark_read`).
    pub refused_frames: u64,
    /// Every receiver got every accepted message of its room exactly once, nothing else.
    pub complete: bool,
    pub completeness: Completeness,
    /// Send to receipt, over every first delivery.
    pub latency_ms: LatencySummary,
    pub socket_closes: u64,
    /// Failed sends, sockets closed early, malformed frames, refused frames.
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// The nodes given by `--server-pid`, over the run.
    pub servers: Vec<ProcessReport>,
    /// This process, over the run (it shares the machine with the nodes).
    pub bench: ProcessReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_frames_are_counted_apart_from_deliveries_and_refusals_are_errors() {
        let plan = Plan {
            rooms: 1,
            senders: 1,
            messages: 2,
        };
        let shared = Shared::new(plan, 5);
        let mut tally = Tally::new(plan, 5, 0);
        for frame in [
            r#"{"data":{"purpose":"receipts","chat_id":42,"positions":[{"user_id":1,"delivered_upto":0,"read_upto":0}]}}"#,
            r#"{"data":{"purpose":"receipt","event":"delivered","chat_id":42,"user_id":1,"upto":7}}"#,
            r#"{"data":{"purpose":"receipt","event":"read","chat_id":42,"user_id":1,"upto":7}}"#,
            r#"{"data":{"purpose":"receipt","event":"read","chat_id":42,"user_id":2,"upto":7}}"#,
            r#"{"data":{"purpose":"receipt","event":"typing","chat_id":42,"user_id":1}}"#,
        ] {
            assert_eq!(shared.take_frame(frame, 42, &mut tally), None, "{frame}");
        }
        let message = json!({"data": {
            "purpose": "new_chat_message", "event": "message", "id": 9, "chat_id": 42,
            "message": ledger::content(5, 0, unix_nanos(), 60), "created_at": "now",
            "delivered_count": 0, "read_count": 0,
        }})
        .to_string();
        assert_eq!(shared.take_frame(&message, 42, &mut tally), Some(9));
        let refused = r#"{"success":false,"errors":{"detail":"upto is above the newest message"}}"#;
        assert_eq!(shared.take_frame(refused, 42, &mut tally), None);
        assert_eq!(
            shared.receipts.counts(),
            ReceiptFrames {
                positions: 1,
                delivered: 1,
                read: 2,
                other: 1
            }
        );
        assert_eq!(shared.delivered.load(Ordering::Relaxed), 1);
        assert_eq!(shared.refused_frames.load(Ordering::Relaxed), 1);
        assert_eq!(
            (tally.malformed, tally.foreign, tally.duplicates),
            (0, 0, 0)
        );
        // Another room's receipt is foreign, as another room's message would be.
        let other_room =
            r#"{"data":{"purpose":"receipt","event":"read","chat_id":43,"user_id":1,"upto":7}}"#;
        shared.take_frame(other_room, 42, &mut tally);
        assert_eq!(tally.foreign, 1);
        // A WebSocket sender's socket counts receipts and ignores messages.
        shared.take_sender_frame(&message);
        shared.take_sender_frame(
            r#"{"data":{"purpose":"receipt","event":"delivered","chat_id":42,"user_id":3,"upto":9}}"#,
        );
        assert_eq!(shared.receipts.counts().delivered, 2);
        assert_eq!(shared.receipts.counts().total(), 7);
    }

    #[test]
    fn receipts_are_classified_by_purpose_and_event() {
        use ReceiptKind::*;
        assert_eq!(
            ReceiptKind::classify(Some("receipts"), None),
            Some(Positions)
        );
        assert_eq!(
            ReceiptKind::classify(Some("receipt"), Some("delivered")),
            Some(Delivered)
        );
        assert_eq!(
            ReceiptKind::classify(Some("receipt"), Some("read")),
            Some(Read)
        );
        assert_eq!(ReceiptKind::classify(Some("receipt"), None), Some(Other));
        assert_eq!(
            ReceiptKind::classify(Some("new_chat_message"), Some("message")),
            None
        );
        assert_eq!(ReceiptKind::classify(None, Some("read")), None);
    }
}
