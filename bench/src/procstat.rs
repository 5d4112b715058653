//! A process's CPU time and memory from `/proc`, and this process's file-descriptor limit.

use anyhow::{anyhow, Context};
use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// User plus system CPU time.
    pub cpu_secs: f64,
    /// Resident set now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set since the process started (VmHWM).
    pub peak_rss_kib: u64,
}

impl Sample {
    pub fn read(pid: i32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("cannot read /proc/{pid}/stat (is pid {pid} running?)"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        Self::parse(&stat, &status, clock_ticks_per_sec())
            .with_context(|| format!("unexpected /proc/{pid} format"))
    }

    pub fn own() -> anyhow::Result<Self> {
        Self::read(std::process::id() as i32)
    }

    fn parse(stat: &str, status: &str, ticks_per_sec: f64) -> anyhow::Result<Self> {
        // The command name (field 2) may hold spaces and parentheses; fields resume after the
        // last ')'. utime and stime are fields 14 and 15, i.e. 12 and 13 after the name.
        let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow!("no ')' in stat"))? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<f64> {
            Ok(fields
                .get(i)
                .ok_or_else(|| anyhow!("stat has too few fields"))?
                .parse::<u64>()? as f64)
        };
        let cpu_secs = (ticks(11)? + ticks(12)?) / ticks_per_sec;
        let kib = |key: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(key))
                .ok_or_else(|| anyhow!("no {key} in status"))?;
            Ok(line[key.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()?)
        };
        Ok(Self {
            cpu_secs,
            rss_kib: kib("VmRSS:")?,
            peak_rss_kib: kib("VmHWM:")?,
        })
    }
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// A process's figures over a run, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    pub pid: i32,
    /// CPU seconds used between the two samples.
    pub cpu_secs: f64,
    /// `cpu_secs` over the wall time between the samples (1.0 = one core busy).
    pub cpu_cores: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub peak_rss_kib: u64,
    /// `peak_rss_kib` covers the run only (the peak was reset at its start); otherwise it
    /// covers the process's whole life.
    pub peak_is_run_only: bool,
}

impl ProcessReport {
    pub fn between(
        pid: i32,
        before: &Sample,
        after: &Sample,
        wall_secs: f64,
        peak_is_run_only: bool,
    ) -> Self {
        let cpu_secs = after.cpu_secs - before.cpu_secs;
        Self {
            pid,
            cpu_secs,
            cpu_cores: if wall_secs > 0.0 {
                cpu_secs / wall_secs
            } else {
                0.0
            },
            rss_before_kib: before.rss_kib,
            rss_after_kib: after.rss_kib,
            peak_rss_kib: after.peak_rss_kib,
            peak_is_run_only,
        }
    }
}

/// Resets a process's peak resident set (VmHWM) to its current one, so that a later peak
/// belongs to what happened since (setup's password hashing can dwarf a run); false when
/// the kernel does not allow it.
pub fn reset_peak(pid: i32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Samples of several processes taken together.
pub fn sample_all(pids: &[i32]) -> anyhow::Result<Vec<Sample>> {
    pids.iter().map(|&pid| Sample::read(pid)).collect()
}

/// CPU and peak memory of the nodes and of the bench itself over one run: `start` right
/// before it, `end` right after.
pub struct RunUsage {
    servers: Vec<(i32, Sample, bool)>,
    own: (i32, Sample, bool),
}

impl RunUsage {
    pub fn start(server_pids: &[i32]) -> anyhow::Result<Self> {
        let peaks_reset: Vec<bool> = server_pids.iter().map(|&pid| reset_peak(pid)).collect();
        let own_pid = std::process::id() as i32;
        let own_peak_reset = reset_peak(own_pid);
        let servers = server_pids
            .iter()
            .zip(sample_all(server_pids)?)
            .zip(peaks_reset)
            .map(|((&pid, sample), reset)| (pid, sample, reset))
            .collect();
        Ok(Self {
            servers,
            own: (own_pid, Sample::own()?, own_peak_reset),
        })
    }

    /// The servers' reports, in the order of their pids, and the bench's own.
    pub fn end(&self, run_secs: f64) -> anyhow::Result<(Vec<ProcessReport>, ProcessReport)> {
        let servers = self
            .servers
            .iter()
            .map(|(pid, before, reset)| {
                let after = Sample::read(*pid)?;
                Ok(ProcessReport::between(
                    *pid, before, &after, run_secs, *reset,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let (pid, before, reset) = &self.own;
        let own = ProcessReport::between(*pid, before, &Sample::own()?, run_secs, *reset);
        Ok((servers, own))
    }
}

/// A process's open-files limit (soft), from `/proc/<pid>/limits`.
pub fn open_files_limit(pid: i32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises this process's soft open-files limit to its hard limit; returns the new soft limit.
/// Children started afterwards inherit it.
pub fn raise_open_files_limit() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the call to fill and read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
            }
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_are_parsed_even_with_odd_command_names() {
        let stat = "4242 (chat node) (x)) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 50 0 0 20 0 9 0 100 200000000 3000 18446744073709551615";
        let status = "Name:\tchatnode\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t9\n";
        let sample = Sample::parse(stat, status, 100.0).unwrap();
        assert_eq!(
            sample,
            Sample {
                cpu_secs: 3.0,
                rss_kib: 10_240,
                peak_rss_kib: 20_480
            }
        );
        let report = ProcessReport::between(
            4242,
            &Sample {
                cpu_secs: 1.0,
                rss_kib: 1,
                peak_rss_kib: 1,
            },
            &sample,
            4.0,
            true,
        );
        assert_eq!((report.cpu_secs, report.cpu_cores), (2.0, 0.5));
        assert!(Sample::parse("1 (x) S", status, 100.0).is_err());
    }

    #[test]
    fn this_process_can_be_read() {
        let own = Sample::own().unwrap();
        assert!(own.rss_kib > 0 && own.peak_rss_kib >= own.rss_kib);
        let pid = std::process::id() as i32;
        assert!(open_files_limit(pid).unwrap() > 0);
        if reset_peak(pid) {
            let after = Sample::own().unwrap();
            assert!(after.peak_rss_kib <= own.peak_rss_kib.max(after.rss_kib));
        }
        let raised = raise_open_files_limit().unwrap();
        assert_eq!(open_files_limit(pid), Some(raised));
    }
}
