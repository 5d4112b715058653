//! Latency against offered load: a run as fast as possible finds the node's maximum, then
//! fixed-rate runs at fractions of it, drawn as an SVG.

use std::path::Path;

use anyhow::{anyhow, bail};
use plotters::prelude::*;
use serde::Serialize;

use super::chart;
use super::load::{is_positive, Fixture, LoadOptions, LoadReport};

#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub load: LoadOptions,
    /// Offered rates as percentages of the measured maximum.
    pub percents: Vec<f64>,
    /// How long each fixed-rate step sends for.
    pub step_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepStep {
    pub percent: f64,
    pub report: LoadReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub mode: &'static str,
    /// End-to-end messages per second of the run as fast as possible.
    pub max_rate: f64,
    pub probe: LoadReport,
    pub steps: Vec<SweepStep>,
    /// Every run delivered every accepted message exactly once.
    pub complete: bool,
}

pub async fn run(options: &SweepOptions) -> anyhow::Result<SweepReport> {
    if options.percents.is_empty() || options.percents.iter().any(|&p| !is_positive(p)) {
        bail!("--sweep-percent needs positive percentages");
    }
    if !is_positive(options.step_secs) {
        bail!("--step-secs must be positive");
    }
    let fixture = Fixture::setup(&options.load).await?;
    let mut probe_options = options.load.clone();
    probe_options.rate = None;
    let probe = fixture.run(&probe_options).await?;
    let max_rate = probe.messages_per_sec;
    if !is_positive(max_rate) {
        bail!("the run as fast as possible accepted no message; nothing to sweep");
    }
    let mut steps = Vec::new();
    for &percent in &options.percents {
        let rate = max_rate * percent / 100.0;
        let mut step = options.load.clone();
        step.rate = Some(rate);
        // At least one message per room, so every receiver has something to wait for.
        step.messages = ((rate * options.step_secs).ceil() as u64).max(step.rooms as u64);
        let report = fixture.run(&step).await?;
        steps.push(SweepStep { percent, report });
    }
    let complete = probe.complete && steps.iter().all(|s| s.report.complete);
    Ok(SweepReport {
        mode: "sweep",
        max_rate,
        probe,
        steps,
        complete,
    })
}

/// Draws p50 and p99 latency against offered load (log scale: p99 grows by orders of
/// magnitude near saturation).
pub fn plot(report: &SweepReport, path: &Path) -> anyhow::Result<()> {
    let points = latency_points(&report.steps);
    let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max) * 1.05;
    let y_min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) / 2.0;
    let y_max = points.iter().map(|p| p.2).fold(0.0, f64::max) * 2.0;
    let axes = (0.0..x_max, (y_min..y_max).log_scale());
    let legend = SeriesLabelPosition::UpperLeft;
    chart::draw(path, &caption(report)?, axes, legend, |chart| {
        chart
            .configure_mesh()
            .x_desc(format!(
                "offered load, messages/s (max measured: {:.0}/s)",
                report.max_rate
            ))
            .y_desc("latency, ms (log)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            // A log axis's minor lines crowd into grey bands; the labelled lines are enough.
            .light_line_style(TRANSPARENT)
            .draw()?;
        let p50 = points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>();
        let p99 = points.iter().map(|p| (p.0, p.2)).collect::<Vec<_>>();
        for (label, color, series) in [("p50", BLUE, p50), ("p99", RED, p99)] {
            chart
                .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(
                series
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )?;
        }
        Ok(())
    })
}

/// Each step's offered load, p50 and p99 latency in ms.
fn latency_points(steps: &[SweepStep]) -> Vec<(f64, f64, f64)> {
    // A log axis cannot show 0: clamp to the histogram's resolution (1 µs).
    let floor = |ms: f64| ms.max(0.001);
    steps
        .iter()
        .map(|s| {
            let offered = s.report.offered_rate.unwrap_or(s.report.accepted_per_sec);
            (
                offered,
                floor(s.report.latency_ms.p50),
                floor(s.report.latency_ms.p99),
            )
        })
        .collect()
}

/// What the runs were: how they sent, to how many rooms and receivers, how big.
fn caption(report: &SweepReport) -> anyhow::Result<String> {
    let first = &report
        .steps
        .first()
        .ok_or_else(|| anyhow!("a sweep without steps has nothing to draw"))?
        .report;
    Ok(format!(
        "chatnode: send-to-socket latency vs offered load ({}, {} rooms x {} receivers, {} B)",
        first.send_over.label(),
        first.rooms,
        first.receivers_per_room,
        first.message_bytes
    ))
}
