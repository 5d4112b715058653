//! Which message goes where, and the accounting that proves every receiver got every message
//! of its room exactly once.
//!
//! Messages are numbered `0..messages` (`seq`); message `seq` goes to room `seq % rooms` and is
//! that room's message number `seq / rooms` (its slot). Its content carries the run, the seq
//! and the wall-clock send time, so a receiver on the same machine needs nothing else.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// How messages are spread over rooms and senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub rooms: u64,
    pub senders: u64,
    pub messages: u64,
}

impl Plan {
    pub fn room_of(&self, seq: u64) -> u64 {
        seq % self.rooms
    }

    pub fn slot_of(&self, seq: u64) -> u64 {
        seq / self.rooms
    }

    /// How many messages go to `room`.
    pub fn room_messages(&self, room: u64) -> u64 {
        if room >= self.messages {
            0
        } else {
            (self.messages - room).div_ceil(self.rooms)
        }
    }

    /// The sender of `seq`. With no more senders than rooms each sender owns whole rooms, so
    /// a WebSocket sender needs one socket per room it owns and each room has one sending
    /// socket; with more, a room's senders take its messages in turn.
    pub fn sender_of(&self, seq: u64) -> u64 {
        let room = self.room_of(seq);
        if self.senders <= self.rooms {
            room % self.senders
        } else {
            let in_room = (self.senders - room).div_ceil(self.rooms);
            room + self.rooms * (self.slot_of(seq) % in_room)
        }
    }

    /// The rooms `sender` sends to, in order.
    pub fn rooms_of_sender(&self, sender: u64) -> Vec<u64> {
        if self.senders <= self.rooms {
            (sender..self.rooms)
                .step_by(self.senders as usize)
                .collect()
        } else {
            vec![sender % self.rooms]
        }
    }

    /// Every sender's seqs, each in increasing order.
    pub fn seqs_by_sender(&self) -> Vec<Vec<u64>> {
        let mut by_sender = vec![Vec::new(); self.senders as usize];
        for seq in 0..self.messages {
            by_sender[self.sender_of(seq) as usize].push(seq);
        }
        by_sender
    }
}

const PREFIX: &str = "bench:";

/// `bench:<run>:<seq>:<unix nanos>:` padded with `x` to `bytes` (never truncated).
pub fn content(run: u32, seq: u64, sent_unix_nanos: u64, bytes: usize) -> String {
    let mut text = format!("{PREFIX}{run:08x}:{seq}:{sent_unix_nanos}:");
    if text.len() < bytes {
        text.extend(std::iter::repeat_n('x', bytes - text.len()));
    }
    text
}

/// What a bench message's content says: its run, seq and send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub run: u32,
    pub seq: u64,
    pub sent_unix_nanos: u64,
}

pub fn parse_content(text: &str) -> Option<Stamp> {
    let mut parts = text.strip_prefix(PREFIX)?.splitn(4, ':');
    let run = u32::from_str_radix(parts.next()?, 16).ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent_unix_nanos = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(Stamp {
        run,
        seq,
        sent_unix_nanos,
    })
}

#[derive(Debug, Clone, Default)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    pub fn new(bits: u64) -> Self {
        Self {
            words: vec![0; bits.div_ceil(64) as usize],
        }
    }

    /// Sets `bit`; true when it was not set before.
    pub fn insert(&mut self, bit: u64) -> bool {
        let (word, mask) = ((bit / 64) as usize, 1 << (bit % 64));
        let fresh = self.words[word] & mask == 0;
        self.words[word] |= mask;
        fresh
    }

    pub fn contains(&self, bit: u64) -> bool {
        self.words
            .get((bit / 64) as usize)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }
}

/// The seqs the node accepted (201, or written to a sender's socket), set by every sender.
pub struct Accepted {
    words: Box<[AtomicU64]>,
}

impl Accepted {
    pub fn new(messages: u64) -> Self {
        Self {
            words: (0..messages.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    pub fn insert(&self, seq: u64) {
        self.words[(seq / 64) as usize].fetch_or(1 << (seq % 64), Ordering::Relaxed);
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (seq % 64)) != 0)
    }

    pub fn count(&self) -> u64 {
        self.words
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum()
    }
}

/// How a frame counted at a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// First delivery of a message of this receiver's room and run.
    Fresh,
    Duplicate,
    /// Another run's or another room's message, or a seq that was never planned.
    Foreign,
}

/// One receiving socket's record of its room's messages.
#[derive(Debug, Clone)]
pub struct Tally {
    plan: Plan,
    run: u32,
    room: u64,
    /// Slots received, by room slot.
    seen: BitSet,
    pub duplicates: u64,
    pub foreign: u64,
    /// Frames without `id`, `chat_id` (or the wrong one) or `created_at`, and frames that are
    /// not a JSON envelope with `data`; error frames and receipt frames are counted apart.
    pub malformed: u64,
    /// Messages whose id was not above the previous one's: a room's feed is in id order.
    pub reordered: u64,
    last_id: i64,
    /// The socket closed (or failed) before the run ended.
    pub closed_early: bool,
}

impl Tally {
    pub fn new(plan: Plan, run: u32, room: u64) -> Self {
        Self {
            plan,
            run,
            room,
            seen: BitSet::new(plan.room_messages(room)),
            duplicates: 0,
            foreign: 0,
            malformed: 0,
            reordered: 0,
            last_id: i64::MIN,
            closed_early: false,
        }
    }

    pub fn record(&mut self, stamp: &Stamp) -> Delivery {
        if stamp.run != self.run
            || stamp.seq >= self.plan.messages
            || self.plan.room_of(stamp.seq) != self.room
        {
            self.foreign += 1;
            return Delivery::Foreign;
        }
        if self.seen.insert(self.plan.slot_of(stamp.seq)) {
            Delivery::Fresh
        } else {
            self.duplicates += 1;
            Delivery::Duplicate
        }
    }

    pub fn note_id(&mut self, id: i64) {
        if id <= self.last_id {
            self.reordered += 1;
        }
        self.last_id = id;
    }
}

/// Deliveries against what the node accepted, over all receivers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Completeness {
    /// Accepted messages times the receivers of their room.
    pub expected: u64,
    /// Distinct accepted messages received, summed over receivers.
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// Deliveries of messages whose send was not acknowledged (e.g. a timed-out request).
    pub unacknowledged: u64,
    pub foreign: u64,
    pub malformed: u64,
    pub reordered: u64,
    pub closed_early: u64,
    /// `delivered / expected` (0 when nothing was expected).
    pub ratio: f64,
}

impl Completeness {
    pub fn of(plan: &Plan, accepted: &Accepted, tallies: &[Tally]) -> Self {
        let mut total = Self::default();
        for tally in tallies {
            let mut expected = 0;
            let mut delivered = 0;
            for slot in 0..plan.room_messages(tally.room) {
                let seq = slot * plan.rooms + tally.room;
                let was_accepted = accepted.contains(seq);
                let got = tally.seen.contains(slot);
                expected += u64::from(was_accepted);
                delivered += u64::from(was_accepted && got);
                total.unacknowledged += u64::from(!was_accepted && got);
            }
            total.expected += expected;
            total.delivered += delivered;
            total.missing += expected - delivered;
            total.duplicates += tally.duplicates;
            total.foreign += tally.foreign;
            total.malformed += tally.malformed;
            total.reordered += tally.reordered;
            total.closed_early += u64::from(tally.closed_early);
        }
        total.ratio = if total.expected == 0 {
            0.0
        } else {
            total.delivered as f64 / total.expected as f64
        };
        total
    }

    /// Every receiver got every accepted message of its room once, and nothing else.
    pub fn is_exact(&self) -> bool {
        self.expected > 0
            && self.missing == 0
            && self.duplicates == 0
            && self.unacknowledged == 0
            && self.foreign == 0
            && self.malformed == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(run: u32, seq: u64) -> Stamp {
        Stamp {
            run,
            seq,
            sent_unix_nanos: 1,
        }
    }

    #[test]
    fn content_round_trips_and_is_padded_to_size() {
        let text = content(0xdead_beef, 42, 1_700_000_000_123_456_789, 100);
        assert_eq!(text.len(), 100);
        assert!(text.starts_with("bench:deadbeef:42:1700000000123456789:x"));
        assert_eq!(
            parse_content(&text),
            Some(Stamp {
                run: 0xdead_beef,
                seq: 42,
                sent_unix_nanos: 1_700_000_000_123_456_789
            })
        );
        let short = content(1, 7, 9, 4);
        assert_eq!(short, "bench:00000001:7:9:");
        assert_eq!(parse_content(&short).unwrap().seq, 7);
        for other in [
            "hello",
            "bench:zz:1:2:",
            "bench:00000001:1:2",
            "bench:1:-1:2:",
        ] {
            assert_eq!(parse_content(other), None, "{other}");
        }
    }

    #[test]
    fn every_message_has_one_room_and_one_sender_and_senders_are_balanced() {
        for (rooms, senders, messages) in [(2, 2, 50), (10, 4, 1000), (3, 7, 100), (1, 1, 5)] {
            let plan = Plan {
                rooms,
                senders,
                messages,
            };
            let total: u64 = (0..rooms).map(|r| plan.room_messages(r)).sum();
            assert_eq!(total, messages);
            let mut sent = vec![];
            for (sender, seqs) in plan.seqs_by_sender().into_iter().enumerate() {
                let rooms_of = plan.rooms_of_sender(sender as u64);
                assert!(seqs.iter().all(|s| rooms_of.contains(&plan.room_of(*s))));
                sent.extend(seqs);
            }
            sent.sort_unstable();
            assert_eq!(sent, (0..messages).collect::<Vec<_>>());
        }
        // More senders than rooms: a room's senders share its messages evenly.
        let plan = Plan {
            rooms: 2,
            senders: 4,
            messages: 100,
        };
        for seqs in plan.seqs_by_sender() {
            assert_eq!(seqs.len(), 25);
        }
        // Fewer messages than rooms: the last rooms get none.
        let plan = Plan {
            rooms: 5,
            senders: 1,
            messages: 3,
        };
        let per_room: Vec<u64> = (0..5).map(|r| plan.room_messages(r)).collect();
        assert_eq!(per_room, [1, 1, 1, 0, 0]);
    }

    #[test]
    fn complete_delivery_is_exact() {
        let plan = Plan {
            rooms: 2,
            senders: 1,
            messages: 5,
        };
        let accepted = Accepted::new(plan.messages);
        (0..5).for_each(|seq| accepted.insert(seq));
        let mut tallies = vec![Tally::new(plan, 7, 0), Tally::new(plan, 7, 1)];
        for seq in 0..5 {
            let tally = &mut tallies[plan.room_of(seq) as usize];
            assert_eq!(tally.record(&stamp(7, seq)), Delivery::Fresh);
            tally.note_id(seq as i64 + 1);
        }
        let c = Completeness::of(&plan, &accepted, &tallies);
        assert_eq!((c.expected, c.delivered, c.missing), (5, 5, 0));
        assert_eq!(c.ratio, 1.0);
        assert!(c.is_exact());
    }

    #[test]
    fn missing_duplicated_foreign_and_unacknowledged_deliveries_are_counted() {
        let plan = Plan {
            rooms: 2,
            senders: 2,
            messages: 10,
        };
        let accepted = Accepted::new(plan.messages);
        // seq 8 (room 0) failed to send; everything else was accepted.
        (0..10)
            .filter(|&s| s != 8)
            .for_each(|seq| accepted.insert(seq));
        assert_eq!(accepted.count(), 9);
        // Two receivers in room 0 (seqs 0 2 4 6 [8]), one in room 1 (seqs 1 3 5 7 9).
        let mut a = Tally::new(plan, 1, 0);
        let mut b = Tally::new(plan, 1, 0);
        let mut c = Tally::new(plan, 1, 1);
        for seq in [0, 2, 4, 6] {
            a.record(&stamp(1, seq));
        }
        assert_eq!(a.record(&stamp(1, 4)), Delivery::Duplicate);
        // b misses 6 but gets 8, whose send was not acknowledged.
        for seq in [0, 2, 4, 8] {
            b.record(&stamp(1, seq));
        }
        assert_eq!(b.record(&stamp(2, 0)), Delivery::Foreign, "another run");
        assert_eq!(b.record(&stamp(1, 1)), Delivery::Foreign, "another room");
        assert_eq!(b.record(&stamp(1, 10)), Delivery::Foreign, "never planned");
        for seq in [1, 3, 5, 7, 9] {
            c.record(&stamp(1, seq));
        }
        c.note_id(5);
        c.note_id(4);
        c.closed_early = true;
        let total = Completeness::of(&plan, &accepted, &[a, b, c]);
        assert_eq!(
            total,
            Completeness {
                expected: 4 + 4 + 5,
                delivered: 4 + 3 + 5,
                missing: 1,
                duplicates: 1,
                unacknowledged: 1,
                foreign: 3,
                malformed: 0,
                reordered: 1,
                closed_early: 1,
                ratio: 12.0 / 13.0,
            }
        );
        assert!(!total.is_exact());
    }

    #[test]
    fn nothing_expected_is_not_complete() {
        let plan = Plan {
            rooms: 1,
            senders: 1,
            messages: 3,
        };
        let total = Completeness::of(&plan, &Accepted::new(3), &[Tally::new(plan, 0, 0)]);
        assert_eq!((total.expected, total.ratio), (0, 0.0));
        assert!(!total.is_exact());
    }

    #[test]
    fn bitsets_hold_what_was_inserted() {
        let mut bits = BitSet::new(130);
        assert!(!bits.contains(0));
        assert!(bits.insert(0) && bits.insert(129) && !bits.insert(129));
        assert!(bits.contains(129) && !bits.contains(128) && !bits.contains(1000));
    }
}
