//! Users, rooms and socket counts: the set-up steps every mode of the bench shares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream;
use futures_util::{StreamExt, TryStreamExt};

use super::REGISTER_WAIT;
use crate::api::{Api, Target, User};
use crate::progress::Progress;

/// Registrations in flight: each costs the node an argon2 hash, a core's worth of work.
const REGISTER_CONCURRENCY: usize = 4;
/// Socket handshakes and room creations in flight.
pub const OPEN_CONCURRENCY: usize = 64;

/// A random tag so that repeated runs against one node never collide on emails.
pub fn tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Registers `count` users named `bench-<tag>-<role><i>`, spread over the targets.
pub async fn register_users(
    api: &Api,
    targets: &[Target],
    tag: &str,
    role: &str,
    count: usize,
    progress: bool,
) -> anyhow::Result<Vec<User>> {
    let done = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(progress, role, count as u64, {
        let done = done.clone();
        move || (done.load(Ordering::Relaxed), String::new())
    });
    let users = stream::iter(0..count)
        .map(|i| {
            let done = done.clone();
            async move {
                let email = format!("bench-{tag}-{role}{i}@example.com");
                let user = api.register(&targets[i % targets.len()], &email).await;
                done.fetch_add(1, Ordering::Relaxed);
                user
            }
        })
        .buffered(REGISTER_CONCURRENCY)
        .try_collect()
        .await;
    bar.finish().await;
    users
}

/// Creates `count` rooms owned by `owner` with `members`, spread over the targets.
pub async fn create_rooms(
    api: &Api,
    targets: &[Target],
    tag: &str,
    owner: &User,
    members: &[i64],
    count: usize,
) -> anyhow::Result<Vec<i64>> {
    stream::iter(0..count)
        .map(|i| async move {
            let name = format!("bench {tag} {i}");
            api.create_room(&targets[i % targets.len()], owner, &name, members)
                .await
        })
        .buffered(OPEN_CONCURRENCY)
        .try_collect()
        .await
}

/// Sockets the targets have open together.
pub async fn open_sockets_on(api: &Api, targets: &[Target]) -> anyhow::Result<u64> {
    let mut total = 0;
    for target in targets {
        total += api.sockets(target).await?;
    }
    Ok(total)
}

/// Waits (bounded) until the nodes' socket count satisfies `done`: a handshake is answered
/// just before the node registers the socket, and a close is seen before it deregisters it.
/// Returns whether it did.
pub async fn wait_for_sockets(api: &Api, targets: &[Target], done: impl Fn(u64) -> bool) -> bool {
    let deadline = Instant::now() + REGISTER_WAIT;
    while Instant::now() < deadline {
        if open_sockets_on(api, targets).await.is_ok_and(&done) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
