//! The accept loop: warp's routes served by hyper on connections accepted here, because
//! warp 0.4's own server can neither cap open connections nor bound how long a client may
//! take to send its headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

/// A client that has not sent a request's headers by then is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection over the cap is kept to be told so.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections being refused at once; beyond it they are closed without an answer.
const MAX_REFUSING: usize = 256;

const OVER_CAPACITY_BODY: &str = r#"{"success":false,"errors":{"detail":"The server has too many connections open; try again shortly"}}"#;

/// The peer address of the connection a request came on.
#[derive(Clone, Copy, Debug)]
struct ClientAddr(SocketAddr);

/// The client's address (what `warp::addr::remote` gives under warp's own server).
pub fn client_address() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone
{
    warp::ext::optional::<ClientAddr>().map(|client: Option<ClientAddr>| client.map(|c| c.0))
}

/// Serves `routes` on `listener` with at most `max_connections` HTTP connections open (an
/// upgraded WebSocket leaves this count for `--max-connections`), until `shutdown` fires;
/// then stops accepting and lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let routes = routes.clone();
        let on_request = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ClientAddr(peer));
            warp::service(routes.clone()).call(request)
        });
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), on_request);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers 503 in the envelope and closes. The request is read first: closing with it
/// unread would reset the connection before the client reads the answer.
async fn refuse(mut stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\
         x-content-type-options: nosniff\r\nx-frame-options: DENY\r\n\
         referrer-policy: no-referrer\r\n\r\n{OVER_CAPACITY_BODY}",
        OVER_CAPACITY_BODY.len()
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
