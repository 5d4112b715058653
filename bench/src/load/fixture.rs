//! The users and rooms of a load (set up once, reusable across runs) and one run on them:
//! open the sockets, send on schedule, wait for stragglers, close, report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::receivers::{receive, watch_sender_socket};
use super::report::{LoadReport, Measured};
use super::senders::{send_rest, send_ws, Schedule, Sink};
use super::setup::{
    create_rooms, open_sockets_on, register_users, tag, wait_for_sockets, OPEN_CONCURRENCY,
};
use super::shared::Shared;
use super::{unix_nanos, LoadOptions, SendOver, CLOSE_TIMEOUT, REGISTER_WAIT};
use crate::api::{open_socket, Api, Socket, User};
use crate::ledger::{Plan, Tally};
use crate::procstat;
use crate::progress::Progress;

/// Users and rooms: every user is a member of every room; sender 0 owns them.
pub struct Fixture {
    senders: Vec<User>,
    receivers: Vec<User>,
    rooms: Vec<i64>,
    pub setup_secs: f64,
}

/// Each WebSocket sender's sockets, with the index of the room each one is in.
type SenderSinks = Vec<Vec<(u64, Sink)>>;

impl Fixture {
    pub async fn setup(options: &LoadOptions) -> anyhow::Result<Self> {
        options.check()?;
        let started = Instant::now();
        let api = Api::new()?;
        let tag = tag();
        let targets = &options.targets;
        let senders =
            register_users(&api, targets, &tag, "s", options.senders, options.progress).await?;
        let receivers = register_users(
            &api,
            targets,
            &tag,
            "r",
            options.receivers,
            options.progress,
        )
        .await?;
        let members: Vec<i64> = senders[1..]
            .iter()
            .chain(&receivers)
            .map(|u| u.id)
            .collect();
        let rooms = create_rooms(&api, targets, &tag, &senders[0], &members, options.rooms)
            .await
            .context(
                "cannot create the rooms (is --max-room-members at least senders + receivers?)",
            )?;
        Ok(Self {
            senders,
            receivers,
            rooms,
            setup_secs: started.elapsed().as_secs_f64(),
        })
    }

    /// One run on these users and rooms: `options` must have the shape the fixture was set
    /// up with; messages, rate, transport and size may differ from run to run.
    pub async fn run(&self, options: &LoadOptions) -> anyhow::Result<LoadReport> {
        options.check()?;
        if (options.rooms, options.receivers, options.senders)
            != (self.rooms.len(), self.receivers.len(), self.senders.len())
        {
            bail!("a fixture runs only loads of the shape it was set up for");
        }
        let api = Api::new()?;
        let targets = &options.targets;
        let plan = Plan {
            rooms: options.rooms as u64,
            senders: options.senders as u64,
            messages: options.messages,
        };
        let shared = Arc::new(Shared::new(plan, rand::random()));
        let setup_started = Instant::now();
        let sockets_before = open_sockets_on(&api, targets).await?;

        let receiver_count = options.rooms * options.receivers;
        let receiving = self.start_receivers(options, &shared).await?;
        let (sender_sinks, watching) = self.open_sender_sockets(options, &shared).await?;
        let sender_sockets = sender_sinks.iter().map(Vec::len).sum::<usize>();
        let all_sockets = sockets_before + (receiver_count + sender_sockets) as u64;
        if !wait_for_sockets(&api, targets, |n| n >= all_sockets).await && options.progress {
            eprintln!("warning: the nodes did not count all {all_sockets} sockets within {REGISTER_WAIT:?}; going on (sockets catch up from their handshake)");
        }
        let socket_secs = setup_started.elapsed().as_secs_f64();

        // The run.
        let usage = procstat::RunUsage::start(&options.server_pids)?;
        let started = Instant::now();
        let started_unix = unix_nanos();
        let bar = message_progress(options, &shared);
        let sinks_to_close = self
            .send_all(options, &shared, sender_sinks, started)
            .await?;
        let send_secs = started.elapsed().as_secs_f64();
        let accepted = wait_for_stragglers(options, &shared).await;
        let run_secs = started.elapsed().as_secs_f64();
        let (servers, bench) = usage.end(run_secs)?;
        bar.finish().await;

        let tallies = stop(&shared, receiving, sinks_to_close, watching, receiver_count).await?;
        // The next run counts its sockets on top of what is open before it.
        wait_for_sockets(&api, targets, |n| n <= sockets_before).await;

        let measured = Measured {
            setup_secs: self.setup_secs,
            socket_secs,
            send_secs,
            run_secs,
            started_unix,
            receiver_sockets: receiver_count,
            sender_sockets,
            accepted,
            servers,
            bench,
        };
        Ok(LoadReport::of(options, &shared, &tallies, measured))
    }

    /// Receivers: socket `j` of room `r` belongs to receiver user `j`. Opens them all, then
    /// starts reading each.
    async fn start_receivers(
        &self,
        options: &LoadOptions,
        shared: &Arc<Shared>,
    ) -> anyhow::Result<JoinSet<Tally>> {
        let targets = &options.targets;
        let receiver_count = options.rooms * options.receivers;
        let opened = Arc::new(AtomicU64::new(0));
        let bar = Progress::start(
            options.progress,
            "sockets",
            receiver_count as u64,
            counter(&opened),
        );
        let receivers: Vec<(usize, Socket)> = stream::iter(0..receiver_count)
            .map(|i| {
                let (room, user) = (i / options.receivers, i % options.receivers);
                let (target, room_id) = (&targets[i % targets.len()], self.rooms[room]);
                let token = &self.receivers[user].access;
                let opened = opened.clone();
                async move {
                    let socket = open_socket(target, room_id, token).await?;
                    opened.fetch_add(1, Ordering::Relaxed);
                    anyhow::Ok((room, socket))
                }
            })
            .buffer_unordered(OPEN_CONCURRENCY)
            .try_collect()
            .await?;
        bar.finish().await;
        let mut receiving = JoinSet::new();
        for (room, socket) in receivers {
            receiving.spawn(receive(
                socket,
                shared.clone(),
                room as u64,
                self.rooms[room],
                options.mark_read_every,
            ));
        }
        Ok(receiving)
    }

    /// WebSocket senders: one socket per room a sender owns; their read halves only watch
    /// for error frames and closes. Over REST there are none.
    async fn open_sender_sockets(
        &self,
        options: &LoadOptions,
        shared: &Arc<Shared>,
    ) -> anyhow::Result<(SenderSinks, JoinSet<()>)> {
        let targets = &options.targets;
        let mut sender_sinks: SenderSinks = Vec::new();
        let mut watching = JoinSet::new();
        if options.send_over == SendOver::Ws {
            for (s, user) in self.senders.iter().enumerate() {
                let target = &targets[s % targets.len()];
                let mut sinks = Vec::new();
                for room in shared.plan.rooms_of_sender(s as u64) {
                    let socket =
                        open_socket(target, self.rooms[room as usize], &user.access).await?;
                    let (sink, stream) = socket.split();
                    watching.spawn(watch_sender_socket(stream, shared.clone()));
                    sinks.push((room, sink));
                }
                sender_sinks.push(sinks);
            }
        }
        Ok((sender_sinks, watching))
    }

    /// Starts every sender on its share of the messages and waits for them all; returns the
    /// WebSocket senders' sockets, to be closed once the receivers have everything.
    async fn send_all(
        &self,
        options: &LoadOptions,
        shared: &Arc<Shared>,
        sender_sinks: SenderSinks,
        started: Instant,
    ) -> anyhow::Result<Vec<Sink>> {
        let targets = &options.targets;
        let mut sending = JoinSet::new();
        let rooms = Arc::new(self.rooms.clone());
        let schedule = Schedule {
            started,
            rate: options.rate,
            bytes: options.message_bytes,
        };
        let mut sinks = sender_sinks.into_iter();
        for (s, seqs) in shared.plan.seqs_by_sender().into_iter().enumerate() {
            let shared = shared.clone();
            let target = targets[s % targets.len()].clone();
            match options.send_over {
                SendOver::Rest => {
                    let (user, rooms) = (self.senders[s].clone(), rooms.clone());
                    sending.spawn(send_rest(shared, schedule, seqs, target, user, rooms));
                }
                SendOver::Ws => {
                    let sinks = sinks.next().unwrap_or_default();
                    sending.spawn(send_ws(shared, schedule, seqs, sinks));
                }
            }
        }
        // Senders end by themselves: every send is bounded and repeated failures stop them.
        let mut sinks_to_close = Vec::new();
        while let Some(done) = sending.join_next().await {
            sinks_to_close.extend(done.context("a sender panicked")?);
        }
        Ok(sinks_to_close)
    }
}

/// A progress reading of `value`, without a message.
fn counter(value: &Arc<AtomicU64>) -> impl Fn() -> (u64, String) + Send + 'static {
    let value = value.clone();
    move || (value.load(Ordering::Relaxed), String::new())
}

/// The sends so far, and the deliveries they owe.
fn message_progress(options: &LoadOptions, shared: &Arc<Shared>) -> Progress {
    let expected_per_message = options.receivers as u64;
    Progress::start(options.progress, "messages", options.messages, {
        let shared = shared.clone();
        move || {
            let accepted = shared.accepted_count.load(Ordering::Relaxed);
            let delivered = shared.delivered.load(Ordering::Relaxed);
            (
                shared.sent.load(Ordering::Relaxed),
                format!(
                    "sent; deliveries {delivered}/{}",
                    accepted * expected_per_message
                ),
            )
        }
    })
}

/// Stragglers: until every accepted message reached every receiver, or the deadline.
/// Returns how many messages were accepted.
async fn wait_for_stragglers(options: &LoadOptions, shared: &Shared) -> u64 {
    let expected_per_message = options.receivers as u64;
    let deadline = Instant::now() + options.drain;
    let accepted = shared.accepted.count();
    while Instant::now() < deadline
        && shared.delivered.load(Ordering::Relaxed) < accepted * expected_per_message
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    accepted
}

/// Stops the receivers and takes their tallies, then closes the senders' sockets (only
/// now: closing earlier could race the node's last stores).
async fn stop(
    shared: &Shared,
    mut receiving: JoinSet<Tally>,
    sinks_to_close: Vec<Sink>,
    mut watching: JoinSet<()>,
    receiver_count: usize,
) -> anyhow::Result<Vec<Tally>> {
    shared.stop.cancel();
    let mut tallies = Vec::with_capacity(receiver_count);
    while let Some(tally) = receiving.join_next().await {
        tallies.push(tally.context("a receiver panicked")?);
    }
    for mut sink in sinks_to_close {
        let _ = timeout(CLOSE_TIMEOUT, sink.close()).await;
    }
    while watching.join_next().await.is_some() {}
    Ok(tallies)
}
