//! Abuse limits: login and register attempts per client address and per email, sends per user
//! (REST and WebSocket share one budget), WebSocket connections per user, open sockets per
//! user, `catch_up` and typing frames per user and chatrooms created per user. Each rate is a GCRA bucket from `governor`; `--rate-limits off` turns every one off.
//!
//! Limits are per node: several nodes behind a balancer each allow the full rate.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{ArgAction, Args};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often keys whose bucket is full again are forgotten, so memory follows recent traffic.
const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// Retry-After for a user at the open-socket cap: no bucket says when a socket will close.
const SOCKETS_RETRY_AFTER: Duration = Duration::from_secs(10);

const DEFAULT_LOGIN_IP: &str = "10/min";
const DEFAULT_LOGIN_EMAIL: &str = "5/min";
const DEFAULT_REGISTER_IP: &str = "20/h";
const DEFAULT_REGISTER_EMAIL: &str = "5/h";
const DEFAULT_SEND: &str = "60/3s";
const DEFAULT_WS_CONNECT: &str = "30/min";
const DEFAULT_CATCH_UP: &str = "10/min";
const DEFAULT_TYPING: &str = "30/min";
const DEFAULT_ROOM_CREATE: &str = "10/min";
const DEFAULT_LOOKUP: &str = "30/min";
const DEFAULT_SOCKETS_PER_USER: usize = 16;

/// The limits of `chatnode serve`, flattened into [`crate::Config`].
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LimitConfig {
    /// `on` or `off`: every rate limit, the open-socket cap and the connections-per-address cap (`off` for benchmarks and test harnesses).
    #[arg(long = "rate-limits", env = "CHATNODE_RATE_LIMITS", value_name = "on|off", default_value = "on",
          value_parser = parse_switch, action = ArgAction::Set)]
    pub enabled: bool,

    /// Login attempts per client address (IPv6: per /64), as `<count>/<period>`.
    #[arg(long = "rate-limit-login-ip", env = "CHATNODE_RATE_LIMIT_LOGIN_IP", value_name = "RATE", default_value = DEFAULT_LOGIN_IP)]
    pub login_ip: Rate,

    /// Login attempts per email, from any address.
    #[arg(long = "rate-limit-login-email", env = "CHATNODE_RATE_LIMIT_LOGIN_EMAIL", value_name = "RATE", default_value = DEFAULT_LOGIN_EMAIL)]
    pub login_email: Rate,

    /// Registration attempts per client address (IPv6: per /64).
    #[arg(long = "rate-limit-register-ip", env = "CHATNODE_RATE_LIMIT_REGISTER_IP", value_name = "RATE", default_value = DEFAULT_REGISTER_IP)]
    pub register_ip: Rate,

    /// Registration attempts per email, from any address.
    #[arg(long = "rate-limit-register-email", env = "CHATNODE_RATE_LIMIT_REGISTER_EMAIL", value_name = "RATE", default_value = DEFAULT_REGISTER_EMAIL)]
    pub register_email: Rate,

    /// Messages per user, REST and WebSocket sends together.
    #[arg(long = "rate-limit-send", env = "CHATNODE_RATE_LIMIT_SEND", value_name = "RATE", default_value = DEFAULT_SEND)]
    pub send: Rate,

    /// WebSocket connection attempts per user.
    #[arg(long = "rate-limit-ws-connect", env = "CHATNODE_RATE_LIMIT_WS_CONNECT", value_name = "RATE", default_value = DEFAULT_WS_CONNECT)]
    pub ws_connect: Rate,

    /// `catch_up` frames per user, over all their sockets (each replays a room's history).
    #[arg(long = "rate-limit-catch-up", env = "CHATNODE_RATE_LIMIT_CATCH_UP", value_name = "RATE", default_value = DEFAULT_CATCH_UP)]
    pub catch_up: Rate,
    /// `typing` and `typing_stop` frames per user, over all their sockets (a client repeats
    /// `typing` every 3 s while its user types).
    #[arg(long = "rate-limit-typing", env = "CHATNODE_RATE_LIMIT_TYPING", value_name = "RATE", default_value = DEFAULT_TYPING)]
    pub typing: Rate,
    /// Chatrooms created per user (each may add other users as members without asking them).
    #[arg(long = "rate-limit-room-create", env = "CHATNODE_RATE_LIMIT_ROOM_CREATE", value_name = "RATE", default_value = DEFAULT_ROOM_CREATE)]
    pub room_create: Rate,

    /// People looked up by email or phone number per user (exact matches only; this bounds
    /// how fast an account can probe which addresses are registered).
    #[arg(long = "rate-limit-lookup", env = "CHATNODE_RATE_LIMIT_LOOKUP", value_name = "RATE", default_value = DEFAULT_LOOKUP)]
    pub lookup: Rate,

    /// Open WebSockets per user, over all rooms.
    #[arg(long = "max-sockets-per-user", env = "CHATNODE_MAX_SOCKETS_PER_USER", value_name = "N", default_value_t = DEFAULT_SOCKETS_PER_USER)]
    pub sockets_per_user: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        let rate = |s: &str| s.parse().expect("default rates parse");
        Self {
            enabled: true,
            login_ip: rate(DEFAULT_LOGIN_IP),
            login_email: rate(DEFAULT_LOGIN_EMAIL),
            register_ip: rate(DEFAULT_REGISTER_IP),
            register_email: rate(DEFAULT_REGISTER_EMAIL),
            send: rate(DEFAULT_SEND),
            ws_connect: rate(DEFAULT_WS_CONNECT),
            catch_up: rate(DEFAULT_CATCH_UP),
            typing: rate(DEFAULT_TYPING),
            room_create: rate(DEFAULT_ROOM_CREATE),
            lookup: rate(DEFAULT_LOOKUP),
            sockets_per_user: DEFAULT_SOCKETS_PER_USER,
        }
    }
}

fn parse_switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected `on` or `off`, got {value:?}")),
    }
}

/// `count` actions per `per`: a burst of `count`, refilled evenly over `per`.
/// Written `<count>/<period>`, the period an optional number and a unit: `10/min`, `60/3s`, `5/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid rate {text:?}: expected <count>/<period>, e.g. 10/min, 60/3s or 5/h")
        };
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let unit_at = period
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period.len());
        let (times, unit) = period.split_at(unit_at);
        let times: u64 = match times {
            "" => 1,
            digits => digits.parse().map_err(|_| bad())?,
        };
        let unit_secs = match unit {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(bad()),
        };
        let secs = times
            .checked_mul(unit_secs)
            .filter(|s| *s > 0)
            .ok_or_else(bad)?;
        Ok(Self {
            count,
            per: Duration::from_secs(secs),
        })
    }
}

impl Rate {
    fn quota(self) -> Quota {
        let every = (self.per / self.count.get()).max(Duration::from_nanos(1));
        Quota::with_period(every)
            .expect("a non-zero period")
            .allow_burst(self.count)
    }
}

/// Why an action was refused; the HTTP layer answers 429 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("{what}; try again in {} s", whole_seconds(*.retry_after))]
    TooFast {
        what: &'static str,
        retry_after: Duration,
    },
    #[error("You have {max} WebSockets open, the most allowed; close one first")]
    TooManySockets { max: usize },
}

impl LimitError {
    /// Whole seconds to wait, rounded up and at least 1, for a `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        whole_seconds(match self {
            Self::TooFast { retry_after, .. } => *retry_after,
            Self::TooManySockets { .. } => SOCKETS_RETRY_AFTER,
        })
    }
}

fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// One rate per key, and the count of attempts it refused.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    what: &'static str,
    refused: Counter,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(rate: Rate, what: &'static str, refused: Counter) -> Self {
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(rate.quota()),
            what,
            refused,
        }
    }

    fn check(&self, key: &K) -> Result<(), LimitError> {
        self.limiter.check_key(key).map_err(|not_until| {
            self.refused.inc();
            let retry_after = not_until.wait_time_from(self.limiter.clock().now());
            LimitError::TooFast {
                what: self.what,
                retry_after,
            }
        })
    }

    /// Forgets keys whose bucket is full again: they behave exactly like unseen keys.
    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

struct Enforced {
    login_ip: Keyed<IpAddr>,
    login_email: Keyed<u64>,
    register_ip: Keyed<IpAddr>,
    register_email: Keyed<u64>,
    send: Keyed<i64>,
    ws_connect: Keyed<i64>,
    catch_up: Keyed<i64>,
    typing: Keyed<i64>,
    room_create: Keyed<i64>,
    lookup: Keyed<i64>,
    sockets_per_user: usize,
    sockets_refused: Counter,
    /// Open sockets per user; a user leaves the map with their last socket.
    sockets: Mutex<HashMap<i64, usize>>,
    /// Emails are keyed by a keyed hash: fixed-size keys whatever a client sends.
    emails: RandomState,
}

/// Every limit of a node, built once from its configuration and shared by all handlers.
pub struct Limits {
    enforced: Option<Enforced>,
}

impl Limits {
    /// The limits of `config`; each counts its refusals in `metrics` under its name.
    pub fn new(config: &LimitConfig, metrics: &Metrics) -> Arc<Self> {
        let counted = |limit| metrics.limit_refusals(limit);
        let enforced = config.enabled.then(|| Enforced {
            login_ip: Keyed::new(
                config.login_ip,
                "Too many login attempts from your address",
                counted("login_ip"),
            ),
            login_email: Keyed::new(
                config.login_email,
                "Too many login attempts for this email",
                counted("login_email"),
            ),
            register_ip: Keyed::new(
                config.register_ip,
                "Too many registration attempts from your address",
                counted("register_ip"),
            ),
            register_email: Keyed::new(
                config.register_email,
                "Too many registration attempts for this email",
                counted("register_email"),
            ),
            send: Keyed::new(config.send, "Too many messages", counted("send")),
            ws_connect: Keyed::new(
                config.ws_connect,
                "Too many WebSocket connection attempts",
                counted("ws_connect"),
            ),
            catch_up: Keyed::new(
                config.catch_up,
                "Too many catch-up requests",
                counted("catch_up"),
            ),
            typing: Keyed::new(config.typing, "Too many typing notices", counted("typing")),
            room_create: Keyed::new(
                config.room_create,
                "Too many chatrooms created",
                counted("room_create"),
            ),
            lookup: Keyed::new(
                config.lookup,
                "Too many people looked up",
                counted("lookup"),
            ),
            sockets_per_user: config.sockets_per_user,
            sockets_refused: counted("sockets_per_user"),
            sockets: Mutex::new(HashMap::new()),
            emails: RandomState::new(),
        });
        Arc::new(Self { enforced })
    }

    pub fn enabled(&self) -> bool {
        self.enforced.is_some()
    }

    /// A login attempt from `client` (checked before the body is read).
    pub fn login_from(&self, client: Option<SocketAddr>) -> Result<(), LimitError> {
        self.by_client(client, |e| &e.login_ip)
    }

    /// A login attempt for `email`, from any address.
    pub fn login_for(&self, email: &str) -> Result<(), LimitError> {
        self.by_email(email, |e| &e.login_email)
    }

    pub fn register_from(&self, client: Option<SocketAddr>) -> Result<(), LimitError> {
        self.by_client(client, |e| &e.register_ip)
    }

    pub fn register_for(&self, email: &str) -> Result<(), LimitError> {
        self.by_email(email, |e| &e.register_email)
    }

    /// One message sent by `user`, over REST or a WebSocket.
    pub fn send(&self, user: i64) -> Result<(), LimitError> {
        match &self.enforced {
            Some(e) => e.send.check(&user),
            None => Ok(()),
        }
    }

    /// One `catch_up` frame from `user`, on any of their sockets.
    pub fn catch_up(&self, user: i64) -> Result<(), LimitError> {
        match &self.enforced {
            Some(e) => e.catch_up.check(&user),
            None => Ok(()),
        }
    }

    /// One `typing` or `typing_stop` frame from `user`, on any of their sockets.
    pub fn typing(&self, user: i64) -> Result<(), LimitError> {
        match &self.enforced {
            Some(e) => e.typing.check(&user),
            None => Ok(()),
        }
    }

    /// One chatroom created by `user`.
    pub fn create_room(&self, user: i64) -> Result<(), LimitError> {
        match &self.enforced {
            Some(e) => e.room_create.check(&user),
            None => Ok(()),
        }
    }

    /// One person looked up by `user`.
    pub fn lookup(&self, user: i64) -> Result<(), LimitError> {
        match &self.enforced {
            Some(e) => e.lookup.check(&user),
            None => Ok(()),
        }
    }

    /// A WebSocket connection attempt by `user`; the slot counts the socket while it is held.
    pub fn open_socket(self: &Arc<Self>, user: i64) -> Result<SocketSlot, LimitError> {
        let Some(e) = &self.enforced else {
            return Ok(SocketSlot { held: None });
        };
        e.ws_connect.check(&user)?;
        let mut sockets = e.sockets.lock().expect("socket counts poisoned");
        let open = sockets.entry(user).or_insert(0);
        if *open >= e.sockets_per_user {
            e.sockets_refused.inc();
            return Err(LimitError::TooManySockets {
                max: e.sockets_per_user,
            });
        }
        *open += 1;
        Ok(SocketSlot {
            held: Some((self.clone(), user)),
        })
    }

    /// Forgets idle keys every [`PRUNE_EVERY`] until `shutdown` fires.
    pub async fn prune_until(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(e) = &self.enforced else { return };
        let mut ticks = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    e.login_ip.prune();
                    e.login_email.prune();
                    e.register_ip.prune();
                    e.register_email.prune();
                    e.send.prune();
                    e.ws_connect.prune();
                    e.catch_up.prune();
                    e.typing.prune();
                    e.room_create.prune();
                    e.lookup.prune();
                }
            }
        }
    }

    fn by_client(
        &self,
        client: Option<SocketAddr>,
        limit: impl Fn(&Enforced) -> &Keyed<IpAddr>,
    ) -> Result<(), LimitError> {
        match (&self.enforced, client) {
            (Some(e), Some(client)) => limit(e).check(&client_key(client.ip())),
            _ => Ok(()),
        }
    }

    fn by_email(
        &self,
        email: &str,
        limit: impl Fn(&Enforced) -> &Keyed<u64>,
    ) -> Result<(), LimitError> {
        match &self.enforced {
            Some(e) => limit(e).check(&e.emails.hash_one(email.trim().to_lowercase())),
            None => Ok(()),
        }
    }
}

/// One client address for limiting: IPv4 as is (also when IPv4-mapped), IPv6 by its /64,
/// the block one host usually gets, so rotating addresses inside it does not reset a limit.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        },
        v4 => v4,
    }
}

/// A counted open socket of one user; dropping it frees the place.
pub struct SocketSlot {
    held: Option<(Arc<Limits>, i64)>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let Some((limits, user)) = self.held.take() else {
            return;
        };
        if let Some(e) = &limits.enforced {
            let mut sockets = e.sockets.lock().expect("socket counts poisoned");
            if let Some(open) = sockets.get_mut(&user) {
                *open -= 1;
                if *open == 0 {
                    sockets.remove(&user);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitConfig,
    }

    #[test]
    fn rates_are_spelled_count_slash_period() {
        let rate = |s: &str| s.parse::<Rate>();
        let per = |count: u32, secs: u64| Rate {
            count: NonZeroU32::new(count).unwrap(),
            per: Duration::from_secs(secs),
        };
        assert_eq!(rate("10/min"), Ok(per(10, 60)));
        assert_eq!(rate("60/3s"), Ok(per(60, 3)));
        assert_eq!(rate(" 5 / h "), Ok(per(5, 3600)));
        assert_eq!(rate("1/2day"), Ok(per(1, 172_800)));
        for bad in [
            "", "10", "0/min", "10/", "10/0s", "10/week", "-1/s", "x/s", "10/m5",
        ] {
            assert!(rate(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_flag_defaults_are_the_config_defaults() {
        let parsed = Cli::try_parse_from(["chatnode"]).unwrap().limits;
        assert_eq!(parsed, LimitConfig::default());
        let off = Cli::try_parse_from(["chatnode", "--rate-limits", "off"]).unwrap();
        assert!(!off.limits.enabled);
        assert!(Cli::try_parse_from(["chatnode", "--rate-limits", "maybe"]).is_err());
    }

    fn limited(config: LimitConfig) -> Arc<Limits> {
        Limits::new(&config, &Metrics::new(false))
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_block_and_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff::9")),
            client_key(ip("2001:db8:1:2::7"))
        );
        assert_ne!(client_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_the_wait_and_keys_are_separate() {
        let limits = limited(LimitConfig {
            send: "2/h".parse().unwrap(),
            ..LimitConfig::default()
        });
        assert!(limits.send(1).is_ok() && limits.send(1).is_ok());
        let refused = limits.send(1).unwrap_err();
        // One message comes back every 30 minutes.
        let wait = refused.retry_after_secs();
        assert!((1790..=1800).contains(&wait), "{wait}");
        assert!(limits.send(2).is_ok());
    }

    #[test]
    fn emails_share_a_bucket_whatever_their_case() {
        let limits = limited(LimitConfig {
            login_email: "1/h".parse().unwrap(),
            ..LimitConfig::default()
        });
        assert!(limits.login_for("Alice@Example.com").is_ok());
        assert!(limits.login_for(" alice@example.com").is_err());
        assert!(limits.login_for("bob@example.com").is_ok());
    }

    #[test]
    fn socket_slots_are_capped_per_user_and_freed_on_drop() {
        let limits = limited(LimitConfig {
            sockets_per_user: 2,
            ..LimitConfig::default()
        });
        let first = limits.open_socket(7).unwrap();
        let _second = limits.open_socket(7).unwrap();
        assert!(matches!(
            limits.open_socket(7),
            Err(LimitError::TooManySockets { max: 2 })
        ));
        assert!(limits.open_socket(8).is_ok());
        drop(first);
        assert!(limits.open_socket(7).is_ok());
    }

    #[test]
    fn off_allows_everything() {
        let limits = limited(LimitConfig {
            enabled: false,
            send: "1/h".parse().unwrap(),
            catch_up: "1/h".parse().unwrap(),
            sockets_per_user: 1,
            ..LimitConfig::default()
        });
        assert!(!limits.enabled());
        let _slots: Vec<_> = (0..5).map(|_| limits.open_socket(1).unwrap()).collect();
        for _ in 0..5 {
            assert!(limits.send(1).is_ok());
            assert!(limits.catch_up(1).is_ok());
            assert!(limits.login_from(Some(([127, 0, 0, 1], 9).into())).is_ok());
        }
    }
}
