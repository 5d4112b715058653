//! The accept loop: warp's routes served by hyper on connections accepted here, because
//! warp 0.4's own server can neither cap open connections nor bound how long a client may
//! take to send its headers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::Instrument;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

use super::request_id::{self, HEADER as REQUEST_ID};

/// Largest request head (request line and headers) buffered per connection; a bigger one
/// is answered 431 by hyper. hyper's own default is about 400 KB.
pub const MAX_REQUEST_HEAD_BYTES: usize = 32 * 1024;
/// How long a connection over the cap is kept to be told so.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections being refused at once; beyond it they are closed without an answer.
const MAX_REFUSING: usize = 256;

const OVER_CAPACITY_BODY: &str = r#"{"success":false,"errors":{"detail":"The server has too many connections open; try again shortly"}}"#;
const OVER_ADDRESS_CAP_BODY: &str = r#"{"success":false,"errors":{"detail":"Too many connections open from your address; close one and try again"}}"#;

/// The bounds the accept loop enforces, from the node's configuration.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Open HTTP connections in all.
    pub max_connections: usize,
    /// Open HTTP connections per client address (IPv6: per /64).
    pub max_per_address: usize,
    /// A connection that has not sent a complete request head this long after it was
    /// accepted, or after its previous response, is closed.
    pub header_read_timeout: Duration,
}

impl ServerLimits {
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            max_connections: config.max_http_connections,
            // An abuse limit like the rates: `--rate-limits off` (benchmarks sending from one
            // address over hundreds of connections) lifts it too.
            max_per_address: if config.limits.enabled {
                config.max_connections_per_address
            } else {
                usize::MAX
            },
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
        }
    }
}

/// Open connections per client address. An address leaves the map with its last
/// connection, so the map never holds more entries than there are open connections.
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip`, or `None` at the cap.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = crate::limits::client_key(ip);
        let mut open = self.open.lock().expect("connection counts poisoned");
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            key,
        })
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.open.lock().expect("connection counts poisoned").len()
    }
}

/// One counted connection of an address; dropping it frees the place.
struct AddressSlot {
    counts: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().expect("connection counts poisoned");
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The peer address of the connection a request came on.
#[derive(Clone, Copy, Debug)]
struct ClientAddr(SocketAddr);

/// The client's address (what `warp::addr::remote` gives under warp's own server).
pub fn client_address() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone
{
    warp::ext::optional::<ClientAddr>().map(|client: Option<ClientAddr>| client.map(|c| c.0))
}

/// Serves `routes` on `listener` within `limits` (an upgraded WebSocket leaves the HTTP
/// counts for `--max-connections`), until `shutdown` fires; then stops accepting and lets
/// open requests finish.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = PerAddress::new(limits.max_per_address);
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let places = per_address
            .take(peer.ip())
            .ok_or(OVER_ADDRESS_CAP_BODY)
            .and_then(|own| {
                let slot = slots.clone().try_acquire_owned();
                slot.map(|slot| (own, slot)).map_err(|_| OVER_CAPACITY_BODY)
            });
        let places = match places {
            Ok(places) => places,
            Err(body) => {
                if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream, body).await;
                        drop(refusal);
                    });
                }
                continue;
            }
        };
        let connection = serve_connection(stream, peer, routes.clone(), limits, graceful.watcher());
        tokio::spawn(async move {
            connection.await;
            drop(places);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One connection until it ends. hyper's header timeout starts only at the first byte of a
/// head (and hyper-util's version sniffing waits for bytes before that), so a client that
/// sends nothing is closed here: no complete head within the timeout of the accept.
/// hyper's own timer covers the idle time between requests on a kept-alive connection.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    routes: BoxedFilter<(Response,)>,
    limits: ServerLimits,
    watcher: Watcher,
) {
    let first_head = Arc::new(Notify::new());
    let seen = first_head.clone();
    let on_request = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        seen.notify_one();
        request.extensions_mut().insert(ClientAddr(peer));
        // The handlers and the access log see the id the answer carries, and every line
        // they log is in this request's span.
        let id = request_id::of(request.headers());
        let header = request_id::header_value(&id);
        request.headers_mut().insert(REQUEST_ID, header.clone());
        let span = tracing::info_span!("request", request_id = %id);
        // The room events the request causes carry its id too (RoomEvent::request_id).
        let answer = id.within(warp::service(routes.clone()).call(request));
        let answer = answer.instrument(span);
        async move {
            let mut response = answer.await?;
            response.headers_mut().insert(REQUEST_ID, header);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), on_request);
    let connection = watcher.watch(connection);
    let mut connection = std::pin::pin!(connection);
    let head_in_time = tokio::time::timeout(limits.header_read_timeout, first_head.notified());
    let result = tokio::select! {
        result = connection.as_mut() => result,
        in_time = head_in_time => match in_time {
            Ok(()) => connection.await,
            Err(_) => {
                tracing::debug!(%peer, "closing a connection that sent no request in time");
                return;
            }
        },
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Answers 503 in the envelope and closes. The request is read first: closing with it
/// unread would reset the connection before the client reads the answer.
async fn refuse(mut stream: TcpStream, body: &str) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\
         x-content-type-options: nosniff\r\nx-frame-options: DENY\r\n\
         referrer-policy: no-referrer\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut buffer = [0u8; 4096];
        let _ = stream.read(&mut buffer).await?;
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut buffer).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, exchange).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_capped_and_leave_the_map_with_their_last_connection() {
        let counts = PerAddress::new(2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = counts.take(ip("192.0.2.1")).unwrap();
        // One IPv6 /64 is one client.
        let a = counts.take(ip("2001:db8::1")).unwrap();
        let _b = counts.take(ip("2001:db8::ffff:2")).unwrap();
        assert!(counts.take(ip("2001:db8::3")).is_none());
        assert!(counts.take(ip("2001:db8:0:1::1")).is_some());
        drop(a);
        assert!(counts.take(ip("2001:db8::3")).is_some());
        drop(first);
        assert_eq!(
            counts.addresses(),
            1,
            "only the IPv6 /64 still has connections"
        );
    }
}
