//! The many-rooms check of `--presence`: one user in `wide_rooms` rooms with two watchers,
//! whose sockets sit in [`WATCHERS`] of those rooms. The user connecting must be one
//! `online` frame on each watching socket, and a close and reopen within the node's grace
//! (a flap) none at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{settle, Frame, PresenceOptions, WideReport, FLAP_WAIT, WATCHERS};
use crate::api::{open_socket, Api, Socket};
use crate::load;

/// Frames about the user on one watching socket, and any presence frame at all.
#[derive(Default)]
struct Seen {
    online: AtomicU64,
    about_user: AtomicU64,
    any: AtomicU64,
}

pub(super) async fn check(
    api: &Api,
    options: &PresenceOptions,
    tag: &str,
) -> anyhow::Result<WideReport> {
    if options.wide_rooms == 0 {
        bail!("--presence-rooms must be at least 1");
    }
    let targets = &options.targets;
    let users = load::register_users(api, targets, tag, "w", 3, false).await?;
    let (user, watchers) = (&users[0], &users[1..]);
    let members: Vec<i64> = watchers.iter().map(|w| w.id).collect();
    let rooms = load::create_rooms(api, targets, tag, user, &members, options.wide_rooms).await?;
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut seen = Vec::with_capacity(WATCHERS);
    for s in 0..WATCHERS {
        let room = rooms[s * rooms.len() / WATCHERS];
        let watcher = &watchers[s % watchers.len()];
        let socket = open_socket(&targets[s % targets.len()], room, &watcher.access).await?;
        let counts = Arc::new(Seen::default());
        tasks.spawn(watch(socket, user.id, counts.clone(), stop.clone()));
        seen.push(counts);
    }
    let total = |pick: fn(&Seen) -> &AtomicU64| {
        seen.iter()
            .map(|s| pick(s).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    // The watchers' own arrivals first, so that they are not mistaken for the user's.
    settle(WATCHERS as u64, || total(|s| &s.any)).await;
    let socket = open_socket(&targets[0], rooms[0], &user.access)
        .await
        .context("the user's socket")?;
    settle(WATCHERS as u64, || total(|s| &s.about_user)).await;
    let online_frames_per_socket: Vec<u64> = seen
        .iter()
        .map(|s| s.online.load(Ordering::Relaxed))
        .collect();
    let before_flap = total(|s| &s.about_user);
    drop(socket);
    let socket = open_socket(&targets[0], rooms[0], &user.access)
        .await
        .context("the user's socket, reopened")?;
    tokio::time::sleep(FLAP_WAIT).await;
    let flap_frames = total(|s| &s.about_user) - before_flap;
    drop(socket);
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    let exact = before_flap == WATCHERS as u64
        && online_frames_per_socket.iter().all(|&n| n == 1)
        && flap_frames == 0;
    Ok(WideReport {
        rooms: options.wide_rooms,
        watching_sockets: WATCHERS,
        online_frames_per_socket,
        flap_frames,
        exact,
    })
}

async fn watch(mut socket: Socket, user: i64, seen: Arc<Seen>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => count(&seen, user, text.as_str()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), socket.close(None)).await;
}

fn count(seen: &Seen, user: i64, text: &str) {
    let Ok(Frame { data: Some(data) }) = serde_json::from_str::<Frame>(text) else {
        return;
    };
    if data.purpose.as_deref() != Some("presence") {
        return;
    }
    seen.any.fetch_add(1, Ordering::Relaxed);
    if data.user_id == Some(user) {
        seen.about_user.fetch_add(1, Ordering::Relaxed);
        if data.status.as_deref() == Some("online") {
            seen.online.fetch_add(1, Ordering::Relaxed);
        }
    }
}
