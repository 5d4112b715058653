//! The human-readable tables; the JSON line is the reports' serde form.

use std::fmt::{Display, Write};

use super::idle::IdleReport;
use super::load::{LoadReport, ReceiptFrames};
use super::memory::RssTrend;
use super::procstat::ProcessReport;
use super::soak::{MemoryReport, SoakReport};
use super::soak_ledger::Audit;
use super::sweep::SweepReport;

/// `label` in the tables' label column (22 wide), then `value`.
fn row(out: &mut String, label: &str, value: impl Display) {
    let _ = writeln!(out, "{label:<22}{value}");
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn rate(rate: Option<f64>) -> String {
    rate.map_or("as fast as possible".to_string(), |r| {
        format!("{r:.1} msg/s")
    })
}

fn peak(kib: u64, run_only: bool) -> String {
    let since = if run_only { "run" } else { "process start" };
    format!("{} (since {since})", mib(kib))
}

fn process_line(out: &mut String, label: &str, p: &ProcessReport) {
    row(
        out,
        label,
        format_args!(
            "cpu {:.2} s ({:.0} % of a core)  rss {} -> {}  peak {}",
            p.cpu_secs,
            p.cpu_cores * 100.0,
            mib(p.rss_before_kib),
            mib(p.rss_after_kib),
            peak(p.peak_rss_kib, p.peak_is_run_only)
        ),
    );
}

/// Every node's CPU and memory over the run, then this process's.
fn process_lines(out: &mut String, servers: &[ProcessReport], bench: &ProcessReport) {
    for server in servers {
        process_line(out, &format!("node pid {}", server.pid), server);
    }
    process_line(out, "bench (this process)", bench);
}

/// Lines in the value column only, continuing the row above (samples, counts by kind).
fn continued(out: &mut String, lines: impl IntoIterator<Item = impl Display>) {
    for line in lines {
        row(out, "", line);
    }
}

/// Receipt frames by event, then what the mode adds (`tail`).
fn receipts_row(out: &mut String, frames: u64, e: &ReceiptFrames, tail: impl Display) {
    row(
        out,
        "receipts",
        format_args!(
            "{frames} frames (positions {}, delivered {}, read {}, other {}); {tail}",
            e.positions, e.delivered, e.read, e.other
        ),
    );
}

pub fn load_table(r: &LoadReport) -> String {
    let mut out = String::new();
    load_headline(&mut out, r);
    row(&mut out, "targets", r.targets.join(", "));
    row(
        &mut out,
        "setup",
        format_args!(
            "users and rooms {:.2} s, sockets {:.2} s",
            r.setup_secs, r.socket_secs
        ),
    );
    load_throughput(&mut out, r);
    load_quality(&mut out, r);
    process_lines(&mut out, &r.servers, &r.bench);
    let verdict = if r.complete && r.errors == 0 {
        "every receiver got every message of its room exactly once"
    } else {
        "INCOMPLETE OR FAILED"
    };
    row(&mut out, "verdict", verdict);
    out
}

fn load_headline(out: &mut String, r: &LoadReport) {
    let sender_sockets = if r.sender_sockets > 0 {
        format!(" on {} sockets", r.sender_sockets)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "chatnode bench: {} messages of {} B over {}, {} rooms x {} receivers ({} sockets), {} senders{sender_sockets}, offered {}",
        r.messages,
        r.message_bytes,
        r.send_over.label(),
        r.rooms,
        r.receivers_per_room,
        r.receiver_sockets,
        r.senders,
        rate(r.offered_rate)
    );
}

/// Sends, deliveries and receipts, with their rates.
fn load_throughput(out: &mut String, r: &LoadReport) {
    let c = &r.completeness;
    row(
        out,
        "sends accepted",
        format_args!(
            "{} of {} sent in {:.2} s = {:.1} /s",
            r.accepted, r.sent, r.send_secs, r.accepted_per_sec
        ),
    );
    row(
        out,
        "deliveries",
        format_args!(
            "{} of {} ({:.2} %) = {:.1} /s",
            c.delivered,
            c.expected,
            c.ratio * 100.0,
            r.deliveries_per_sec
        ),
    );
    row(
        out,
        "end to end",
        format_args!(
            "{:.1} messages/s (first send to last delivery)",
            r.messages_per_sec
        ),
    );
    let every = r.mark_read_every.map_or(String::new(), |n| {
        format!(" (every {n} message{})", if n == 1 { "" } else { "s" })
    });
    receipts_row(
        out,
        r.receipt_frames,
        &r.receipt_frames_by_event,
        format_args!("mark_read sent {}{every}", r.reads_sent),
    );
}

/// Latency, what went missing or wrong, and the errors.
fn load_quality(out: &mut String, r: &LoadReport) {
    let (c, l) = (&r.completeness, &r.latency_ms);
    row(
        out,
        "latency ms",
        format_args!(
            "p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}  ({} samples)",
            l.p50, l.p99, l.p999, l.max, l.mean, l.samples
        ),
    );
    row(
        out,
        "completeness",
        format_args!(
            "missing {}  duplicated {}  unacknowledged {}  foreign {}  out of order {}",
            c.missing, c.duplicates, c.unacknowledged, c.foreign, c.reordered
        ),
    );
    row(
        out,
        "errors",
        format_args!(
            "{} (failed sends {}, sockets closed {}, malformed frames {}, refused frames {})",
            r.errors, r.send_errors, r.socket_closes, c.malformed, r.refused_frames
        ),
    );
    continued(out, &r.error_samples);
}

pub fn sweep_table(r: &SweepReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chatnode bench sweep: max {:.1} msg/s end to end ({} messages as fast as possible)",
        r.max_rate, r.probe.messages
    );
    let _ = writeln!(
        out,
        "{:>8} {:>12} {:>12} {:>12} {:>14} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "percent",
        "offered/s",
        "accepted/s",
        "messages/s",
        "deliveries/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "complete"
    );
    let rows = std::iter::once((None, &r.probe))
        .chain(r.steps.iter().map(|s| (Some(s.percent), &s.report)));
    for (percent, run) in rows {
        let _ = writeln!(
            out,
            "{:>8} {:>12} {:>12.1} {:>12.1} {:>14.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9}",
            percent.map_or("max".to_string(), |p| format!("{p}%")),
            run.offered_rate
                .map_or("-".to_string(), |o| format!("{o:.1}")),
            run.accepted_per_sec,
            run.messages_per_sec,
            run.deliveries_per_sec,
            run.latency_ms.p50,
            run.latency_ms.p99,
            run.latency_ms.p999,
            run.latency_ms.max,
            if run.complete && run.errors == 0 {
                "yes"
            } else {
                "NO"
            }
        );
    }
    out
}

pub fn idle_table(r: &IdleReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chatnode bench: {} idle sockets on {}",
        r.sockets,
        r.targets.join(", ")
    );
    row(
        &mut out,
        "opened in",
        format_args!(
            "{:.2} s = {:.0} /s (nodes count {} sockets; open-files limit {})",
            r.open_secs, r.opens_per_sec, r.sockets_counted, r.fd_limit
        ),
    );
    for s in &r.servers {
        row(
            &mut out,
            &format!("node pid {}", s.pid),
            format_args!(
                "rss {} -> {}  peak {}  open-files limit {}",
                mib(s.rss_before_kib),
                mib(s.rss_after_kib),
                peak(s.peak_rss_kib, s.peak_is_run_only),
                s.fd_limit.map_or("?".to_string(), |l| l.to_string())
            ),
        );
    }
    let per_socket = r
        .rss_per_socket_kib
        .map_or("unknown (pass --server-pid or --spawn)".to_string(), |k| {
            format!("{k:.2} KiB")
        });
    row(&mut out, "node memory / socket", per_socket);
    row(&mut out, "bench rss", mib(r.bench_rss_kib));
    row(&mut out, "sockets closed early", r.socket_closes);
    out
}

fn trend_line(out: &mut String, label: &str, trend: Option<&RssTrend>) {
    match trend {
        Some(t) => row(
            out,
            label,
            format_args!(
                "rss start {}  middle {}  end {}  max {}  growth {:+.2} % (last third vs middle third)",
                mib(t.start_kib),
                mib(t.middle_kib),
                mib(t.end_kib),
                mib(t.max_kib),
                t.growth_percent
            ),
        ),
        None => row(out, label, "too few memory samples for a trend"),
    }
}

pub fn soak_table(r: &SoakReport) -> String {
    let mut out = String::new();
    soak_activity(&mut out, r);
    soak_completeness(&mut out, &r.completeness);
    row(&mut out, "errors", r.errors);
    continued(
        &mut out,
        r.errors_by_kind
            .iter()
            .map(|(kind, count)| format!("{count:>8}  {kind}")),
    );
    continued(&mut out, &r.error_samples);
    soak_memory(&mut out, &r.memory);
    process_lines(&mut out, &r.servers, &r.bench);
    soak_verdict(&mut out, r);
    out
}

/// What the soak was asked to do and what it did: time, actions, messages, receipts.
fn soak_activity(out: &mut String, r: &SoakReport) {
    let a = &r.actions;
    let _ = writeln!(
        out,
        "chatnode bench soak: {:.0} s, {} users in {} rooms, offered {:.1} actions/s ({}), {} B messages, seed {}",
        r.duration_secs, r.users, r.rooms, r.offered_rate, r.mix, r.message_bytes, r.seed
    );
    row(out, "targets", r.targets.join(", "));
    row(
        out,
        "time",
        format_args!(
            "setup {:.2} s, soak {:.2} s, drain {:.2} s",
            r.setup_secs, r.run_secs, r.drain_secs
        ),
    );
    row(
        out,
        "actions",
        format_args!(
            "{:.1} /s: sends {} REST + {} WebSocket, joins {}, leaves {}, reconnects {}, reads {} ({} over WebSocket)",
            r.actions_per_sec, a.rest_sends, a.ws_sends, a.joins, a.leaves, a.reconnects, a.reads, a.reads_over_ws
        ),
    );
    row(
        out,
        "messages",
        format_args!(
            "{} acknowledged = {:.1} /s; {} deliveries",
            r.messages, r.messages_per_sec, r.deliveries
        ),
    );
    receipts_row(
        out,
        r.receipt_frames,
        &r.receipt_frames_by_event,
        format_args!("moved back {}", r.receipts_moved_back),
    );
}

fn soak_completeness(out: &mut String, c: &Audit) {
    row(
        out,
        "completeness",
        format_args!(
            "{} of {} owed deliveries ({:.4} %)",
            c.delivered,
            c.expected,
            c.ratio * 100.0
        ),
    );
    row(
        out,
        "",
        format_args!(
            "missing {}  duplicated {}  out of order {}  unacknowledged {}  foreign {}  malformed {}  not owed {}",
            c.missing, c.duplicates, c.reordered, c.unacknowledged, c.foreign, c.malformed, c.extra
        ),
    );
    continued(
        out,
        c.missing_samples
            .iter()
            .map(|m| format!("user {} room {} never got message {}", m.user, m.room, m.id)),
    );
}

/// The memory samples' trends, per node and for this process.
fn soak_memory(out: &mut String, m: &MemoryReport) {
    row(
        out,
        "memory",
        format_args!("{} samples, every {:.1} s", m.samples.len(), m.sample_secs),
    );
    for s in &m.servers {
        trend_line(out, &format!("node pid {}", s.pid), s.trend.as_ref());
    }
    trend_line(out, "bench (this process)", m.bench.as_ref());
}

fn soak_verdict(out: &mut String, r: &SoakReport) {
    let m = &r.memory;
    let memory = match m.flat {
        Some(true) => format!("memory flat (growth <= {} %)", m.max_growth_percent),
        Some(false) => format!("MEMORY GREW (more than {} %)", m.max_growth_percent),
        None => "memory not judged (needs --server-pid or --spawn, and 6 samples)".to_string(),
    };
    let delivery = if r.complete && r.errors == 0 {
        "every owed delivery arrived exactly once, no errors"
    } else {
        "INCOMPLETE OR FAILED"
    };
    row(out, "verdict", format_args!("{delivery}; {memory}"));
}
