//! Setting a soak up: users, rooms with random initial members, and every member's socket.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{bail, Context};
use futures_util::stream;
use futures_util::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::shared::{Counters, Soak};
use super::user::VirtualUser;
use super::SoakOptions;
use crate::api::{Api, User};
use crate::load::{self, OPEN_CONCURRENCY};
use crate::soak_ledger::Ledger;

/// Initial memberships: each user in each room with probability 1/2 and in at least one
/// room; each room has at least one member.
fn memberships(users: usize, rooms: usize, rng: &mut impl Rng) -> Vec<Vec<bool>> {
    let mut member: Vec<Vec<bool>> = (0..users)
        .map(|_| (0..rooms).map(|_| rng.random_bool(0.5)).collect())
        .collect();
    for row in &mut member {
        if !row.contains(&true) {
            row[rng.random_range(0..rooms)] = true;
        }
    }
    for room in 0..rooms {
        if !member.iter().any(|row| row[room]) {
            member[room % users][room] = true;
        }
    }
    member
}

/// Registers the users, creates the rooms and opens every member's sockets.
pub(super) async fn setup(
    options: &SoakOptions,
    api: &Api,
) -> anyhow::Result<(Arc<Soak>, Vec<VirtualUser>)> {
    let targets = &options.targets;
    let tag = load::tag();
    let users =
        load::register_users(api, targets, &tag, "user", options.users, options.progress).await?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let member = memberships(options.users, options.rooms, &mut rng);
    let rooms = create_rooms(options, api, &tag, &users, &member).await?;

    let soak = Arc::new(Soak {
        run: rand::random(),
        ledger: Ledger::new(options.users, options.rooms),
        rooms,
        user_ids: users.iter().map(|u| u.id).collect(),
        message_bytes: options.message_bytes,
        drain: options.drain,
        stop: CancellationToken::new(),
        counters: Counters::default(),
        errors_by_kind: Mutex::new(BTreeMap::new()),
        error_samples: Mutex::new(Vec::new()),
    });
    let mut virtual_users = Vec::with_capacity(options.users);
    for (index, user) in users.into_iter().enumerate() {
        virtual_users.push(VirtualUser {
            index,
            user,
            target: targets[index % targets.len()].clone(),
            api: Api::new()?,
            rng: StdRng::seed_from_u64(options.seed.wrapping_add(1 + index as u64)),
            mix: options.mix.clone(),
            soak: soak.clone(),
            conns: BTreeMap::new(),
            sent: 0,
            read_upto: BTreeMap::new(),
        });
    }
    open_first_sockets(options, &soak, &mut virtual_users, &member).await?;
    Ok((soak, virtual_users))
}

/// Creates every room with its initial members, the first of them its owner; returns the
/// room ids by room index.
async fn create_rooms(
    options: &SoakOptions,
    api: &Api,
    tag: &str,
    users: &[User],
    member: &[Vec<bool>],
) -> anyhow::Result<Vec<i64>> {
    let targets = &options.targets;
    stream::iter(0..options.rooms)
        .map(|room| {
            let in_room: Vec<usize> = (0..options.users).filter(|&u| member[u][room]).collect();
            let owner = &users[in_room[0]];
            let others: Vec<i64> = in_room[1..].iter().map(|&u| users[u].id).collect();
            let name = format!("soak {tag} {room}");
            let target = &targets[room % targets.len()];
            async move { api.create_room(target, owner, &name, &others).await }
        })
        .buffered(OPEN_CONCURRENCY)
        .try_collect()
        .await
        .context("cannot create the rooms")
}

/// Opens every member's socket of every room it starts in; fails if any would not open.
async fn open_first_sockets(
    options: &SoakOptions,
    soak: &Soak,
    virtual_users: &mut [VirtualUser],
    member: &[Vec<bool>],
) -> anyhow::Result<()> {
    // Fresh rooms: `since=0` replays nothing and leaves no gap before the first send.
    let opened: Vec<bool> = stream::iter(virtual_users.iter_mut())
        .map(|vu| {
            let rooms: Vec<usize> = (0..options.rooms)
                .filter(|&r| member[vu.index][r])
                .collect();
            async move {
                let mut all = true;
                for room in rooms {
                    vu.soak.ledger.founding_member(vu.index, room);
                    vu.conns.insert(room, None);
                    all &= vu.open(room, 0).await;
                }
                all
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect()
        .await;
    if opened.contains(&false) {
        let samples = soak
            .error_samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("; ");
        bail!("cannot open the soak's first sockets: {samples}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_and_room_has_a_membership() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (users, rooms) = (1 + seed as usize % 7, 1 + seed as usize % 5);
            let member = memberships(users, rooms, &mut rng);
            assert!(member.iter().all(|row| row.contains(&true)));
            assert!((0..rooms).all(|r| member.iter().any(|row| row[r])));
        }
        // The same seed gives the same rooms.
        let a = memberships(20, 10, &mut StdRng::seed_from_u64(1));
        let b = memberships(20, 10, &mut StdRng::seed_from_u64(1));
        assert_eq!(a, b);
    }
}
