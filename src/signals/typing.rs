//! Who is typing where, as this node heard it: each start holds for [`TYPING_EXPIRY`] on this
//! node's own clock, so a sender whose node died (and never says stop) stops typing too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::events::{EventKind, RoomEvent};

/// A start not refreshed within this long ends (clients repeat it every 3 s).
pub const TYPING_EXPIRY: Duration = Duration::from_secs(6);
/// Most (room, user) pairs tracked at once; a start beyond it is dropped, not tracked.
pub const MAX_TYPING: usize = 65_536;

#[derive(Default)]
pub struct Typing {
    /// (room, user) -> until when, and the name the stop frame carries.
    active: Mutex<HashMap<(i64, i64), (Instant, String)>>,
}

impl Typing {
    /// The events to hand to the room's sockets for `event`, in order: a start is tracked
    /// (and dropped when the map is full), a stop or a message from a typist ends it.
    pub fn on_event(&self, event: RoomEvent, now: Instant) -> Vec<RoomEvent> {
        let mut active = self.active.lock().expect("typing poisoned");
        match (event.kind, event.user_id, event.sender_id) {
            (EventKind::TypingStarted, Some(user), _) => {
                let key = (event.chat_id, user);
                if active.len() >= MAX_TYPING && !active.contains_key(&key) {
                    return Vec::new();
                }
                active.insert(key, (now + TYPING_EXPIRY, event.sender.clone()));
                vec![event]
            }
            (EventKind::TypingStopped, Some(user), _) => {
                active.remove(&(event.chat_id, user));
                vec![event]
            }
            // Sending ends the sender's typing: the stop goes first, then the message.
            (EventKind::Message, _, Some(sender)) => {
                match active.remove(&(event.chat_id, sender)) {
                    Some((_, name)) => vec![stop(event.chat_id, sender, &name), event],
                    None => vec![event],
                }
            }
            _ => vec![event],
        }
    }

    /// Ends every start older than [`TYPING_EXPIRY`]: the stops to deliver.
    pub fn expire(&self, now: Instant) -> Vec<RoomEvent> {
        let mut active = self.active.lock().expect("typing poisoned");
        let mut stops = Vec::new();
        active.retain(|&(room, user), (until, name)| {
            let live = *until > now;
            if !live {
                stops.push(stop(room, user, name));
            }
            live
        });
        stops
    }

    pub fn len(&self) -> usize {
        self.active.lock().expect("typing poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn stop(room: i64, user: i64, name: &str) -> RoomEvent {
    RoomEvent::typing(room, user, name, false, &crate::store::now_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typing(room: i64, user: i64, started: bool) -> RoomEvent {
        RoomEvent::typing(room, user, &format!("u{user}"), started, "now")
    }

    fn kinds(events: &[RoomEvent]) -> Vec<EventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_start_holds_until_refreshed_or_expired_on_this_clock() {
        let typing_now = Typing::default();
        let t0 = Instant::now();
        assert_eq!(typing_now.on_event(typing(1, 7, true), t0).len(), 1);
        let refreshed = t0 + Duration::from_secs(3);
        typing_now.on_event(typing(1, 7, true), refreshed);
        assert!(typing_now.expire(t0 + TYPING_EXPIRY).is_empty());
        let stops = typing_now.expire(refreshed + TYPING_EXPIRY);
        assert_eq!(kinds(&stops), [EventKind::TypingStopped]);
        assert_eq!((stops[0].chat_id, stops[0].user_id), (1, Some(7)));
        assert_eq!(stops[0].sender, "u7");
        assert!(typing_now.is_empty());
    }

    #[test]
    fn a_message_from_a_typist_is_preceded_by_their_stop() {
        let typing_now = Typing::default();
        let now = Instant::now();
        typing_now.on_event(typing(1, 7, true), now);
        let mut message = typing(1, 7, true);
        (message.kind, message.sender_id, message.user_id) = (EventKind::Message, Some(7), None);
        let out = typing_now.on_event(message.clone(), now);
        assert_eq!(kinds(&out), [EventKind::TypingStopped, EventKind::Message]);
        // Not typing any more: the next message goes alone.
        assert_eq!(
            kinds(&typing_now.on_event(message, now)),
            [EventKind::Message]
        );
        assert!(typing_now.is_empty());
    }

    #[test]
    fn the_map_never_holds_more_than_its_bound() {
        let typing_now = Typing::default();
        let now = Instant::now();
        for user in 0..MAX_TYPING as i64 {
            typing_now.on_event(typing(1, user, true), now);
        }
        assert!(typing_now.on_event(typing(2, 1, true), now).is_empty());
        assert_eq!(typing_now.len(), MAX_TYPING);
        // A refresh of a tracked pair and a stop still pass.
        assert_eq!(typing_now.on_event(typing(1, 1, true), now).len(), 1);
        assert_eq!(typing_now.on_event(typing(1, 1, false), now).len(), 1);
        assert_eq!(typing_now.len(), MAX_TYPING - 1);
    }
}
