//! What a soak is asked to do: its options and the duration syntax of `--duration`.

use std::time::Duration;

use anyhow::bail;

use super::Mix;
use crate::api::Target;
use crate::load::is_positive;

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

    pub(super) fn check(&self) -> anyhow::Result<()> {
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
}
