//! `chatnode bench`: a load generator that drives running nodes over real HTTP and WebSocket
//! on loopback, and reports throughput, send-to-socket latency and delivery completeness.
//!
//! Modes: a load run (default), a latency-versus-load sweep (`--sweep`), connection scale
//! (`--idle-sockets`), a soak (`--soak`), password hashing (`--auth-flood`) and the chat list of
//! a user in many rooms (`--chat-list`) and presence under churn (`--presence`). Each prints a table (unless `--json`) and exactly one
//! JSON line.

pub mod api;
pub mod auth_flood;
mod chart;
pub mod chat_list;
pub mod histogram;
pub mod idle;
pub mod ledger;
pub mod load;
pub mod memory;
pub mod presence;
pub mod procstat;
mod progress;
mod report;
pub mod soak;
pub mod soak_ledger;
mod spawn;
pub mod sweep;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use api::Target;
use load::{LoadOptions, SendOver};
use soak::{Mix, SoakOptions};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// A node to drive, `http://host:port`; repeat for several nodes (users, rooms and sockets
    /// are spread round-robin). Loopback only unless --allow-remote.
    #[arg(
        long = "target",
        value_name = "URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub targets: Vec<String>,

    /// Rooms the messages are spread over.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,

    /// Receiving sockets per room (one user each; every user is in every room).
    #[arg(long, default_value_t = 10)]
    pub receivers: usize,

    /// Sending users, each with one connection at a time (REST) or one socket per room it
    /// sends to (WebSocket).
    #[arg(long, default_value_t = 4)]
    pub senders: usize,

    /// Messages to send, over all rooms.
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,

    /// How senders send.
    #[arg(long, value_enum, default_value_t = SendOver::Rest)]
    pub send_over: SendOver,

    /// Offered load in messages per second, at a fixed rate; default: as fast as possible.
    /// With --soak: actions per second over all users (default 100).
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,

    /// Receivers mark their room read over their socket (`mark_read`, up to the message just
    /// received) after every N messages they receive (1: each one); default: never. Receipt
    /// frames are counted either way.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub mark_read: Option<u64>,

    /// Content size of each message (at least its ~40-byte stamp).
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,

    /// Seconds to wait for stragglers after the last send.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,

    /// A node's process id, to report its CPU time and memory; repeat for several nodes.
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<i32>,

    /// Print only the JSON line (no table, no progress).
    #[arg(long)]
    pub json: bool,

    /// Allow targets that are not loopback (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    pub allow_remote: bool,

    /// Connection scale instead of load: open this many idle authenticated sockets and report
    /// the nodes' memory per socket (needs --server-pid or --spawn for memory); N defaults
    /// to 10000.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10000")]
    pub idle_sockets: Option<usize>,

    /// Password-hashing load instead of messages: N registrations then N logins from
    /// --clients concurrent clients; reports their throughput and the nodes' peak memory
    /// (give --server-pid or --spawn, and turn rate limits off). N defaults to 1000.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1000",
          conflicts_with_all = ["idle_sockets", "soak"])]
    pub auth_flood: Option<usize>,

    /// Concurrent clients of --auth-flood.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,

    /// The chat list instead of messages: one user in N rooms (each with a message from
    /// another member), the whole list walked --passes times, --page-limit rooms per page;
    /// reports page latency and size and the nodes' memory over the walks. N defaults to 2000.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "2000",
          conflicts_with_all = ["idle_sockets", "soak", "auth_flood", "sweep"])]
    pub chat_list: Option<usize>,

    /// Rooms per page of --chat-list (the API allows 1 to 200).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub page_limit: u32,

    /// Walks of the whole list in --chat-list.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub passes: u64,

    /// Presence under churn instead of messages: N users in one room (2000 when bare), all
    /// but --churn connected; --rate messages/s (default 20) for --phase-secs without churn,
    /// then as long again while the --churn others connect within one second. Reports
    /// presence frames/s and message latency of both, and the --presence-rooms check.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "2000",
          conflicts_with_all = ["idle_sockets", "soak", "auth_flood", "sweep", "chat_list"])]
    pub presence: Option<usize>,

    /// Members of --presence who connect within one second of the churn phase.
    #[arg(long, value_name = "K", default_value_t = 500)]
    pub churn: usize,

    /// Seconds each phase of --presence sends for.
    #[arg(long, default_value_t = 5.0)]
    pub phase_secs: f64,

    /// Rooms of the one user whose coming online --presence counts (one frame per watching
    /// socket expected, and none for a flap).
    #[arg(long, value_name = "M", default_value_t = 1000)]
    pub presence_rooms: usize,

    /// Latency against offered load: one run as fast as possible, then fixed-rate runs at
    /// --sweep-percent of its rate, drawn to --svg.
    #[arg(long, conflicts_with_all = ["idle_sockets", "rate"])]
    pub sweep: bool,

    /// Offered rates of a sweep, in percent of the measured maximum.
    #[arg(long, value_delimiter = ',', default_value = "10,25,50,75,90,100")]
    pub sweep_percent: Vec<f64>,

    /// How long each fixed-rate step of a sweep sends for.
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,

    /// Where a sweep draws its latency chart (default bench-sweep.svg), or a soak its memory
    /// chart (only if given), as SVG.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,

    /// Soak instead of load: --users send over REST and WebSocket, join and leave rooms and
    /// reconnect with `?since=` for --duration; reports errors by kind, memory over time and
    /// exact completeness.
    #[arg(long, conflicts_with_all = ["idle_sockets", "sweep"])]
    pub soak: bool,

    /// How long a soak runs: e.g. `90s`, `10m`, `1h` (a bare number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = soak::parse_duration, default_value = "10m")]
    pub duration: Duration,

    /// Users of a soak; each starts in a random half of the --rooms.
    #[arg(long, default_value_t = 20)]
    pub users: usize,

    /// Seed of a soak's random choices (default: random; the report gives it).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Weights of a soak's actions: sends over REST and WebSocket, joins, leaves, reconnects,
    /// and reads (marking the newest message seen in a room read, over REST or the socket).
    #[arg(
        long,
        default_value = "rest=36,ws=36,join=6,leave=6,reconnect=8,read=8"
    )]
    pub mix: Mix,

    /// Seconds between two memory samples of a soak.
    #[arg(long, default_value_t = 5.0)]
    pub sample_secs: f64,

    /// A soak fails if a node's mean memory (RSS) over the last third of the run exceeds the
    /// middle third's by more than this many percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    pub max_rss_growth: f64,

    /// Start a node of this binary on a free loopback port with a temporary data directory
    /// (and this process's raised open-files limit), drive it and stop it.
    #[arg(long, conflicts_with_all = ["targets", "server_pids"])]
    pub spawn: bool,

    /// With --spawn: how many nodes to start. They share the data directory (so one SQLite
    /// file) unless --node-arg names another database; give them a broker transport with
    /// --node-arg, or only the node that took the socket sees a message.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "spawn",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub nodes: u16,

    /// With --spawn: one more argument for each node's `serve`, e.g.
    /// `--node-arg=--transport=amqp091` (repeat for several).
    #[arg(
        long = "node-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "spawn"
    )]
    pub node_args: Vec<String>,

    /// With --spawn: serve each node's metrics on a free loopback port
    /// (`--metrics-listen 127.0.0.1:0`), to measure what recording them costs.
    #[arg(long, requires = "spawn")]
    pub spawn_metrics: bool,
}

/// Runs the bench the arguments ask for and prints its report.
pub async fn main(args: BenchArgs) -> anyhow::Result<()> {
    // Before any socket is opened and before a spawned node inherits the limit.
    let fd_limit = procstat::raise_open_files_limit()?;
    let spawned = if args.spawn {
        let mut node_args = args.node_args.clone();
        if args.spawn_metrics {
            node_args.push("--metrics-listen=127.0.0.1:0".to_string());
        }
        // One room of --presence holds every user: above the node's default cap of 1,024.
        let cap_given = node_args
            .iter()
            .any(|a| a.starts_with("--max-room-members"));
        if let (Some(users), false) = (args.presence, cap_given) {
            node_args.push(format!("--max-room-members={}", users.max(1024)));
        }
        Some(spawn::SpawnedNodes::start(usize::from(args.nodes), &node_args).await?)
    } else {
        None
    };
    let outcome = drive(&args, spawned.as_ref(), fd_limit).await;
    if let Some(spawned) = spawned {
        spawned.stop().await?;
    }
    outcome
}

/// Resolves the nodes and runs the mode the arguments ask for on them.
async fn drive(
    args: &BenchArgs,
    spawned: Option<&spawn::SpawnedNodes>,
    fd_limit: u64,
) -> anyhow::Result<()> {
    let (targets, server_pids) = nodes(args, spawned).await?;
    let progress = !args.json;

    if let Some(sockets) = args.idle_sockets {
        let options = idle::IdleOptions {
            targets,
            sockets,
            server_pids,
            progress,
        };
        return idle(args.json, &options).await;
    }

    if let Some(users) = args.auth_flood {
        let report = auth_flood::run(&auth_flood::AuthFloodOptions {
            targets,
            users,
            clients: args.clients,
            server_pids,
        })
        .await?;
        return emit(args.json, auth_flood::table(&report), &report);
    }

    if let Some(rooms) = args.chat_list {
        let report = chat_list::run(&chat_list::ChatListOptions {
            targets,
            rooms,
            page: args.page_limit,
            passes: args.passes as usize,
            server_pids,
            progress,
        })
        .await?;
        return emit(args.json, chat_list::table(&report), &report);
    }

    if let Some(users) = args.presence {
        fits_fd_limit(users as u64, fd_limit)?;
        return presence(args, targets, users).await;
    }

    if args.soak {
        return soak(args, targets, server_pids, fd_limit).await;
    }

    let options = load_options(args, targets, server_pids, fd_limit)?;
    if args.sweep {
        return sweep(args, options).await;
    }
    load(args.json, &options).await
}

/// The nodes to drive and their pids: the spawned ones, or those the arguments name.
async fn nodes(
    args: &BenchArgs,
    spawned: Option<&spawn::SpawnedNodes>,
) -> anyhow::Result<(Vec<Target>, Vec<i32>)> {
    let (urls, server_pids): (Vec<String>, Vec<i32>) = match spawned {
        Some(spawned) => spawned
            .nodes
            .iter()
            .map(|node| (node.url.clone(), node.pid))
            .unzip(),
        None => (args.targets.clone(), args.server_pids.clone()),
    };
    let mut targets = Vec::with_capacity(urls.len());
    for url in &urls {
        targets.push(Target::resolve(url, args.allow_remote).await?);
    }
    // A wrong pid should fail now, not after minutes of setup.
    procstat::sample_all(&server_pids)?;
    Ok((targets, server_pids))
}

async fn idle(json_only: bool, options: &idle::IdleOptions) -> anyhow::Result<()> {
    let report = idle::run(options).await?;
    emit(json_only, report::idle_table(&report), &report)?;
    if report.socket_closes > 0 {
        bail!("{} sockets were closed by the nodes", report.socket_closes);
    }
    Ok(())
}

/// The options of a load run or a sweep, once the sockets they need fit the open-files limit.
fn load_options(
    args: &BenchArgs,
    targets: Vec<Target>,
    server_pids: Vec<i32>,
    fd_limit: u64,
) -> anyhow::Result<LoadOptions> {
    let load = LoadOptions {
        targets,
        rooms: args.rooms,
        receivers: args.receivers,
        senders: args.senders,
        messages: args.messages,
        send_over: args.send_over,
        rate: args.rate,
        message_bytes: args.message_bytes,
        drain: seconds(args.drain_secs, "--drain-secs")?,
        server_pids,
        progress: !args.json,
        mark_read_every: args.mark_read,
    };
    fits_fd_limit(sockets_needed(&load), fd_limit)?;
    Ok(load)
}

async fn sweep(args: &BenchArgs, load: LoadOptions) -> anyhow::Result<()> {
    let report = sweep::run(&sweep::SweepOptions {
        load,
        percents: args.sweep_percent.clone(),
        step_secs: args.step_secs,
    })
    .await?;
    let svg = args
        .svg
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench-sweep.svg"));
    sweep::plot(&report, &svg)?;
    let table = format!("{}chart: {}\n", report::sweep_table(&report), svg.display());
    emit(args.json, table, &report)?;
    if !report.complete {
        bail!("a run of the sweep did not deliver every message exactly once");
    }
    Ok(())
}

async fn load(json_only: bool, options: &LoadOptions) -> anyhow::Result<()> {
    let report = load::run(options).await?;
    emit(json_only, report::load_table(&report), &report)?;
    if !report.complete || report.errors > 0 {
        bail!(
            "incomplete or failed run: {} of {} deliveries, {} missing, {} duplicated, {} errors",
            report.completeness.delivered,
            report.completeness.expected,
            report.completeness.missing,
            report.completeness.duplicates,
            report.errors
        );
    }
    Ok(())
}

async fn presence(args: &BenchArgs, targets: Vec<Target>, users: usize) -> anyhow::Result<()> {
    let report = presence::run(&presence::PresenceOptions {
        targets,
        users,
        churn: args.churn,
        rate: args.rate.unwrap_or(20.0),
        phase: seconds(args.phase_secs, "--phase-secs")?,
        wide_rooms: args.presence_rooms,
        progress: !args.json,
    })
    .await?;
    emit(args.json, presence::table(&report), &report)?;
    if !report.wide.exact {
        bail!("the user in many rooms was not one presence frame per watching socket, or a flap announced");
    }
    Ok(())
}

async fn soak(
    args: &BenchArgs,
    targets: Vec<Target>,
    server_pids: Vec<i32>,
    fd_limit: u64,
) -> anyhow::Result<()> {
    let sample_every = seconds(args.sample_secs, "--sample-secs")?;
    let options = SoakOptions {
        users: args.users,
        rooms: args.rooms,
        rate: args.rate.unwrap_or(100.0),
        mix: args.mix.clone(),
        seed: args.seed.unwrap_or_else(rand::random),
        message_bytes: args.message_bytes,
        drain: seconds(args.drain_secs, "--drain-secs")?,
        sample_every,
        max_rss_growth: args.max_rss_growth,
        server_pids,
        progress: !args.json,
        ..SoakOptions::new(targets, args.duration)
    };
    fits_fd_limit(options.sockets_needed(), fd_limit)?;
    let report = soak::run(&options).await?;
    let mut table = report::soak_table(&report);
    if let Some(svg) = &args.svg {
        memory::plot(&report.memory.samples, &options.server_pids, svg)?;
        table.push_str(&format!("{:<22}{}\n", "memory chart", svg.display()));
    }
    emit(args.json, table, &report)?;
    if !report.complete || report.errors > 0 {
        bail!(
            "soak incomplete or failed: {} of {} owed deliveries, {} missing, {} duplicated, {} errors",
            report.completeness.delivered,
            report.completeness.expected,
            report.completeness.missing,
            report.completeness.duplicates,
            report.errors
        );
    }
    if report.memory.flat == Some(false) {
        bail!(
            "a node's memory grew by more than {} % from the middle to the last third of the soak",
            args.max_rss_growth
        );
    }
    Ok(())
}

/// `secs` as a duration; `flag` names it when it is not one (negative, NaN, too large).
fn seconds(secs: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("{flag} must be a number of seconds"))
}

/// Fails when `sockets` and a margin of 64 exceed this process's open-files limit.
fn fits_fd_limit(sockets: u64, fd_limit: u64) -> anyhow::Result<()> {
    if sockets + 64 > fd_limit {
        bail!(
            "{sockets} sockets need more file descriptors than this process may open ({fd_limit})"
        );
    }
    Ok(())
}

fn sockets_needed(load: &LoadOptions) -> u64 {
    (load.rooms * load.receivers + load.rooms.max(load.senders)) as u64
}

/// The table on stdout (unless `json_only`), then the report as one JSON line.
fn emit(json_only: bool, table: String, report: &impl Serialize) -> anyhow::Result<()> {
    if !json_only {
        print!("{table}");
    }
    println!("{}", serde_json::to_string(report)?);
    Ok(())
}
