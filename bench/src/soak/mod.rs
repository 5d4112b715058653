//! `--soak`: a bounded set of users churns for a long time: each sends over REST and over its
//! sockets, joins and leaves rooms, drops and reopens sockets with `?since=`, and marks rooms
//! read (over REST or its socket), at an offered rate. The report counts errors by kind,
//! samples memory over time, counts receipt frames and accounts every delivery exactly (see
//! `soak_ledger`).

mod actions;
mod conn;
mod frames;
mod memory;
mod mix;
mod options;
mod report;
mod setup;
mod shared;
mod user;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use memory::sample_memory;
use report::Measured;
use setup::setup;
use shared::Soak;
use user::VirtualUser;

use crate::api::Api;
use crate::procstat;
use crate::progress::Progress;

pub use memory::{MemoryReport, ServerMemory};
pub use mix::{Action, Mix};
pub use options::{parse_duration, SoakOptions};
pub use report::{ActionCounts, SoakReport};

/// How often a waiting leaver or the final drain looks at the feeds.
const POLL: Duration = Duration::from_millis(10);

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
    let bar = soak_progress(options, &soak, started);
    let mut virtual_users = churn(options, &soak, virtual_users).await?;
    let run_secs = started.elapsed().as_secs_f64();
    sampling.cancel();
    let samples = sampler.await.context("the memory sampler panicked")?;
    let (servers, bench) = usage.end(run_secs)?;
    bar.finish().await;

    let drain_secs = wait_for_stragglers(options, &soak).await;
    for vu in &mut virtual_users {
        vu.close_all().await;
    }

    let measured = Measured {
        setup_secs,
        run_secs,
        drain_secs,
        samples,
        servers,
        bench,
    };
    Ok(SoakReport::of(options, &soak, measured))
}

/// Seconds into the soak, with its messages, deliveries and errors so far.
fn soak_progress(options: &SoakOptions, soak: &Arc<Soak>, started: Instant) -> Progress {
    Progress::start(
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
    )
}

/// Lets every user act for the soak's duration, then stops them; returns them once each has
/// finished its last action.
async fn churn(
    options: &SoakOptions,
    soak: &Soak,
    virtual_users: Vec<VirtualUser>,
) -> anyhow::Result<Vec<VirtualUser>> {
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
    Ok(virtual_users)
}

/// Stragglers: until every member's socket has its room's last acknowledged message, or the
/// drain is over. Returns how long it waited, in seconds.
async fn wait_for_stragglers(options: &SoakOptions, soak: &Soak) -> f64 {
    let drain_started = Instant::now();
    while drain_started.elapsed() < options.drain
        && (0..options.users).any(|u| soak.ledger.behind(u) > 0)
    {
        tokio::time::sleep(POLL).await;
    }
    drain_started.elapsed().as_secs_f64()
}
