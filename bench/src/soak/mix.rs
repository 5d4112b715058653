//! The actions of a virtual user and the weighted mix (`--mix`) they are drawn from.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// What a virtual user does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST .../messages/send/`; acknowledged by its 201.
    Rest,
    /// A `send_chat_message` frame; acknowledged by its echo on the sender's own socket.
    Ws,
    /// Enter a room it is not in, then open the room's socket with `since`.
    Join,
    /// Leave a room (never its last one) once its socket has everything acknowledged.
    Leave,
    /// Close a socket and reopen it with `since` = the last id it received.
    Reconnect,
    /// Mark the newest message it has seen in a room read: `POST .../read/` (answered with
    /// its position), or a `mark_read` frame on the room's socket (answered by its own read
    /// receipt on that socket).
    Read,
}

pub(super) const ACTIONS: [(Action, &str); 6] = [
    (Action::Rest, "rest"),
    (Action::Ws, "ws"),
    (Action::Join, "join"),
    (Action::Leave, "leave"),
    (Action::Reconnect, "reconnect"),
    (Action::Read, "read"),
];

/// Weights of the actions, e.g. `rest=36,ws=36,join=6,leave=6,reconnect=8,read=8`; an action
/// not named has weight 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix([u32; 6]);

impl Default for Mix {
    fn default() -> Self {
        Self([36, 36, 6, 6, 8, 8])
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut weights = [0; 6];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=weight"))?;
            let slot = ACTIONS
                .iter()
                .position(|(_, n)| *n == name.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown action {name:?}: expected rest, ws, join, leave, reconnect or read"
                    )
                })?;
            weights[slot] = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
        }
        if weights.iter().all(|&w| w == 0) {
            return Err("at least one action needs a weight above 0".to_string());
        }
        Ok(Self(weights))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = ACTIONS
            .iter()
            .zip(self.0)
            .filter(|(_, w)| *w > 0)
            .map(|((_, name), w)| format!("{name}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Mix {
    pub(super) fn pick(&self, rng: &mut impl Rng) -> Action {
        let total: u32 = self.0.iter().sum();
        let mut roll = rng.random_range(0..total);
        for ((action, _), weight) in ACTIONS.iter().zip(self.0) {
            if roll < weight {
                return *action;
            }
            roll -= weight;
        }
        unreachable!("the roll is below the total weight")
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn mixes_parse_print_and_pick_only_weighted_actions() {
        let mix: Mix = "rest=36,ws=36,join=6,leave=6,reconnect=8,read=8"
            .parse()
            .unwrap();
        assert_eq!(mix, Mix::default());
        assert_eq!(
            mix.to_string(),
            "rest=36,ws=36,join=6,leave=6,reconnect=8,read=8"
        );
        // The mix before reads existed still parses, with no reads.
        let old: Mix = "rest=40,ws=40,join=6,leave=6,reconnect=8".parse().unwrap();
        assert_eq!(old.to_string(), "rest=40,ws=40,join=6,leave=6,reconnect=8");
        let only_reads: Mix = "read=3".parse().unwrap();
        assert!((0..100).all(|_| only_reads.pick(&mut StdRng::seed_from_u64(1)) == Action::Read));
        let only_joins: Mix = "join=1, rest=0".parse().unwrap();
        assert_eq!(only_joins.to_string(), "join=1");
        let mut rng = StdRng::seed_from_u64(7);
        assert!((0..100).all(|_| only_joins.pick(&mut rng) == Action::Join));
        let picks: Vec<Action> = (0..1000).map(|_| mix.pick(&mut rng)).collect();
        for (action, _) in ACTIONS {
            assert!(picks.contains(&action), "{action:?}");
        }
        for bad in ["", "rest=0", "talk=3", "rest", "rest=-1", "rest=x"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad}");
        }
    }
}
