//! The metric families a node registers, in groups, each with its help text and buckets.
//! The labelled children of store operations, refusals and 503s are made here, up front, so
//! recording one is an atomic add or a histogram observation (prometheus-client takes the
//! histogram's own, uncontended lock), never a lookup; requests and closes look theirs up.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

use super::store::{Op, StoreProbe};
use super::{Shed, TransportProbe};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) route: &'static str,
    pub(super) method: &'static str,
    pub(super) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabels {
    pub(super) route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CloseLabels {
    /// The close code this node sent, `peer` when the client closed first, or `none` when
    /// the peer was dropped without a close frame.
    pub(super) code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LimitLabels {
    pub(super) limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// Registers `metric` under `name` and hands it back (metrics are shared handles).
pub(super) fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

pub(super) struct Http {
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) durations: Family<RouteLabels, Histogram>,
    pub(super) messages_stored: Counter,
}

impl Http {
    pub(super) fn register(r: &mut Registry) -> Self {
        // 1 ms to ~16 s.
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        Self {
            requests: registered(
                r,
                "http_requests",
                "HTTP requests answered, by route template, method and status",
                Family::default(),
            ),
            durations: registered(
                r,
                "http_request_duration_seconds",
                "Time from a request's head to its answer, by route template",
                durations,
            ),
            messages_stored: registered(
                r,
                "messages_stored",
                "Messages stored by this node (REST and WebSocket sends)",
                Counter::default(),
            ),
        }
    }
}

pub(super) struct Sockets {
    pub(super) open: Gauge,
    pub(super) closes: Family<CloseLabels, Counter>,
    pub(super) frames: Counter,
    pub(super) delivery_latency: Histogram,
    pub(super) writes: Histogram,
}

impl Sockets {
    pub(super) fn register(r: &mut Registry) -> Self {
        Self {
            open: registered(
                r,
                "websocket_connections",
                "WebSockets open on this node",
                Gauge::default(),
            ),
            closes: registered(
                r,
                "websocket_closes",
                "WebSockets ended, by the close code this node sent (peer: the client closed first; none: dropped)",
                Family::default(),
            ),
            frames: registered(
                r,
                "frames_delivered",
                "Frames written to this node's WebSockets (messages, notices, receipts, signals)",
                Counter::default(),
            ),
            // 0.5 ms to ~8 s.
            delivery_latency: registered(
                r,
                "delivery_latency_seconds",
                "From a message's storing (its timestamp) to its hand-over to this node's sockets",
                Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            ),
            // 10 us to ~1.3 s: most writes go straight into the socket buffer.
            writes: registered(
                r,
                "websocket_write_duration_seconds",
                "Time to write and flush one batch of frames to a WebSocket (usually one frame; a burst is one batch)",
                Histogram::new(exponential_buckets(0.00001, 2.0, 18)),
            ),
        }
    }
}

/// Read at each scrape rather than counted.
pub(super) struct Backlog {
    pub(super) transport_up: Gauge,
    pub(super) relay_lease: Gauge,
    pub(super) outbox_rows: Gauge,
    pub(super) outbox_age: Gauge<f64, AtomicU64>,
    pub(super) queue_depth: Gauge,
}

impl Backlog {
    pub(super) fn register(r: &mut Registry) -> Self {
        Self {
            transport_up: registered(
                r,
                "transport_up",
                "1 while the transport can carry events, else 0",
                Gauge::default(),
            ),
            relay_lease: registered(
                r,
                "relay_lease_held",
                "1 while this node's relay holds the lease (publishes the outbox), else 0",
                Gauge::default(),
            ),
            outbox_rows: registered(
                r,
                "outbox_events",
                "Events stored and not yet published by a relay (every node sharing the database)",
                Gauge::default(),
            ),
            outbox_age: registered(
                r,
                "outbox_oldest_age_seconds",
                "Age of the oldest event waiting in the outbox, 0 when it is empty",
                Gauge::default(),
            ),
            queue_depth: registered(
                r,
                "store_queue_depth",
                "Store operations waiting: SQLite writes queued for the writer thread (bound: --max-queued-writes), PostgreSQL requests waiting for a pooled connection",
                Gauge::default(),
            ),
        }
    }
}

/// What was refused: rate limits by limit, 503s by cause.
pub(super) struct Refusals {
    pub(super) limits: Family<LimitLabels, Counter>,
    pub(super) shed: [Counter; Shed::ALL.len()],
}

impl Refusals {
    pub(super) fn register(r: &mut Registry) -> Self {
        let limits = registered(
            r,
            "rate_limit_refusals",
            "Attempts refused by a rate limit (429, or a WebSocket error frame), by limit",
            Family::default(),
        );
        let shed: Family<CauseLabels, Counter> = registered(
            r,
            "load_shed",
            "Requests refused with 503 to keep memory and latency bounded, by cause: inflight (--max-inflight-requests), sockets (--max-connections), write_queue (--max-queued-writes, SQLite), hash_queue (--hash-queue)",
            Family::default(),
        );
        let shed = Shed::ALL.map(|cause| {
            let labels = CauseLabels {
                cause: cause.label(),
            };
            shed.get_or_create_owned(&labels)
        });
        Self { limits, shed }
    }
}

pub(super) fn transport(r: &mut Registry) -> TransportProbe {
    TransportProbe {
        reconnects: registered(
            r,
            "transport_reconnects",
            "Broker connections re-established after one was lost or failed (the memory transport never reconnects)",
            Counter::default(),
        ),
        // 0.1 ms to ~6.5 s.
        confirms: registered(
            r,
            "publish_confirm_duration_seconds",
            "From publishing a batch of events to the broker's confirm (amqp091) or settlement (amqp10) of all of them; the memory transport has no broker and records none",
            Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
        ),
    }
}

pub(super) fn store(r: &mut Registry, write_queue_full: Counter) -> StoreProbe {
    // 50 us to ~6.5 s.
    let ops = registered(
        r,
        "store_operation_duration_seconds",
        "Time a store call took, by kind of operation, on either backend (waiting for the writer or a connection included)",
        Family::<OpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 18))
        }),
    );
    let ops = Op::ALL.map(|op| ops.get_or_create_owned(&OpLabels { op: op.label() }));
    StoreProbe {
        ops: Arc::new(ops),
        write_queue_full,
    }
}
