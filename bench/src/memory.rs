//! Resident memory over a long run: the series, whether it stayed flat, and its chart.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::chart;

/// One reading of every watched process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemorySample {
    /// Seconds since the soak started.
    pub secs: f64,
    /// Per `--server-pid`, in order (VmRSS).
    pub servers_rss_kib: Vec<u64>,
    /// This process.
    pub bench_rss_kib: u64,
    /// Messages acknowledged so far.
    pub messages: u64,
}

/// One process's resident memory over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RssTrend {
    pub start_kib: u64,
    /// The sample nearest the middle of the run.
    pub middle_kib: u64,
    pub end_kib: u64,
    pub max_kib: u64,
    pub middle_third_mean_kib: f64,
    pub last_third_mean_kib: f64,
    /// Growth of the last third's mean over the middle third's, in percent. The first third
    /// is left out: caches, pools and allocator arenas fill while the run warms up.
    pub growth_percent: f64,
}

/// Samples a trend needs: at least two in each third.
pub const MIN_SAMPLES: usize = 6;

impl RssTrend {
    /// `None` with fewer than [`MIN_SAMPLES`] readings.
    pub fn of(series: &[u64]) -> Option<Self> {
        if series.len() < MIN_SAMPLES {
            return None;
        }
        let third = series.len() / 3;
        let mean = |part: &[u64]| part.iter().sum::<u64>() as f64 / part.len() as f64;
        let middle = mean(&series[third..2 * third]);
        let last = mean(&series[series.len() - third..]);
        Some(Self {
            start_kib: series[0],
            middle_kib: series[series.len() / 2],
            end_kib: series[series.len() - 1],
            max_kib: series.iter().copied().max().unwrap_or(0),
            middle_third_mean_kib: middle,
            last_third_mean_kib: last,
            growth_percent: (last - middle) / middle * 100.0,
        })
    }

    pub fn is_flat(&self, max_growth_percent: f64) -> bool {
        self.growth_percent <= max_growth_percent
    }
}

/// Draws every process's resident memory (MiB) against time.
pub fn plot(samples: &[MemorySample], pids: &[i32], path: &Path) -> anyhow::Result<()> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = pids
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            let points = samples
                .iter()
                .filter_map(|s| Some((s.secs, mib(*s.servers_rss_kib.get(i)?))))
                .collect();
            (format!("node pid {pid}"), points)
        })
        .collect();
    lines.push((
        "bench (client)".to_string(),
        samples
            .iter()
            .map(|s| (s.secs, mib(s.bench_rss_kib)))
            .collect(),
    ));
    let x_max = samples.iter().map(|s| s.secs).fold(1.0, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;

    let axes = (0.0..x_max, 0.0..y_max);
    let caption = "chatnode soak: resident memory over time";
    chart::draw(
        path,
        caption,
        axes,
        SeriesLabelPosition::LowerRight,
        |chart| {
            chart
                .configure_mesh()
                .x_desc("seconds since the soak started")
                .y_desc("resident memory (VmRSS), MiB")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .draw()?;
            let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
            for (i, (label, points)) in lines.into_iter().enumerate() {
                let color = colors[i % colors.len()];
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_compares_the_last_third_with_the_middle_third() {
        assert_eq!(RssTrend::of(&[1, 2, 3, 4, 5]), None);
        // Warm-up in the first third is not growth.
        let flat = RssTrend::of(&[10, 50, 100, 100, 101, 99, 100, 100, 100]).unwrap();
        assert_eq!(
            (flat.start_kib, flat.middle_kib, flat.end_kib),
            (10, 101, 100)
        );
        assert_eq!(flat.max_kib, 101);
        assert_eq!(flat.middle_third_mean_kib, 100.0);
        assert_eq!(flat.growth_percent, 0.0);
        assert!(flat.is_flat(1.0));
        let leak = RssTrend::of(&[100, 110, 120, 130, 140, 150]).unwrap();
        assert_eq!(leak.middle_third_mean_kib, 125.0);
        assert_eq!(leak.last_third_mean_kib, 145.0);
        assert_eq!(leak.growth_percent, 16.0);
        assert!(!leak.is_flat(10.0) && leak.is_flat(20.0));
    }

    #[test]
    fn the_chart_is_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rss.svg");
        let samples: Vec<MemorySample> = (0..10u32)
            .map(|i| MemorySample {
                secs: f64::from(i),
                servers_rss_kib: vec![20_000 + 10 * u64::from(i)],
                bench_rss_kib: 8_000,
                messages: u64::from(i),
            })
            .collect();
        plot(&samples, &[42], &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("node pid 42"));
    }
}
