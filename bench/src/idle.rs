//! Connection scale: many idle, authenticated sockets, and what they cost the node in memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::api::{open_socket, Api, Socket, Target, User};
use super::load::{self, OPEN_CONCURRENCY};
use super::procstat::{self, Sample};
use super::progress::Progress;

/// Users and rooms the sockets are spread over (a user may hold many sockets in a room).
const USERS: usize = 4;
const ROOMS: usize = 8;
/// Descriptors this process needs besides its sockets.
const SPARE_FDS: u64 = 64;
/// Time for the nodes' memory to settle once the last socket is registered.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub targets: Vec<Target>,
    pub sockets: usize,
    pub server_pids: Vec<i32>,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub mode: &'static str,
    pub targets: Vec<String>,
    pub sockets: usize,
    /// Sockets the nodes counted once all were open (other clients' included).
    pub sockets_counted: u64,
    pub open_secs: f64,
    pub opens_per_sec: f64,
    /// This process's open-files limit after raising it.
    pub fd_limit: u64,
    pub servers: Vec<IdleServer>,
    /// Growth of the nodes' resident memory per socket, over all nodes.
    pub rss_per_socket_kib: Option<f64>,
    /// Sockets the nodes closed while they should have stayed open.
    pub socket_closes: u64,
    pub bench_rss_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleServer {
    pub pid: i32,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub peak_rss_kib: u64,
    /// `peak_rss_kib` covers opening the sockets only, not the node's life.
    pub peak_is_run_only: bool,
    pub fd_limit: Option<u64>,
}

pub async fn run(options: &IdleOptions) -> anyhow::Result<IdleReport> {
    if options.sockets == 0 {
        bail!("--idle-sockets must be at least 1");
    }
    let fd_limit = check_fd_limits(options)?;
    let api = Api::new()?;
    let targets = &options.targets;
    let tag = load::tag();
    let users = load::register_users(&api, targets, &tag, "i", USERS, options.progress).await?;
    let members: Vec<i64> = users[1..].iter().map(|u| u.id).collect();
    let rooms = load::create_rooms(&api, targets, &tag, &users[0], &members, ROOMS).await?;
    let baseline = load::open_sockets_on(&api, targets).await?;
    let peaks_reset: Vec<bool> = options
        .server_pids
        .iter()
        .map(|&pid| procstat::reset_peak(pid))
        .collect();
    let before = procstat::sample_all(&options.server_pids)?;
    let (sockets, open_secs) = open_all(options, &users, &rooms).await?;
    let held = hold_all(&api, options, sockets, baseline).await?;
    let servers = servers(&options.server_pids, &before, &held.after, peaks_reset);
    let growth: i64 = servers
        .iter()
        .map(|s| s.rss_after_kib as i64 - s.rss_before_kib as i64)
        .sum();
    Ok(IdleReport {
        mode: "idle",
        targets: targets.iter().map(|t| t.url.clone()).collect(),
        sockets: options.sockets,
        sockets_counted: held.sockets_counted,
        open_secs,
        opens_per_sec: options.sockets as f64 / open_secs.max(1e-9),
        fd_limit,
        rss_per_socket_kib: (!servers.is_empty()).then(|| growth as f64 / options.sockets as f64),
        servers,
        socket_closes: held.socket_closes,
        bench_rss_kib: held.bench_rss_kib,
    })
}

/// Raises this process's open-files limit and fails early if it, or a node's, is too low
/// for the sockets; returns this process's limit.
fn check_fd_limits(options: &IdleOptions) -> anyhow::Result<u64> {
    let fd_limit = procstat::raise_open_files_limit()?;
    let needed = options.sockets as u64 + SPARE_FDS;
    if fd_limit < needed {
        bail!("{} sockets need about {needed} file descriptors but this process may open {fd_limit}; raise the hard limit (ulimit -Hn) or ask for fewer", options.sockets);
    }
    for &pid in &options.server_pids {
        if let Some(limit) = procstat::open_files_limit(pid) {
            if limit < needed {
                bail!("node pid {pid} may open only {limit} files, fewer than {} sockets need; start it after `ulimit -n $(ulimit -Hn)` (or use --spawn)", options.sockets);
            }
        }
    }
    Ok(fd_limit)
}

/// Opens every socket, spread over targets, rooms and users, [`OPEN_CONCURRENCY`] at a
/// time; returns them and the seconds it took.
async fn open_all(
    options: &IdleOptions,
    users: &[User],
    rooms: &[i64],
) -> anyhow::Result<(Vec<Socket>, f64)> {
    let targets = &options.targets;
    let opened = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(options.progress, "sockets", options.sockets as u64, {
        let opened = opened.clone();
        move || (opened.load(Ordering::Relaxed), String::new())
    });
    let started = Instant::now();
    let sockets: Vec<Socket> = stream::iter(0..options.sockets)
        .map(|i| {
            let (target, room) = (&targets[i % targets.len()], rooms[i % ROOMS]);
            let user = &users[(i / ROOMS) % USERS];
            let opened = opened.clone();
            async move {
                let socket = open_socket(target, room, &user.access)
                    .await
                    .with_context(|| format!("socket {i}"))?;
                opened.fetch_add(1, Ordering::Relaxed);
                anyhow::Ok(socket)
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect()
        .await?;
    let open_secs = started.elapsed().as_secs_f64();
    bar.finish().await;
    Ok((sockets, open_secs))
}

/// What was measured while every socket was held open.
struct Held {
    sockets_counted: u64,
    /// The nodes' memory, settled.
    after: Vec<Sample>,
    bench_rss_kib: u64,
    socket_closes: u64,
}

/// Holds the sockets open until the nodes count them all and their memory settles, samples
/// it, then closes them.
async fn hold_all(
    api: &Api,
    options: &IdleOptions,
    sockets: Vec<Socket>,
    baseline: u64,
) -> anyhow::Result<Held> {
    let targets = &options.targets;
    let stop = CancellationToken::new();
    let closes = Arc::new(AtomicU64::new(0));
    // Reading keeps the sockets alive: tungstenite answers the node's pings as it reads.
    let mut holders = JoinSet::new();
    for socket in sockets {
        holders.spawn(hold(socket, stop.clone(), closes.clone()));
    }
    let expected = baseline + options.sockets as u64;
    let all_counted = load::wait_for_sockets(api, targets, |n| n >= expected).await;
    tokio::time::sleep(SETTLE).await;
    let sockets_counted = load::open_sockets_on(api, targets).await?;
    let after = procstat::sample_all(&options.server_pids)?;
    let bench_rss_kib = Sample::own()?.rss_kib;
    stop.cancel();
    while holders.join_next().await.is_some() {}
    if !all_counted {
        bail!("the nodes count {sockets_counted} sockets, expected at least {expected}");
    }
    Ok(Held {
        sockets_counted,
        after,
        bench_rss_kib,
        socket_closes: closes.load(Ordering::Relaxed),
    })
}

/// Each node's memory before and after the sockets, and its open-files limit.
fn servers(
    pids: &[i32],
    before: &[Sample],
    after: &[Sample],
    peaks_reset: Vec<bool>,
) -> Vec<IdleServer> {
    pids.iter()
        .zip(before.iter().zip(after).zip(peaks_reset))
        .map(|(&pid, ((before, after), peak_is_run_only))| IdleServer {
            pid,
            rss_before_kib: before.rss_kib,
            rss_after_kib: after.rss_kib,
            peak_rss_kib: after.peak_rss_kib,
            peak_is_run_only,
            fd_limit: procstat::open_files_limit(pid),
        })
        .collect()
}

async fn hold(mut socket: Socket, stop: CancellationToken, closes: Arc<AtomicU64>) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            frame = socket.next() => match frame {
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    closes.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = timeout(Duration::from_secs(2), socket.close(None)).await;
}
