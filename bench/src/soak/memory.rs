//! Memory over a soak: samples of every node and this process, and their trends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::time::{interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::shared::Soak;
use super::SoakOptions;
use crate::memory::{MemorySample, RssTrend};
use crate::procstat::Sample;

/// Samples every node and this process until `stop`, then once more.
pub(super) async fn sample_memory(
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
    pub(super) fn of(samples: Vec<MemorySample>, options: &SoakOptions) -> Self {
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
