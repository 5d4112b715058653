//! `--presence N --churn K`: presence under churn. N users in one room, N - K of them
//! connected; messages go to the room at a steady rate for a phase without churn (today's
//! latency), then for a phase in whose first second the other K connect. Reports the
//! presence frames (`presence`, or `online_count` in a room over the node's
//! `--presence-room-limit`) the sockets got per second and the message latency of each phase, and
//! checks that one user in `--presence-rooms` rooms coming online is one frame per watching
//! socket, and that a flap (close and reopen within the node's grace) announces nothing.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::api::{open_socket, Api, Socket, Target, User};
use super::histogram::{Histogram, LatencySummary};
use super::load::{self, unix_nanos, OPEN_CONCURRENCY};

mod wide;

/// Per-second presence buckets of a phase; later frames count in the last one. Bounds the
/// counters' memory whatever the phase length.
const MAX_SECS: usize = 120;
/// Sends in flight at once: the rate is open-loop, a slow answer must not delay the next.
const SEND_CONCURRENCY: usize = 16;
/// Members a room is created with (the API takes at most 100); the rest enter it.
const CREATE_MEMBERS: usize = 99;
/// Longest wait for the presence frames of a step to stop arriving.
const SETTLE_MAX: Duration = Duration::from_secs(60);
/// The frame count must hold still this long to count as settled.
const SETTLE_QUIET: Duration = Duration::from_secs(1);
/// Longer than the node's flap grace (3 s) plus its 200 ms batching.
const FLAP_WAIT: Duration = Duration::from_secs(4);
/// Sockets watching the user of the many-rooms check, one per room, spread over its rooms.
const WATCHERS: usize = 10;

#[derive(Debug, Clone)]
pub struct PresenceOptions {
    pub targets: Vec<Target>,
    /// Members of the room.
    pub users: usize,
    /// Members who connect within one second during the churn phase.
    pub churn: usize,
    /// Messages per second to the room in both phases.
    pub rate: f64,
    pub phase: Duration,
    /// Rooms of the one user of the many-rooms check.
    pub wide_rooms: usize,
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct PresenceReport {
    pub mode: &'static str,
    pub targets: Vec<String>,
    pub users: usize,
    pub churn: usize,
    pub rate: f64,
    pub phase_secs: f64,
    pub setup_secs: f64,
    /// Without churn: today's figure.
    pub steady: PhaseReport,
    pub churned: PhaseReport,
    pub wide: WideReport,
    pub send_errors: u64,
}

#[derive(Debug, Serialize)]
pub struct PhaseReport {
    pub messages_sent: u64,
    pub deliveries: u64,
    pub latency_ms: LatencySummary,
    /// Presence frames (`presence` and `online_count`) over all sockets from the phase's start
    /// until they settled.
    pub presence_frames: u64,
    pub presence_frames_per_sec: f64,
    pub peak_presence_frames_per_sec: u64,
    /// Seconds the K connections took to open (0 without churn).
    pub connect_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct WideReport {
    pub rooms: usize,
    pub watching_sockets: usize,
    /// `online` frames about the user on each watching socket once it connected.
    pub online_frames_per_socket: Vec<u64>,
    /// Presence frames about the user after it closed and reopened its socket at once.
    pub flap_frames: u64,
    /// Every watching socket got exactly one frame and the flap none.
    pub exact: bool,
}

pub async fn run(options: &PresenceOptions) -> anyhow::Result<PresenceReport> {
    if options.churn >= options.users || options.users < 2 {
        bail!("--presence needs at least 2 users and --churn below them");
    }
    if !(options.rate > 0.0 && options.rate.is_finite()) {
        bail!("--rate must be a positive number of messages per second");
    }
    let started = Instant::now();
    let api = Api::new()?;
    let tag = load::tag();
    let targets = &options.targets;
    let users =
        load::register_users(&api, targets, &tag, "p", options.users, options.progress).await?;
    let room = one_room(&api, targets, &tag, &users).await?;
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let mut readers = JoinSet::new();
    let connected = options.users - options.churn;
    let sockets = open_all(targets, room, &users[..connected]).await?;
    for socket in sockets {
        readers.spawn(read(socket, counters.clone(), stop.clone()));
    }
    // Every connected socket hears of every other arrival; none may spill into a phase.
    let arrivals = (connected * (connected - 1)) as u64;
    settle(arrivals, || counters.presence_total()).await;
    let setup_secs = started.elapsed().as_secs_f64();

    let room = Room {
        id: room,
        sender: &users[0],
        counters: &counters,
        stop: &stop,
    };
    let steady = phase(&api, options, &room, 0, &[]).await;
    let churned = phase(&api, options, &room, 1, &users[connected..]).await;
    let wide = match (&steady, &churned) {
        (Ok(_), Ok(_)) => Some(wide::check(&api, options, &tag).await),
        _ => None,
    };
    stop.cancel();
    while readers.join_next().await.is_some() {}
    let (steady, (churned, churners)) = (steady?.0, churned?);
    for reader in churners {
        let _ = reader.await;
    }
    Ok(PresenceReport {
        mode: "presence",
        targets: targets.iter().map(|t| t.url.clone()).collect(),
        users: options.users,
        churn: options.churn,
        rate: options.rate,
        phase_secs: options.phase.as_secs_f64(),
        setup_secs,
        steady,
        churned,
        wide: wide.expect("checked once both phases ran")?,
        send_errors: counters.send_errors.load(Ordering::Relaxed),
    })
}

/// One room holding every user: created with the first 100, the others enter it.
async fn one_room(api: &Api, targets: &[Target], tag: &str, users: &[User]) -> anyhow::Result<i64> {
    let first: Vec<i64> = users[1..users.len().min(CREATE_MEMBERS + 1)]
        .iter()
        .map(|u| u.id)
        .collect();
    let room = load::create_rooms(api, targets, tag, &users[0], &first, 1).await?[0];
    stream::iter(users.iter().enumerate().skip(CREATE_MEMBERS + 1))
        .map(|(i, user)| async move {
            api.enter(&targets[i % targets.len()], user, room)
                .await
                .map_err(|e| anyhow::anyhow!("user {i} entering the room: {e} (a room of more than --max-room-members needs it raised)"))
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(room)
}

async fn open_all(targets: &[Target], room: i64, users: &[User]) -> anyhow::Result<Vec<Socket>> {
    stream::iter(users.iter().enumerate())
        .map(|(i, user)| async move {
            open_socket(&targets[i % targets.len()], room, &user.access)
                .await
                .with_context(|| format!("socket of user {i}"))
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect()
        .await
}

/// The room of the run, who sends to it and what its sockets counted.
struct Room<'a> {
    id: i64,
    sender: &'a User,
    counters: &'a Arc<Counters>,
    stop: &'a CancellationToken,
}

/// Sends at `options.rate` for `options.phase` while `churners` (if any) connect evenly over
/// its first second; waits for the last deliveries and presence frames, then summarises.
/// Returns the churners' socket readers too.
async fn phase(
    api: &Api,
    options: &PresenceOptions,
    room: &Room<'_>,
    index: usize,
    churners: &[User],
) -> anyhow::Result<(PhaseReport, Vec<JoinHandle<()>>)> {
    let counters = room.counters;
    counters.start(index);
    let started = Instant::now();
    let (sent, opened) = tokio::join!(
        send_for(api, options, room, index),
        connect_within_a_second(&options.targets, room, churners),
    );
    let (readers, connect_secs) = opened?;
    settle(0, || {
        counters.deliveries[index].load(Ordering::Relaxed) + counters.presence_total()
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let buckets: Vec<u64> = counters.presence[index]
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    let frames: u64 = buckets.iter().sum();
    let report = PhaseReport {
        messages_sent: sent,
        deliveries: counters.deliveries[index].load(Ordering::Relaxed),
        latency_ms: counters.latency[index].summary_ms(),
        presence_frames: frames,
        presence_frames_per_sec: frames as f64 / elapsed.max(1e-9),
        peak_presence_frames_per_sec: buckets.iter().copied().max().unwrap_or(0),
        connect_secs,
    };
    Ok((report, readers))
}

/// Message `n` of the phase is due at `n / rate`; returns the sends accepted.
async fn send_for(api: &Api, options: &PresenceOptions, room: &Room<'_>, index: usize) -> u64 {
    let count = (options.phase.as_secs_f64() * options.rate).ceil() as u64;
    let start = tokio::time::Instant::now();
    let target = &options.targets[0];
    stream::iter(0..count)
        .map(|n| async move {
            tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / options.rate))
                .await;
            let content = format!("presence:{index}:{}", unix_nanos());
            let ok = api
                .send(target, room.sender, room.id, &content)
                .await
                .is_ok();
            if !ok {
                room.counters.send_errors.fetch_add(1, Ordering::Relaxed);
            }
            u64::from(ok)
        })
        .buffer_unordered(SEND_CONCURRENCY)
        .fold(0, |sum, ok| async move { sum + ok })
        .await
}

/// Opens a socket for each user, the i-th at i/len of a second, each read from as soon as
/// it is open; returns their readers and the seconds until the last was open.
async fn connect_within_a_second(
    targets: &[Target],
    room: &Room<'_>,
    users: &[User],
) -> anyhow::Result<(Vec<JoinHandle<()>>, f64)> {
    let start = tokio::time::Instant::now();
    let spacing = Duration::from_secs(1) / users.len().max(1) as u32;
    let readers = stream::iter(users.iter().enumerate())
        .map(|(i, user)| async move {
            tokio::time::sleep_until(start + spacing * i as u32).await;
            let socket = open_socket(&targets[i % targets.len()], room.id, &user.access)
                .await
                .with_context(|| format!("churning socket {i}"))?;
            let reader = read(socket, room.counters.clone(), room.stop.clone());
            anyhow::Ok(tokio::spawn(reader))
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect()
        .await?;
    Ok((readers, start.elapsed().as_secs_f64()))
}

/// Waits (at most [`SETTLE_MAX`]) until `count` reaches `at_least` and holds still for
/// [`SETTLE_QUIET`].
async fn settle(at_least: u64, count: impl Fn() -> u64) {
    let deadline = Instant::now() + SETTLE_MAX;
    let mut last = count();
    let mut still_since = Instant::now();
    while Instant::now() < deadline && (last < at_least || still_since.elapsed() < SETTLE_QUIET) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if now != last {
            (last, still_since) = (now, Instant::now());
        }
    }
}

/// What the room's sockets received, by phase (0 steady, 1 churn).
#[derive(Default)]
struct Counters {
    phase: AtomicUsize,
    /// When the current phase began, in unix nanoseconds.
    phase_start: AtomicU64,
    latency: [Histogram; 2],
    deliveries: [AtomicU64; 2],
    presence: [Buckets; 2],
    send_errors: AtomicU64,
}

struct Buckets([AtomicU64; MAX_SECS]);

impl Default for Buckets {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl std::ops::Deref for Buckets {
    type Target = [AtomicU64; MAX_SECS];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Counters {
    /// Starts `phase`, dropping what set-up counted in its buckets (settled by then).
    fn start(&self, phase: usize) {
        for bucket in self.presence[phase].iter() {
            bucket.store(0, Ordering::Relaxed);
        }
        self.phase_start.store(unix_nanos(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn presence_total(&self) -> u64 {
        self.presence
            .iter()
            .flat_map(|b| b.iter())
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    fn take(&self, text: &str) {
        let Ok(Frame { data: Some(data) }) = serde_json::from_str::<Frame>(text) else {
            return;
        };
        let now = unix_nanos();
        // A room over the node's --presence-room-limit hears counts instead of members.
        if matches!(data.purpose.as_deref(), Some("presence" | "online_count")) {
            let since = now.saturating_sub(self.phase_start.load(Ordering::Relaxed));
            let second = ((since / 1_000_000_000) as usize).min(MAX_SECS - 1);
            self.presence[self.phase.load(Ordering::Relaxed)][second]
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some((index, sent)) = data.message.as_deref().and_then(parse_content) else {
            return;
        };
        self.latency[index].record(now.saturating_sub(sent) / 1_000);
        self.deliveries[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// `presence:<phase>:<send time in unix ns>` into its phase and send time.
fn parse_content(content: &str) -> Option<(usize, u64)> {
    let mut parts = content.strip_prefix("presence:")?.split(':');
    let index: usize = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    (index < 2).then_some((index, sent))
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    data: Option<FrameData<'a>>,
}

#[derive(Deserialize)]
struct FrameData<'a> {
    #[serde(borrow)]
    purpose: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    user_id: Option<i64>,
    status: Option<Cow<'a, str>>,
}

async fn read(mut socket: Socket, counters: Arc<Counters>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => counters.take(text.as_str()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
}

/// The report as a table, the phases side by side.
pub fn table(report: &PresenceReport) -> String {
    let (a, b) = (&report.steady, &report.churned);
    let mut out = format!(
        "presence: {} users in one room, {} connecting within 1 s, {} msg/s, {} s phases (setup {:.1} s)\n",
        report.users, report.churn, report.rate, report.phase_secs, report.setup_secs
    );
    let rows: [(&str, String, String); 6] = [
        (
            "messages sent",
            a.messages_sent.to_string(),
            b.messages_sent.to_string(),
        ),
        (
            "deliveries",
            a.deliveries.to_string(),
            b.deliveries.to_string(),
        ),
        (
            "latency p50 ms",
            format!("{:.2}", a.latency_ms.p50),
            format!("{:.2}", b.latency_ms.p50),
        ),
        (
            "latency p99 ms",
            format!("{:.2}", a.latency_ms.p99),
            format!("{:.2}", b.latency_ms.p99),
        ),
        (
            "presence frames",
            a.presence_frames.to_string(),
            b.presence_frames.to_string(),
        ),
        (
            "presence frames/s",
            format!(
                "{:.0} (peak {})",
                a.presence_frames_per_sec, a.peak_presence_frames_per_sec
            ),
            format!(
                "{:.0} (peak {})",
                b.presence_frames_per_sec, b.peak_presence_frames_per_sec
            ),
        ),
    ];
    out.push_str(&format!("{:<22}{:>24}{:>24}\n", "", "steady", "churn"));
    for (name, steady, churn) in rows {
        out.push_str(&format!("{name:<22}{steady:>24}{churn:>24}\n"));
    }
    out.push_str(&format!(
        "{:<22}{:.2} s\n",
        "churn connects took", b.connect_secs
    ));
    let w = &report.wide;
    out.push_str(&format!(
        "{:<22}{} rooms, {} watching sockets, online frames per socket {:?}, after a flap {} ({})\n",
        "one user, many rooms",
        w.rooms,
        w.watching_sockets,
        w.online_frames_per_socket,
        w.flap_frames,
        if w.exact { "exact" } else { "NOT exact" }
    ));
    out.push_str(&format!("{:<22}{}\n", "send errors", report.send_errors));
    out
}
