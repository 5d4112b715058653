//! Building and running a node: storage, transport, hub, subscriber and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::auth::hasher::Hasher;
use crate::auth::{AuthError, Tokens};
use crate::config::Config;
use crate::fanout::supervisor::supervise;
use crate::state::{AppState, SharedState};
use crate::store::{self, StoreError};
use crate::transport::TransportError;

/// Longest wait for sockets, background tasks and the outbox flush once the server has
/// stopped accepting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for the relay to publish the outbox once the server has stopped.
const OUTBOX_FLUSH: Duration = Duration::from_secs(4);
/// How often the flush looks whether the outbox is empty.
const OUTBOX_POLL: Duration = Duration::from_millis(25);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    /// `--metrics-listen`'s listener and the address it bound.
    metrics: Option<(TcpListener, SocketAddr)>,
    state: SharedState,
    /// Keeps this node's generated id reserved while it runs.
    claimed_id: Option<crate::node_id::ClaimedId>,
}

impl Application {
    /// Opens storage (applying migrations), sets up the transport and binds the listener.
    pub async fn build(mut config: Config) -> Result<Self, StartupError> {
        let data_dir = |source| StartupError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(config.media_dir()).map_err(data_dir)?;
        // First, so parameters below OWASP's floor stop the node before anything is opened.
        let hasher = Hasher::start(&config.hashing)?;
        let claimed_id = if config.node_id.is_empty() {
            let claimed = crate::node_id::claim(&config.data_dir).map_err(data_dir)?;
            config.node_id = claimed.id.clone();
            Some(claimed)
        } else {
            None
        };
        let store = store::open_bounded(&config.database_url(), config.max_queued_writes).await?;
        let tokens = Tokens::load(
            config.jwt_secret.as_deref(),
            &config.data_dir,
            store.as_ref(),
        )
        .await?;
        let transport = crate::transport::open(&config)?;
        let listener = bind(config.listen).map_err(|source| StartupError::Bind {
            addr: config.listen,
            source,
        })?;
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let failed = |source| StartupError::Bind { addr, source };
                let listener = bind(addr).map_err(failed)?;
                let bound = listener.local_addr().map_err(failed)?;
                Some((listener, bound))
            }
            None => None,
        };
        let state = Arc::new(AppState::new(
            config,
            store,
            transport,
            tokens,
            hasher,
            CancellationToken::new(),
        ));
        Ok(Self {
            listener,
            address,
            metrics,
            state,
            claimed_id,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where `/metrics` is served, when `--metrics-listen` asked for it.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, address)| *address)
    }

    /// Cancelling this token shuts the node down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// What a drain (`chatnode admin node drain`, SIGUSR1) calls. The first call closes the
    /// sockets with 1012, refuses new ones and fails `/readyz`, while REST keeps serving for
    /// `--drain-grace`; then the node shuts down as on SIGTERM. A second call ends the grace.
    pub fn drain_trigger(&self) -> impl FnMut() + Send + 'static {
        let (hub, shutdown) = (self.state.hub.clone(), self.state.shutdown.clone());
        let grace = Duration::from_secs(self.state.config.drain_grace_secs);
        move || {
            if hub.is_draining() {
                tracing::info!("drain signalled again: shutting down now");
                return shutdown.cancel();
            }
            let sockets = hub.drain();
            tracing::info!(
                sockets,
                grace_secs = grace.as_secs(),
                "draining: sockets closed with 1012, shutting down after the grace"
            );
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(grace) => shutdown.cancel(),
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    }

    /// Serves until the shutdown token fires, then closes sockets (1001) and waits briefly
    /// for in-flight work.
    pub async fn run(self) {
        let _claimed_id = self.claimed_id;
        let state = self.state;
        let subscriber_state = state.clone();
        supervise(
            "subscriber",
            &state.tasks,
            state.shutdown.clone(),
            move |token| crate::fanout::subscriber::run(subscriber_state.clone(), token),
        );
        let relay_state = state.clone();
        // Stopped after the server, once the outbox is published (see `flush_outbox`).
        let relay_stop = CancellationToken::new();
        supervise("relay", &state.tasks, relay_stop.clone(), move |token| {
            crate::fanout::relay::run(relay_state.clone(), token)
        });
        state
            .tasks
            .spawn(state.limits.clone().prune_until(state.shutdown.clone()));
        state.tasks.spawn(crate::signals::presence::run(
            state.clone(),
            state.shutdown.clone(),
        ));
        state
            .tasks
            .spawn(crate::retention::run(state.clone(), state.shutdown.clone()));
        state.tasks.spawn(crate::signals::expire_typing(
            state.clone(),
            state.shutdown.clone(),
        ));
        state.tasks.spawn(
            state
                .receipts
                .clone()
                .run(state.store.clone(), state.shutdown.clone()),
        );
        tracing::info!(
            address = %self.address,
            transport = ?state.config.transport,
            node = %state.config.node_id,
            rate_limits = state.limits.enabled(),
            database = %store::redact(&state.config.database_url()),
            "chatnode listening"
        );
        if let Some((listener, address)) = self.metrics {
            tracing::info!(%address, "metrics listening");
            state.tasks.spawn(crate::http::server::serve(
                listener,
                crate::http::metrics_routes(state.clone()),
                crate::http::server::ServerLimits::from_config(&state.config),
                state.shutdown.clone(),
            ));
        }
        let shutdown = state.shutdown.clone();
        crate::http::server::serve(
            self.listener,
            crate::http::routes(state.clone()),
            crate::http::server::ServerLimits::from_config(&state.config),
            shutdown,
        )
        .await;
        // One budget: the flush runs while sockets close and tasks end.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        flush_outbox(&state).await;
        relay_stop.cancel();
        state.tasks.close();
        if tokio::time::timeout_at(deadline, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks were still running at the end of the shutdown grace period");
        }
        tracing::info!("chatnode stopped");
    }
}

/// Gives the relay a bounded moment to publish what the requests just served committed, so a
/// stopping node leaves nothing it acknowledged waiting in the outbox for another relay.
/// Skipped when another node's relay publishes, or the transport is down: waiting is vain.
async fn flush_outbox(state: &SharedState) {
    if !state.metrics.relay_lease_is_held() || state.transport.health().is_err() {
        return;
    }
    let published = async {
        while state.store.outbox_depth().await.is_ok_and(|d| d.rows > 0) {
            tokio::time::sleep(OUTBOX_POLL).await;
        }
    };
    if tokio::time::timeout(OUTBOX_FLUSH, published).await.is_err() {
        tracing::warn!(
            "the outbox was not empty at the end of its flush; another relay publishes it"
        );
    }
}

/// Binds like `TcpListener::bind`, with TCP_NODELAY on the listening socket: Linux passes it
/// on to every accepted connection, so small
/// frames leave at once instead of waiting for the peer's delayed ACK.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
