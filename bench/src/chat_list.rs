//! `--chat-list N`: one user in N rooms, each holding a message from another member, then
//! the user's whole chat list walked page by page (`?limit=`, following `next`) several
//! times. Reports the latency and size of a page and the nodes' memory across the walks:
//! a page is one query whatever N, so neither should grow with the number of rooms.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{anyhow, bail};
use chatnode_client::StatusCode;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;

use super::api::{Api, Target, User};
use super::histogram::{Histogram, LatencySummary};
use super::load::{create_rooms, register_users, tag, OPEN_CONCURRENCY};
use super::procstat::{ProcessReport, RunUsage};

pub struct ChatListOptions {
    pub targets: Vec<Target>,
    pub rooms: usize,
    /// Rooms per page (`?limit=`).
    pub page: u32,
    /// Walks of the whole list.
    pub passes: usize,
    pub server_pids: Vec<i32>,
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct ChatListReport {
    pub mode: &'static str,
    pub targets: Vec<String>,
    pub rooms: usize,
    pub page_limit: u32,
    pub passes: usize,
    pub pages: u64,
    pub setup_secs: f64,
    pub walk_secs: f64,
    /// Milliseconds from request to the last byte of a page.
    pub page_latency: LatencySummary,
    pub page_bytes_max: usize,
    /// The first page as a client sending no `limit` gets it.
    pub default_page_bytes: usize,
    /// Each node over the walks only (peak reset at their start where the kernel allows).
    pub servers: Vec<ProcessReport>,
}

pub async fn run(options: &ChatListOptions) -> anyhow::Result<ChatListReport> {
    if options.rooms == 0 || options.passes == 0 {
        bail!("--chat-list needs at least one room and one pass");
    }
    let api = Api::new()?;
    let targets = &options.targets;
    let setup = Instant::now();
    let tag = tag();
    let users = register_users(&api, targets, &tag, "lister", 2, options.progress).await?;
    let (owner, peer) = (&users[0], &users[1]);
    let rooms = create_rooms(&api, targets, &tag, owner, &[peer.id], options.rooms).await?;
    // One message from the other member per room: every entry has a last message and one
    // unread, so a page carries what a real chat list does.
    stream::iter(rooms.iter().enumerate())
        .map(|(i, &room)| {
            let api = &api;
            async move {
                let target = &targets[i % targets.len()];
                api.send(target, peer, room, "news")
                    .await
                    .map_err(|e| anyhow!("send into room {room}: {e}"))
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let setup_secs = setup.elapsed().as_secs_f64();

    let expected: HashSet<i64> = rooms.into_iter().collect();
    let usage = RunUsage::start(&options.server_pids)?;
    let walk = Instant::now();
    let latency = Histogram::default();
    let mut page_bytes_max = 0;
    let mut pages = 0;
    for pass in 0..options.passes {
        let target = &targets[pass % targets.len()];
        let walked = walk_list(&api, target, owner, options.page, &expected, &latency).await?;
        pages += walked.pages;
        page_bytes_max = page_bytes_max.max(walked.bytes_max);
    }
    let walk_secs = walk.elapsed().as_secs_f64();
    let (servers, _) = usage.end(walk_secs)?;
    let (_, default_page_bytes, _) = page(&api, &targets[0], owner, "").await?;
    Ok(ChatListReport {
        mode: "chat-list",
        targets: targets.iter().map(|t| t.url.clone()).collect(),
        rooms: expected.len(),
        page_limit: options.page,
        passes: options.passes,
        pages,
        setup_secs,
        walk_secs,
        page_latency: latency.summary_ms(),
        page_bytes_max,
        default_page_bytes,
        servers,
    })
}

struct Walked {
    pages: u64,
    bytes_max: usize,
}

/// One walk of the whole list; fails unless it lists every room exactly once, each with the
/// one unread message.
async fn walk_list(
    api: &Api,
    target: &Target,
    user: &User,
    limit: u32,
    expected: &HashSet<i64>,
    latency: &Histogram,
) -> anyhow::Result<Walked> {
    let mut seen = HashSet::with_capacity(expected.len());
    let mut walked = Walked {
        pages: 0,
        bytes_max: 0,
    };
    let mut cursor: Option<String> = None;
    // Bounded: a list that never ends would repeat rooms, which fails below first.
    for _ in 0..=expected.len() {
        let query = match &cursor {
            Some(cursor) => format!("?limit={limit}&cursor={}", encode(cursor)),
            None => format!("?limit={limit}"),
        };
        let started = Instant::now();
        let (_, bytes, body) = page(api, target, user, &query).await?;
        latency.record(started.elapsed().as_micros() as u64);
        walked.pages += 1;
        walked.bytes_max = walked.bytes_max.max(bytes);
        for entry in body["data"]["chatrooms"].as_array().into_iter().flatten() {
            let id = entry["id"].as_i64().unwrap_or(-1);
            if !expected.contains(&id) || !seen.insert(id) {
                bail!("the chat list gave room {id} twice or unasked");
            }
            if entry["unread_count"] != 1 {
                bail!("room {id} lists {} unread, not 1", entry["unread_count"]);
            }
        }
        cursor = body["data"]["next"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    if seen.len() != expected.len() {
        bail!(
            "the chat list gave {} of the user's {} rooms",
            seen.len(),
            expected.len()
        );
    }
    Ok(walked)
}

/// `GET /api/v1/chat/chatrooms/<query>`, which must answer 200.
async fn page(
    api: &Api,
    target: &Target,
    user: &User,
    query: &str,
) -> anyhow::Result<(StatusCode, usize, Value)> {
    let path = format!("/api/v1/chat/chatrooms/{query}");
    let (status, bytes, body) = api
        .get(target, &path, user)
        .await
        .map_err(|e| anyhow!("GET {path}: {e}"))?;
    if status != StatusCode::OK {
        bail!("GET {path}: {status} {:.200}", body.to_string());
    }
    Ok((status, bytes, body))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(raw: &str) -> String {
    raw.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

pub fn table(r: &ChatListReport) -> String {
    let mut out = String::new();
    let l = &r.page_latency;
    let _ = writeln!(
        out,
        "chatnode bench: chat list of a user in {} rooms, {} per page, {} walks, on {}",
        r.rooms,
        r.page_limit,
        r.passes,
        r.targets.join(", ")
    );
    let _ = writeln!(out, "{:<22}{:.1} s", "setup", r.setup_secs);
    let _ = writeln!(
        out,
        "{:<22}{} pages in {:.2} s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        "pages", r.pages, r.walk_secs, l.p50, l.p99, l.max
    );
    let _ = writeln!(
        out,
        "{:<22}largest {:.1} KiB; first page without limit {:.1} KiB",
        "page size",
        r.page_bytes_max as f64 / 1024.0,
        r.default_page_bytes as f64 / 1024.0
    );
    for s in &r.servers {
        let _ = writeln!(
            out,
            "{:<22}RSS {:.1} -> {:.1} MiB over the walks, peak {:.1} MiB{}",
            format!("node pid {}", s.pid),
            s.rss_before_kib as f64 / 1024.0,
            s.rss_after_kib as f64 / 1024.0,
            s.peak_rss_kib as f64 / 1024.0,
            if s.peak_is_run_only {
                ""
            } else {
                " (whole life)"
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn a_cursor_is_percent_encoded_except_unreserved_characters() {
        assert_eq!(encode("1700000000.42"), "1700000000.42");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
