//! Node configuration: flags, `CHATNODE_*` environment variables and an optional `.env`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Everything `chatnode serve` needs. Tests build it with `Config::new` and override fields.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "CHATNODE_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Address to serve Prometheus metrics (`/metrics`) on, apart from the API; off unless
    /// given (port 0 picks a free port, logged).
    #[arg(long, env = "CHATNODE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Directory for the SQLite database and uploaded media.
    #[arg(long, env = "CHATNODE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://<path>`, or `postgres://<user>@<host>/<database>` in builds with
    /// the `postgres` feature; default `sqlite://<data-dir>/chatnode.db`.
    #[arg(long, env = "CHATNODE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// HS256 signing secrets for JWTs, comma-separated, newest first: the first signs, every
    /// one verifies (rotation). When absent, the first node generates one into the database
    /// and every node sharing it uses that.
    #[arg(long, env = "CHATNODE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Fan-out transport between this node's handlers and its sockets.
    #[arg(long, env = "CHATNODE_TRANSPORT", value_enum, default_value_t = TransportKind::Memory)]
    pub transport: TransportKind,

    /// Broker URL for broker transports (unused by `memory`); for `amqp091` and `amqp10` the
    /// default is `amqp://guest:guest@127.0.0.1:5672/%2f`.
    #[arg(long, env = "CHATNODE_BROKER_URL", hide_env_values = true)]
    pub broker_url: Option<String>,

    /// Broker exchange that carries room events between nodes.
    #[arg(long, env = "CHATNODE_EXCHANGE", default_value = "chatnode")]
    pub exchange: String,

    /// RabbitMQ address format for `amqp10`: `v1` (`/exchange/..`, RabbitMQ 3.x), `v2`
    /// (`/exchanges/..`, RabbitMQ 4.x) or `auto` (from the version the broker announces).
    #[arg(long, env = "CHATNODE_AMQP10_ADDRESSING", value_enum, default_value_t = Amqp10Addressing::Auto)]
    pub amqp10_addressing: Amqp10Addressing,

    /// This node's name on the broker and in logs; default (empty): an id generated once
    /// into the data directory and reused by later starts (nodes sharing a data directory
    /// each get their own).
    #[arg(
        long,
        env = "CHATNODE_NODE_ID",
        default_value = "",
        hide_default_value = true
    )]
    pub node_id: String,

    /// Largest accepted attachment, in bytes.
    #[arg(long, env = "CHATNODE_MAX_UPLOAD_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Seconds an attachment URL in an answer or a frame stays valid without credentials.
    #[arg(
        long = "media-url-ttl",
        env = "CHATNODE_MEDIA_URL_TTL",
        value_name = "SECS",
        default_value_t = 3600
    )]
    pub media_url_ttl_secs: u64,

    /// Seconds a room's event log keeps an event for replay (`after_seq`); a position older
    /// than that is answered with a reset. Messages themselves stay in history.
    #[arg(
        long = "event-retention",
        env = "CHATNODE_EVENT_RETENTION",
        value_name = "SECS",
        default_value_t = 30 * 24 * 3600,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub event_retention_secs: u64,

    /// Seconds after sending that its sender may edit a message (WhatsApp's 15 minutes).
    #[arg(long = "edit-window", env = "CHATNODE_EDIT_WINDOW", value_name = "SECS", default_value_t = 15 * 60)]
    pub edit_window_secs: u32,

    /// Seconds after sending that its sender may delete a message for everyone (the room's
    /// admin may at any time).
    #[arg(long = "delete-window", env = "CHATNODE_DELETE_WINDOW", value_name = "SECS", default_value_t = 2 * 24 * 3600)]
    pub delete_window_secs: u32,

    /// Log format.
    #[arg(long, env = "CHATNODE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Most members a room may have.
    #[arg(long, env = "CHATNODE_MAX_ROOM_MEMBERS", default_value_t = 1024)]
    pub max_room_members: usize,

    /// Rooms with more members than this are told how many members are online (one
    /// `online_count` frame per presence batch) instead of who came or went (a `presence` frame
    /// per member): a burst of arrivals in a big room then costs each socket a few frames, not
    /// one per arrival.
    #[arg(
        long,
        env = "CHATNODE_PRESENCE_ROOM_LIMIT",
        default_value_t = 256,
        value_parser = clap::value_parser!(i64).range(0..)
    )]
    pub presence_room_limit: i64,

    /// Seconds between WebSocket pings; a peer silent for two intervals is dropped.
    #[arg(long, env = "CHATNODE_WS_PING_SECS", default_value_t = 30)]
    pub ws_ping_secs: u64,

    /// Frames queued per socket before a slow reader is disconnected.
    #[arg(long, env = "CHATNODE_WS_QUEUE", default_value_t = 1024)]
    pub ws_queue: usize,

    #[command(flatten)]
    pub limits: crate::limits::LimitConfig,

    #[command(flatten)]
    pub hashing: crate::auth::hasher::HashConfig,

    /// Most WebSockets open at once; beyond it an upgrade is answered 503 with `Retry-After`.
    #[arg(long, env = "CHATNODE_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,

    /// Most HTTP connections open at once (an upgraded WebSocket counts under
    /// `--max-connections` instead); beyond it a new connection is answered 503 and closed.
    #[arg(long, env = "CHATNODE_MAX_HTTP_CONNECTIONS", default_value_t = 10_000)]
    pub max_http_connections: usize,

    /// Most HTTP connections open at once from one client address (IPv6: per /64); beyond
    /// it a new connection from there is answered 503 and closed.
    #[arg(
        long,
        env = "CHATNODE_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub max_connections_per_address: usize,

    /// Seconds a connection may take to send a complete request head, counted from when it
    /// is accepted or from its previous response; then it is closed.
    #[arg(
        long = "header-read-timeout",
        env = "CHATNODE_HEADER_READ_TIMEOUT",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub header_read_timeout_secs: u64,

    /// Most HTTP requests handled at once; beyond it a request is answered 503 with
    /// `Retry-After` instead of queueing (`/healthz` and `/readyz` are never refused).
    #[arg(long, env = "CHATNODE_MAX_INFLIGHT_REQUESTS", default_value_t = 1024)]
    pub max_inflight_requests: usize,

    /// Seconds a drain (`chatnode admin node drain`, SIGUSR1) keeps serving REST with
    /// `/readyz` failing, so a load balancer sees the node leave before it stops; a second
    /// SIGUSR1, SIGTERM or Ctrl-C stops it sooner.
    #[arg(
        long = "drain-grace",
        env = "CHATNODE_DRAIN_GRACE",
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    pub drain_grace_secs: u64,

    /// SQLite writes waiting for the writer thread; beyond it a write is answered 503.
    #[arg(long, env = "CHATNODE_MAX_QUEUED_WRITES", default_value_t = crate::store::DEFAULT_MAX_QUEUED_WRITES)]
    pub max_queued_writes: usize,

    /// Browser origins allowed to call the API (CORS), comma-separated, e.g.
    /// `https://app.example.com`; none by default.
    #[arg(long, env = "CHATNODE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// In-process bus: one node, nothing external.
    Memory,
    /// AMQP 0-9-1 broker (RabbitMQ): many nodes share one exchange.
    #[value(name = "amqp091")]
    Amqp091,
    /// AMQP 1.0 broker (RabbitMQ 3.x with its AMQP 1.0 plugin, or 4.x): same exchange and
    /// message format as `amqp091`, so nodes of both kinds can share it.
    #[value(name = "amqp10")]
    Amqp10,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Amqp10Addressing {
    Auto,
    V1,
    V2,
}

/// Broker URL used by the AMQP transports when none is configured.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub(crate) fn random_node_id() -> String {
    format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

impl Config {
    /// Defaults for a node keeping its files in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            metrics_listen: None,
            data_dir: data_dir.into(),
            database_url: None,
            jwt_secret: None,
            transport: TransportKind::Memory,
            broker_url: None,
            exchange: "chatnode".into(),
            amqp10_addressing: Amqp10Addressing::Auto,
            node_id: random_node_id(),
            max_upload_bytes: 25 * 1024 * 1024,
            media_url_ttl_secs: 3600,
            event_retention_secs: 30 * 24 * 3600,
            edit_window_secs: 15 * 60,
            delete_window_secs: 2 * 24 * 3600,
            log_format: LogFormat::Human,
            max_room_members: 1024,
            presence_room_limit: 256,
            ws_ping_secs: 30,
            ws_queue: 1024,
            limits: crate::limits::LimitConfig::default(),
            hashing: crate::auth::hasher::HashConfig::default(),
            max_connections: 20_000,
            max_http_connections: 10_000,
            max_connections_per_address: 256,
            header_read_timeout_secs: 30,
            max_inflight_requests: 1024,
            max_queued_writes: crate::store::DEFAULT_MAX_QUEUED_WRITES,
            drain_grace_secs: 10,
            cors_origins: Vec::new(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("chatnode.db").display()))
    }

    /// The broker URL for AMQP transports: the configured one or a local RabbitMQ.
    pub fn amqp_url(&self) -> String {
        self.broker_url
            .clone()
            .unwrap_or_else(|| DEFAULT_AMQP_URL.to_string())
    }

    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media")
    }

    pub fn ws_ping_interval(&self) -> Duration {
        Duration::from_secs(self.ws_ping_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp091_is_spelled_as_documented_and_has_broker_defaults() {
        assert_eq!(
            TransportKind::from_str("amqp091", false),
            Ok(TransportKind::Amqp091)
        );
        let config = Config::new("data");
        assert_eq!(config.amqp_url(), DEFAULT_AMQP_URL);
        assert_eq!(config.exchange, "chatnode");
        assert_ne!(config.node_id, Config::new("data").node_id);
    }

    #[test]
    fn amqp10_and_its_addressing_are_spelled_as_documented() {
        assert_eq!(
            TransportKind::from_str("amqp10", false),
            Ok(TransportKind::Amqp10)
        );
        for (name, addressing) in [
            ("auto", Amqp10Addressing::Auto),
            ("v1", Amqp10Addressing::V1),
            ("v2", Amqp10Addressing::V2),
        ] {
            assert_eq!(Amqp10Addressing::from_str(name, false), Ok(addressing));
        }
        assert_eq!(
            Config::new("data").amqp10_addressing,
            Amqp10Addressing::Auto
        );
    }

    #[test]
    fn bounds_and_cors_origins_parse_from_flags() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let cli = Cli::try_parse_from([
            "chatnode",
            "--cors-origins",
            "https://a.example,https://b.example:8443",
            "--max-connections",
            "10",
        ])
        .unwrap();
        assert_eq!(
            cli.config.cors_origins,
            ["https://a.example", "https://b.example:8443"]
        );
        assert_eq!(cli.config.max_connections, 10);
        let defaults = Config::new("data");
        let connections = Cli::try_parse_from([
            "chatnode",
            "--max-connections-per-address",
            "3",
            "--header-read-timeout",
            "5",
        ])
        .unwrap()
        .config;
        assert_eq!(
            (
                connections.max_connections_per_address,
                connections.header_read_timeout_secs
            ),
            (3, 5)
        );
        let parsed = Cli::try_parse_from(["chatnode"]).unwrap().config;
        assert_eq!(
            (
                parsed.max_connections_per_address,
                parsed.header_read_timeout_secs
            ),
            (
                defaults.max_connections_per_address,
                defaults.header_read_timeout_secs
            )
        );
        assert!(defaults.cors_origins.is_empty());
        assert_eq!(parsed.drain_grace_secs, defaults.drain_grace_secs);
        assert_eq!(
            (defaults.max_connections, defaults.max_inflight_requests),
            (20_000, 1024)
        );
    }

    #[test]
    fn drain_grace_takes_0_to_3600_seconds() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let grace = |value: &str| {
            Cli::try_parse_from(["chatnode".into(), format!("--drain-grace={value}")])
                .map(|c| c.config.drain_grace_secs)
        };
        assert_eq!(grace("0").unwrap(), 0);
        assert_eq!(grace("3600").unwrap(), 3600);
        for bad in ["3601", "-1", "soon"] {
            let error = grace(bad).unwrap_err().to_string();
            assert!(error.contains("--drain-grace"), "{bad}: {error}");
        }
        assert!(grace("3601").unwrap_err().to_string().contains("0..=3600"));
    }
}
