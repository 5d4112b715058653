//! The soak's accounting: which acknowledged message each user had to receive, given that
//! users join and leave rooms and drop their sockets while messages fly.
//!
//! Events are ordered by one logical clock (an atomic counter), not by wall time, so the order
//! of "this join was acknowledged" and "that send was issued" is exact across tasks. A user is
//! expected to receive a message exactly when its membership covers the whole send: the join
//! was acknowledged before the send was issued, and the leave began after the send was
//! acknowledged (or never). Sends that race a join or a leave owe that user nothing; if they
//! arrive anyway they are counted as `extra`, not as errors.
//!
//! Why that is exact and never a false loss:
//! - Joined before the send was issued: the message commits after the join, so its id is above
//!   every id acknowledged before the join was issued (a room's ids follow commit order). The
//!   socket opened after the join asks for `since` = the highest such id (or the highest id the
//!   user saw earlier, if higher), so the replay and the live feed cover the message.
//! - Leave began after the ack: the leaver reads the room's highest acknowledged id after the
//!   leave began, waits until its socket has passed that id, and only then closes the socket
//!   and asks to leave; any message acknowledged before has an id at or below it.
//! - A reconnect asks for `since` = the highest id received, so nothing falls in between.
//!
//! Every user keeps, per room, the ids it received over all its sockets and memberships: a
//! second copy of an id is a duplicate, an id at or below the socket's `since` (or the last id
//! received) that is new is out of order.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;

/// A time in the run's logical clock.
pub type Tick = u64;

/// An acknowledged message: 201 over REST, or its echo on the sender's own socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub room: usize,
    pub id: i64,
    /// Taken just before the send was issued.
    pub issued: Tick,
    /// Taken just after the acknowledgement was seen.
    pub acked: Tick,
}

/// A membership: from the tick its join was acknowledged (0: a member from the start) to the
/// tick its leave began (`None`: still a member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: Tick,
    pub to: Option<Tick>,
}

impl Span {
    /// Membership held from before `issued` until after `acked`.
    pub fn covers(&self, message: &Acked) -> bool {
        self.from < message.issued && self.to.is_none_or(|to| message.acked < to)
    }
}

/// How a received message counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reception {
    Fresh,
    Duplicate,
    /// New, but not above the feed's position: the feed is not in id order.
    Reordered,
}

/// One user's record of one room, over all its sockets and memberships.
#[derive(Debug, Clone, Default)]
pub struct Track {
    pub spans: Vec<Span>,
    /// The `since` for the next socket: the highest id received, raised at a join to the
    /// highest id acknowledged before it (earlier messages are not owed).
    pub cursor: i64,
    /// Every id received, ascending.
    received: Vec<i64>,
    pub duplicates: u64,
    pub reordered: u64,
    /// Frames of another run or room, or not of the soak.
    pub foreign: u64,
    /// Message frames without `id`, `chat_id` or `created_at`.
    pub malformed: u64,
}

impl Track {
    pub fn is_member(&self) -> bool {
        self.spans.last().is_some_and(|s| s.to.is_none())
    }

    pub fn receive(&mut self, id: i64) -> Reception {
        if id > self.cursor && self.received.last().is_none_or(|&last| id > last) {
            self.received.push(id);
            self.cursor = id;
            return Reception::Fresh;
        }
        match self.received.binary_search(&id) {
            Ok(_) => {
                self.duplicates += 1;
                Reception::Duplicate
            }
            Err(at) => {
                self.received.insert(at, id);
                self.cursor = self.cursor.max(id);
                self.reordered += 1;
                Reception::Reordered
            }
        }
    }

    pub fn has(&self, id: i64) -> bool {
        self.received.binary_search(&id).is_ok()
    }

    pub fn received(&self) -> &[i64] {
        &self.received
    }
}

/// The run's shared accounting: the clock, what was acknowledged, and every user's tracks.
pub struct Ledger {
    users: usize,
    rooms: usize,
    clock: AtomicU64,
    /// Per room, the highest acknowledged message id.
    floors: Vec<AtomicI64>,
    acked: Mutex<Vec<Acked>>,
    /// `user * rooms + room`.
    tracks: Vec<Mutex<Track>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking task is reported by its join; its data is still a valid count.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ledger {
    pub fn new(users: usize, rooms: usize) -> Self {
        Self {
            users,
            rooms,
            clock: AtomicU64::new(0),
            floors: (0..rooms).map(|_| AtomicI64::new(0)).collect(),
            acked: Mutex::new(Vec::new()),
            tracks: (0..users * rooms)
                .map(|_| Mutex::new(Track::default()))
                .collect(),
        }
    }

    /// The next tick; every event of the run takes one, so ticks order them totally.
    pub fn tick(&self) -> Tick {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The highest message id of `room` acknowledged so far.
    pub fn floor(&self, room: usize) -> i64 {
        self.floors[room].load(Ordering::SeqCst)
    }

    pub fn track(&self, user: usize, room: usize) -> MutexGuard<'_, Track> {
        lock(&self.tracks[user * self.rooms + room])
    }

    /// A member from the start of the run (before any send).
    pub fn founding_member(&self, user: usize, room: usize) {
        self.track(user, room)
            .spans
            .push(Span { from: 0, to: None });
    }

    /// Records an acknowledged send issued at `issued`. The floor is raised before the ack's
    /// tick is taken, so a leave that begins after this ack reads a floor that includes it.
    pub fn acknowledge(&self, room: usize, id: i64, issued: Tick) {
        self.floors[room].fetch_max(id, Ordering::SeqCst);
        let acked = self.tick();
        lock(&self.acked).push(Acked {
            room,
            id,
            issued,
            acked,
        });
    }

    /// The join of `user` to `room` was acknowledged; `floor_before` is the room's floor read
    /// before the join was issued. Returns the `since` for the room's socket.
    pub fn joined(&self, user: usize, room: usize, floor_before: i64) -> i64 {
        let from = self.tick();
        let mut track = self.track(user, room);
        track.spans.push(Span { from, to: None });
        track.cursor = track.cursor.max(floor_before);
        track.cursor
    }

    /// `user` begins to leave `room`: its membership ends now for the accounting. Returns
    /// the id its socket must pass before it closes: every message acknowledged so far.
    pub fn leaving(&self, user: usize, room: usize) -> i64 {
        let to = self.tick();
        if let Some(span) = self.track(user, room).spans.last_mut() {
            span.to.get_or_insert(to);
        }
        self.floor(room)
    }

    pub fn acked_count(&self) -> u64 {
        lock(&self.acked).len() as u64
    }

    /// Rooms where `user` is a member and has not yet received up to the room's floor.
    pub fn behind(&self, user: usize) -> usize {
        (0..self.rooms)
            .filter(|&room| {
                let track = self.track(user, room);
                track.is_member() && track.cursor < self.floor(room)
            })
            .count()
    }

    /// Every expected delivery against what was received; run once everything has stopped.
    pub fn audit(&self) -> Audit {
        let mut acked = lock(&self.acked).clone();
        acked.sort_unstable_by_key(|m| (m.room, m.id));
        let mut audit = Audit {
            messages: acked.len() as u64,
            ..Audit::default()
        };
        for user in 0..self.users {
            for room in 0..self.rooms {
                let track = self.track(user, room);
                let in_room = {
                    let start = acked.partition_point(|m| m.room < room);
                    let end = acked.partition_point(|m| m.room <= room);
                    &acked[start..end]
                };
                for message in in_room {
                    let got = track.has(message.id);
                    if track.spans.iter().any(|s| s.covers(message)) {
                        audit.expected += 1;
                        if got {
                            audit.delivered += 1;
                        } else {
                            audit.missing += 1;
                            if audit.missing_samples.len() < MISSING_SAMPLES {
                                audit.missing_samples.push(Missing {
                                    user,
                                    room,
                                    id: message.id,
                                });
                            }
                        }
                    } else if got {
                        audit.extra += 1;
                    }
                }
                audit.unacknowledged += track
                    .received()
                    .iter()
                    .filter(|id| in_room.binary_search_by_key(id, |m| &m.id).is_err())
                    .count() as u64;
                audit.duplicates += track.duplicates;
                audit.reordered += track.reordered;
                audit.foreign += track.foreign;
                audit.malformed += track.malformed;
            }
        }
        audit.ratio = if audit.expected == 0 {
            0.0
        } else {
            audit.delivered as f64 / audit.expected as f64
        };
        audit
    }
}

/// Missing deliveries named in the report.
const MISSING_SAMPLES: usize = 10;

/// A delivery that never came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub user: usize,
    pub room: usize,
    pub id: i64,
}

/// The outcome of the accounting.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Audit {
    /// Acknowledged messages.
    pub messages: u64,
    /// (message, user) pairs owed: the user's membership covered the whole send.
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Deliveries of acknowledged messages that were not owed (sent while the user joined or
    /// left), which is fine.
    pub extra: u64,
    /// Deliveries of messages whose send was not acknowledged (a failed or timed-out send).
    pub unacknowledged: u64,
    pub foreign: u64,
    pub malformed: u64,
    /// `delivered / expected` (0 when nothing was expected).
    pub ratio: f64,
    pub missing_samples: Vec<Missing>,
}

impl Audit {
    /// Everything owed arrived once, in order, and nothing arrived that should not have.
    pub fn is_exact(&self) -> bool {
        self.expected > 0
            && self.missing == 0
            && self.duplicates == 0
            && self.reordered == 0
            && self.unacknowledged == 0
            && self.foreign == 0
            && self.malformed == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two users in one room from the start; both receive what is sent.
    #[test]
    fn complete_delivery_is_exact() {
        let ledger = Ledger::new(2, 1);
        ledger.founding_member(0, 0);
        ledger.founding_member(1, 0);
        for id in [3, 5, 9] {
            let issued = ledger.tick();
            ledger.acknowledge(0, id, issued);
            for user in 0..2 {
                assert_eq!(ledger.track(user, 0).receive(id), Reception::Fresh);
            }
        }
        assert_eq!(ledger.floor(0), 9);
        assert_eq!(ledger.behind(0), 0);
        let audit = ledger.audit();
        assert_eq!(
            (
                audit.messages,
                audit.expected,
                audit.delivered,
                audit.missing
            ),
            (3, 6, 6, 0)
        );
        assert_eq!(audit.ratio, 1.0);
        assert!(audit.is_exact(), "{audit:?}");
    }

    #[test]
    fn a_missing_delivery_is_caught_and_named() {
        let ledger = Ledger::new(2, 1);
        ledger.founding_member(0, 0);
        ledger.founding_member(1, 0);
        for id in [1, 2, 3] {
            let issued = ledger.tick();
            ledger.acknowledge(0, id, issued);
            ledger.track(0, 0).receive(id);
            if id != 2 {
                ledger.track(1, 0).receive(id);
            }
        }
        let audit = ledger.audit();
        assert_eq!((audit.expected, audit.delivered, audit.missing), (6, 5, 1));
        assert_eq!(
            audit.missing_samples,
            [Missing {
                user: 1,
                room: 0,
                id: 2
            }]
        );
        assert!(!audit.is_exact());
    }

    #[test]
    fn duplicated_and_reordered_deliveries_are_caught() {
        let ledger = Ledger::new(1, 1);
        ledger.founding_member(0, 0);
        for id in [1, 2, 3] {
            let issued = ledger.tick();
            ledger.acknowledge(0, id, issued);
        }
        let mut track = ledger.track(0, 0);
        assert_eq!(track.receive(1), Reception::Fresh);
        assert_eq!(track.receive(3), Reception::Fresh);
        assert_eq!(track.receive(3), Reception::Duplicate);
        assert_eq!(track.receive(2), Reception::Reordered);
        assert_eq!(track.receive(2), Reception::Duplicate);
        assert_eq!(track.received(), [1, 2, 3]);
        drop(track);
        let audit = ledger.audit();
        assert_eq!((audit.expected, audit.delivered, audit.missing), (3, 3, 0));
        assert_eq!((audit.duplicates, audit.reordered), (2, 1));
        assert!(!audit.is_exact());
    }

    #[test]
    fn sends_racing_a_join_or_a_leave_are_not_owed() {
        let ledger = Ledger::new(2, 1);
        ledger.founding_member(0, 0);
        // Message 1 is issued before user 1's join is acknowledged, acknowledged after.
        let issued_1 = ledger.tick();
        let floor_before = ledger.floor(0);
        let since = ledger.joined(1, 0, floor_before);
        assert_eq!(since, 0);
        ledger.acknowledge(0, 1, issued_1);
        // Message 2 is issued after the join: owed to both.
        let issued_2 = ledger.tick();
        ledger.acknowledge(0, 2, issued_2);
        // Message 3 is issued before user 1 begins to leave and acknowledged after: not owed.
        let issued_3 = ledger.tick();
        assert_eq!(ledger.leaving(1, 0), 2, "the leaver waits for message 2");
        ledger.acknowledge(0, 3, issued_3);
        assert!(!ledger.track(1, 0).is_member());
        for id in [1, 2, 3] {
            ledger.track(0, 0).receive(id);
        }
        // User 1 got message 1 by the replay and 2 live, but not 3.
        for id in [1, 2] {
            ledger.track(1, 0).receive(id);
        }
        let audit = ledger.audit();
        assert_eq!(
            (audit.expected, audit.delivered, audit.missing, audit.extra),
            (3 + 1, 4, 0, 1)
        );
        assert!(audit.is_exact(), "{audit:?}");

        // Had user 1 not received message 2, that is a loss.
        let ledger2 = Ledger::new(1, 1);
        let issued = ledger2.tick();
        ledger2.joined(0, 0, 0);
        ledger2.acknowledge(0, 1, issued);
        let issued = ledger2.tick();
        ledger2.acknowledge(0, 2, issued);
        ledger2.leaving(0, 0);
        ledger2.track(0, 0).receive(1);
        let audit = ledger2.audit();
        assert_eq!((audit.expected, audit.missing, audit.extra), (1, 1, 1));
        assert!(!audit.is_exact());
    }

    #[test]
    fn a_rejoin_resumes_after_the_last_id_seen_or_the_floor() {
        let ledger = Ledger::new(2, 1);
        ledger.founding_member(0, 0);
        ledger.founding_member(1, 0);
        let issued = ledger.tick();
        ledger.acknowledge(0, 4, issued);
        ledger.track(1, 0).receive(4);
        assert_eq!(ledger.leaving(1, 0), 4);
        // While user 1 is away, message 7 is sent.
        let issued = ledger.tick();
        ledger.acknowledge(0, 7, issued);
        let since = ledger.joined(1, 0, ledger.floor(0));
        assert_eq!(since, 7, "no replay of what was sent while away");
        assert!(ledger.track(1, 0).is_member());
        assert_eq!(ledger.track(1, 0).spans.len(), 2);
        // Back in the room, a reconnect resumes after 7; an id at or below it is out of order.
        assert_eq!(ledger.track(1, 0).receive(6), Reception::Reordered);
    }

    #[test]
    fn deliveries_of_unacknowledged_sends_are_counted() {
        let ledger = Ledger::new(1, 2);
        ledger.founding_member(0, 0);
        ledger.founding_member(0, 1);
        let issued = ledger.tick();
        ledger.acknowledge(0, 1, issued);
        ledger.track(0, 0).receive(1);
        // A send to room 1 timed out but was stored: its id 2 arrives, unacknowledged.
        ledger.track(0, 1).receive(2);
        let audit = ledger.audit();
        assert_eq!((audit.expected, audit.delivered), (1, 1));
        assert_eq!(audit.unacknowledged, 1);
        assert!(!audit.is_exact());
        assert_eq!(ledger.behind(0), 0);
    }

    #[test]
    fn nothing_expected_is_not_exact() {
        let ledger = Ledger::new(1, 1);
        assert!(!ledger.audit().is_exact());
    }
}
