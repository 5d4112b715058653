//! `--auth-flood N`: N registrations, then N logins, from `--clients` concurrent clients: the
//! password-hashing throughput of the nodes and their peak memory (over their whole life,
//! start-up included) while it lasts.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chatnode_client::{Client, StatusCode};
use futures_util::future::try_join_all;
use serde::Serialize;
use serde_json::{json, Value};

use super::api::Target;
use super::procstat::{sample_all, ProcessReport};

const PASSWORD: &str = "bench-passphrase-42";
/// A request refused with 503 (hashing queue full) is sent again after this pause.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Most tries of one request, so a node that keeps refusing ends the run.
const MAX_TRIES: u32 = 1_000;

pub struct AuthFloodOptions {
    pub targets: Vec<Target>,
    pub users: usize,
    pub clients: usize,
    pub server_pids: Vec<i32>,
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub requests: usize,
    pub secs: f64,
    pub per_sec: f64,
    /// Answers 503 (queue full) that were retried.
    pub refused: u64,
}

#[derive(Debug, Serialize)]
pub struct AuthFloodReport {
    pub mode: &'static str,
    pub targets: Vec<String>,
    pub clients: usize,
    pub register: Phase,
    pub login: Phase,
    /// Peak RSS over each node's life (VmHWM), start-up included.
    pub servers: Vec<ProcessReport>,
}

pub async fn run(options: &AuthFloodOptions) -> anyhow::Result<AuthFloodReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")?;
    let tag = super::load::tag();
    let before = sample_all(&options.server_pids)?;
    let started = Instant::now();
    let email = |n: usize| format!("flood-{tag}-{n}@example.com");
    let register = phase(
        options,
        &client,
        "/api/v1/auth/register/",
        StatusCode::CREATED,
        |n| {
            json!({"email": email(n), "phone_number": "+14155552671", "password": PASSWORD,
               "first_name": "Bench", "last_name": "Flood"})
        },
    )
    .await?;
    let login = phase(
        options,
        &client,
        "/api/v1/auth/login/",
        StatusCode::OK,
        |n| json!({"email": email(n), "password": PASSWORD}),
    )
    .await?;
    let wall = started.elapsed().as_secs_f64();
    let after = sample_all(&options.server_pids)?;
    let servers = options
        .server_pids
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(&pid, (b, a))| ProcessReport::between(pid, b, a, wall, false))
        .collect();
    Ok(AuthFloodReport {
        mode: "auth-flood",
        targets: options.targets.iter().map(|t| t.url.clone()).collect(),
        clients: options.clients,
        register,
        login,
        servers,
    })
}

/// `users` requests to `path`, spread over the clients and the targets round-robin.
async fn phase(
    options: &AuthFloodOptions,
    client: &reqwest::Client,
    path: &str,
    expected: StatusCode,
    body: impl Fn(usize) -> Value + Sync,
) -> anyhow::Result<Phase> {
    let refused = AtomicU64::new(0);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients = (0..options.clients.max(1)).map(|_| async {
        loop {
            let n = next.fetch_add(1, Ordering::Relaxed) as usize;
            if n >= options.users {
                return anyhow::Ok(());
            }
            let base = format!("http://{}", options.targets[n % options.targets.len()].addr);
            let client = Client::with_http(base, client.clone());
            send(&client, path, &body(n), expected, &refused).await?;
        }
    });
    try_join_all(clients).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Phase {
        requests: options.users,
        secs,
        per_sec: options.users as f64 / secs.max(f64::EPSILON),
        refused: refused.load(Ordering::Relaxed),
    })
}

async fn send(
    client: &Client,
    path: &str,
    body: &Value,
    expected: StatusCode,
    refused: &AtomicU64,
) -> anyhow::Result<()> {
    let url = client.url(path);
    for _ in 0..MAX_TRIES {
        let answer = client.post(path).json(body).send().await?;
        let status = answer.status;
        if status == expected {
            return Ok(());
        }
        if status != StatusCode::SERVICE_UNAVAILABLE {
            let text = answer.text();
            bail!("{url}: {status} {text} (are the node's rate limits on?)");
        }
        refused.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    bail!("{url}: still refused with 503 after {MAX_TRIES} tries")
}

pub fn table(r: &AuthFloodReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chatnode bench: auth flood of {} registrations then {} logins, {} clients, on {}",
        r.register.requests,
        r.login.requests,
        r.clients,
        r.targets.join(", ")
    );
    for (label, p) in [("registrations", &r.register), ("logins", &r.login)] {
        let _ = writeln!(
            out,
            "{label:<22}{:.2} s = {:.1} /s ({} answers 503 retried)",
            p.secs, p.per_sec, p.refused
        );
    }
    for s in &r.servers {
        let _ = writeln!(
            out,
            "{:<22}RSS {:.1} -> {:.1} MiB, peak {:.1} MiB (whole life), CPU {:.1} s",
            format!("node pid {}", s.pid),
            s.rss_before_kib as f64 / 1024.0,
            s.rss_after_kib as f64 / 1024.0,
            s.peak_rss_kib as f64 / 1024.0,
            s.cpu_secs
        );
    }
    out
}
