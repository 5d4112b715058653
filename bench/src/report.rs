//! The human-readable tables; the JSON line is the reports' serde form.

use std::fmt::Write;

use super::idle::IdleReport;
use super::load::{LoadReport, SendOver};
use super::memory::RssTrend;
use super::procstat::ProcessReport;
use super::soak::SoakReport;
use super::sweep::SweepReport;

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
    let _ = writeln!(
        out,
        "{label:<22}cpu {:.2} s ({:.0} % of a core)  rss {} -> {}  peak {}",
        p.cpu_secs,
        p.cpu_cores * 100.0,
        mib(p.rss_before_kib),
        mib(p.rss_after_kib),
        peak(p.peak_rss_kib, p.peak_is_run_only)
    );
}

pub fn load_table(r: &LoadReport) -> String {
    let mut out = String::new();
    let c = &r.completeness;
    let over = match r.send_over {
        SendOver::Rest => "REST",
        SendOver::Ws => "WebSocket",
    };
    let _ = writeln!(
        out,
        "chatnode bench: {} messages of {} B over {over}, {} rooms x {} receivers ({} sockets), {} senders{}, offered {}",
        r.messages,
        r.message_bytes,
        r.rooms,
        r.receivers_per_room,
        r.receiver_sockets,
        r.senders,
        if r.sender_sockets > 0 {
            format!(" on {} sockets", r.sender_sockets)
        } else {
            String::new()
        },
        rate(r.offered_rate)
    );
    let _ = writeln!(out, "{:<22}{}", "targets", r.targets.join(", "));
    let _ = writeln!(
        out,
        "{:<22}users and rooms {:.2} s, sockets {:.2} s",
        "setup", r.setup_secs, r.socket_secs
    );
    let _ = writeln!(
        out,
        "{:<22}{} of {} sent in {:.2} s = {:.1} /s",
        "sends accepted", r.accepted, r.sent, r.send_secs, r.accepted_per_sec
    );
    let _ = writeln!(
        out,
        "{:<22}{} of {} ({:.2} %) = {:.1} /s",
        "deliveries",
        c.delivered,
        c.expected,
        c.ratio * 100.0,
        r.deliveries_per_sec
    );
    let _ = writeln!(
        out,
        "{:<22}{:.1} messages/s (first send to last delivery)",
        "end to end", r.messages_per_sec
    );
    let e = &r.receipt_frames_by_event;
    let _ = writeln!(
        out,
        "{:<22}{} frames (positions {}, delivered {}, read {}, other {}); mark_read sent {}{}",
        "receipts",
        r.receipt_frames,
        e.positions,
        e.delivered,
        e.read,
        e.other,
        r.reads_sent,
        r.mark_read_every.map_or(String::new(), |n| format!(
            " (every {n} message{})",
            if n == 1 { "" } else { "s" }
        ))
    );
    let l = &r.latency_ms;
    let _ = writeln!(
        out,
        "{:<22}p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}  ({} samples)",
        "latency ms", l.p50, l.p99, l.p999, l.max, l.mean, l.samples
    );
    let _ = writeln!(
        out,
        "{:<22}missing {}  duplicated {}  unacknowledged {}  foreign {}  out of order {}",
        "completeness", c.missing, c.duplicates, c.unacknowledged, c.foreign, c.reordered
    );
    let _ = writeln!(
        out,
        "{:<22}{} (failed sends {}, sockets closed {}, malformed frames {}, refused frames {})",
        "errors", r.errors, r.send_errors, r.socket_closes, c.malformed, r.refused_frames
    );
    for sample in &r.error_samples {
        let _ = writeln!(out, "{:<22}{sample}", "");
    }
    for server in &r.servers {
        process_line(&mut out, &format!("node pid {}", server.pid), server);
    }
    process_line(&mut out, "bench (this process)", &r.bench);
    let _ = writeln!(
        out,
        "{:<22}{}",
        "verdict",
        if r.complete && r.errors == 0 {
            "every receiver got every message of its room exactly once"
        } else {
            "INCOMPLETE OR FAILED"
        }
    );
    out
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
    let _ = writeln!(
        out,
        "{:<22}{:.2} s = {:.0} /s (nodes count {} sockets; open-files limit {})",
        "opened in", r.open_secs, r.opens_per_sec, r.sockets_counted, r.fd_limit
    );
    for s in &r.servers {
        let _ = writeln!(
            out,
            "{:<22}rss {} -> {}  peak {}  open-files limit {}",
            format!("node pid {}", s.pid),
            mib(s.rss_before_kib),
            mib(s.rss_after_kib),
            peak(s.peak_rss_kib, s.peak_is_run_only),
            s.fd_limit.map_or("?".to_string(), |l| l.to_string())
        );
    }
    let _ = writeln!(
        out,
        "{:<22}{}",
        "node memory / socket",
        r.rss_per_socket_kib.map_or(
            "unknown (pass --server-pid or --spawn)".to_string(),
            |k| format!("{k:.2} KiB")
        )
    );
    let _ = writeln!(out, "{:<22}{}", "bench rss", mib(r.bench_rss_kib));
    let _ = writeln!(out, "{:<22}{}", "sockets closed early", r.socket_closes);
    out
}

fn trend_line(out: &mut String, label: &str, trend: Option<&RssTrend>) {
    let _ = match trend {
        Some(t) => writeln!(
            out,
            "{label:<22}rss start {}  middle {}  end {}  max {}  growth {:+.2} % (last third vs middle third)",
            mib(t.start_kib),
            mib(t.middle_kib),
            mib(t.end_kib),
            mib(t.max_kib),
            t.growth_percent
        ),
        None => writeln!(out, "{label:<22}too few memory samples for a trend"),
    };
}

pub fn soak_table(r: &SoakReport) -> String {
    let mut out = String::new();
    let c = &r.completeness;
    let a = &r.actions;
    let _ = writeln!(
        out,
        "chatnode bench soak: {:.0} s, {} users in {} rooms, offered {:.1} actions/s ({}), {} B messages, seed {}",
        r.duration_secs, r.users, r.rooms, r.offered_rate, r.mix, r.message_bytes, r.seed
    );
    let _ = writeln!(out, "{:<22}{}", "targets", r.targets.join(", "));
    let _ = writeln!(
        out,
        "{:<22}setup {:.2} s, soak {:.2} s, drain {:.2} s",
        "time", r.setup_secs, r.run_secs, r.drain_secs
    );
    let _ = writeln!(
        out,
        "{:<22}{:.1} /s: sends {} REST + {} WebSocket, joins {}, leaves {}, reconnects {}, reads {} ({} over WebSocket)",
        "actions",
        r.actions_per_sec,
        a.rest_sends,
        a.ws_sends,
        a.joins,
        a.leaves,
        a.reconnects,
        a.reads,
        a.reads_over_ws
    );
    let _ = writeln!(
        out,
        "{:<22}{} acknowledged = {:.1} /s; {} deliveries",
        "messages", r.messages, r.messages_per_sec, r.deliveries
    );
    let e = &r.receipt_frames_by_event;
    let _ = writeln!(
        out,
        "{:<22}{} frames (positions {}, delivered {}, read {}, other {}); moved back {}",
        "receipts",
        r.receipt_frames,
        e.positions,
        e.delivered,
        e.read,
        e.other,
        r.receipts_moved_back
    );
    let _ = writeln!(
        out,
        "{:<22}{} of {} owed deliveries ({:.4} %)",
        "completeness",
        c.delivered,
        c.expected,
        c.ratio * 100.0
    );
    let _ = writeln!(
        out,
        "{:<22}missing {}  duplicated {}  out of order {}  unacknowledged {}  foreign {}  malformed {}  not owed {}",
        "", c.missing, c.duplicates, c.reordered, c.unacknowledged, c.foreign, c.malformed, c.extra
    );
    for m in &c.missing_samples {
        let _ = writeln!(
            out,
            "{:<22}user {} room {} never got message {}",
            "", m.user, m.room, m.id
        );
    }
    let _ = writeln!(out, "{:<22}{}", "errors", r.errors);
    for (kind, count) in &r.errors_by_kind {
        let _ = writeln!(out, "{:<22}{count:>8}  {kind}", "");
    }
    for sample in &r.error_samples {
        let _ = writeln!(out, "{:<22}{sample}", "");
    }
    let m = &r.memory;
    let _ = writeln!(
        out,
        "{:<22}{} samples, every {:.1} s",
        "memory",
        m.samples.len(),
        m.sample_secs
    );
    for s in &m.servers {
        trend_line(&mut out, &format!("node pid {}", s.pid), s.trend.as_ref());
    }
    trend_line(&mut out, "bench (this process)", m.bench.as_ref());
    for server in &r.servers {
        process_line(&mut out, &format!("node pid {}", server.pid), server);
    }
    process_line(&mut out, "bench (this process)", &r.bench);
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
    let _ = writeln!(out, "{:<22}{delivery}; {memory}", "verdict");
    out
}
