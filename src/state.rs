//! What every handler and background task shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::hasher::Hasher;
use crate::auth::media_url::MediaUrls;
use crate::auth::Tokens;
use crate::config::Config;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::receipts::Receipts;
use crate::signals::{Presence, Typing};
use crate::store::Store;
use crate::transport::Transport;

pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub transport: Arc<dyn Transport>,
    pub hub: Arc<Hub>,
    pub tokens: Tokens,
    /// Mints and checks the capability URLs of attachments.
    pub media_urls: MediaUrls,
    /// The bounded password-hashing pool.
    pub hasher: Hasher,
    pub limits: Arc<Limits>,
    /// Delivered and read marks waiting to be stored together.
    pub receipts: Arc<Receipts>,
    /// What `/metrics` reports (a fixed set of series: no ids as labels).
    pub metrics: Metrics,
    /// Who is typing in the rooms this node serves (bounded: `signals::typing::MAX_TYPING`).
    pub typing: Typing,
    /// This node's sockets per user, for presence (bounded by the open sockets).
    pub presence: Arc<Presence>,
    /// Fires when the node starts shutting down; socket tasks watch it.
    pub shutdown: CancellationToken,
    /// Tracks socket and background tasks so shutdown can wait for them.
    pub tasks: TaskTracker,
    subscriber_up: AtomicBool,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
        tokens: Tokens,
        hasher: Hasher,
        shutdown: CancellationToken,
    ) -> Self {
        let hub = Arc::new(Hub::new(transport.clone()));
        let media_urls = MediaUrls::new(&tokens, config.media_url_ttl_secs);
        let metrics = Metrics::new(config.metrics_listen.is_some());
        let store = metrics.timed(store);
        metrics.probe(transport.as_ref());
        Self {
            limits: Limits::new(&config.limits, &metrics),
            receipts: Arc::new(Receipts::new(hub.clone())),
            typing: Typing::default(),
            presence: Arc::default(),
            metrics,
            config,
            store,
            hub,
            transport,
            media_urls,
            tokens,
            hasher,
            shutdown,
            tasks: TaskTracker::new(),
            subscriber_up: AtomicBool::new(false),
        }
    }

    pub fn set_subscriber_up(&self, up: bool) {
        self.subscriber_up.store(up, Ordering::Relaxed);
    }

    pub fn subscriber_up(&self) -> bool {
        self.subscriber_up.load(Ordering::Relaxed)
    }
}
