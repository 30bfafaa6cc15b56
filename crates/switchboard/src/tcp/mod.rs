//! The TCP side of every listener: accepting, serving HTTP/1.1 on each connection, and the
//! bounds no client can push the server past.
//!
//! - **Descriptors.** [`Budget`] splits the process's descriptor limit: a few for the
//!   server's own files, the most for WebSocket and Socket.io connections (the default
//!   `MAX_CONNECTIONS`), and a tenth kept for plain HTTP, so that `/api/health` and the
//!   probes answer when every socket slot is taken. When all the descriptors the budget
//!   gives connections are in use, a new connection closes the *oldest idle* HTTP
//!   connection (accepted, or kept alive, with no request in progress) to make room: a
//!   crowd of silent connections cannot lock anyone out.
//! - **Deadlines.** A request head must arrive within `REQUEST_HEADER_TIMEOUT` of
//!   connecting or of the previous response (hyper's header timeout: a silent or dribbling
//!   client is closed); after an upgrade, a WebSocket message must be finished within
//!   `MESSAGE_TIMEOUT` of its first byte ([`watch`]).
//! - **Accept errors** (out of descriptors, out of memory) close the oldest idle connection
//!   and back off, 10 ms doubling to 1 s, instead of spinning; a warning is logged at most
//!   once a second.
//! - **Shutdown.** The listener stops accepting when the shutdown token is cancelled; each
//!   HTTP connection finishes its request in progress and closes (`graceful_shutdown`), and
//!   connection tasks are tracked so that the drain waits for them.
//!
//! HTTP/1.1 only: browsers speak HTTP/2 only over TLS, which a proxy in front terminates,
//! and WebSocket and Engine.IO run over HTTP/1.1.

pub mod budget;
pub mod unfinished;
pub mod watch;

pub use self::budget::{Budget, HttpConnections};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use self::budget::Busy;
use self::watch::{ConnectionKill, Kill, Watched};
use crate::state::AppState;

/// How long a plain HTTP connection may take to finish its request at shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(1);
/// The longest pause after an accept error.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until shutdown.
pub async fn serve(app: AppState, listener: TcpListener, router: Router) {
    let token = app.shutdown.token().clone();
    let mut backoff = Duration::ZERO;
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, remote)) => {
                backoff = Duration::ZERO;
                admit(&app, tcp, remote, &router);
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                app.metrics.limit("accept_error");
                // Whatever ran out, an idle connection gives some back.
                app.http_connections.evict_oldest_idle();
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    last_warning = Some(tokio::time::Instant::now());
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_BACKOFF);
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

/// Errors that concern one connection only (it went before we took it).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// Makes room for a new connection within the budget, then serves it on its own task.
fn admit(app: &AppState, tcp: TcpStream, remote: SocketAddr, router: &Router) {
    let in_use = app.http_connections.open() + app.admission.open_connections();
    if in_use >= app.budget.connections && !app.http_connections.evict_oldest_idle() {
        // Every descriptor is serving a request or a socket: this one cannot be served.
        app.metrics.limit("descriptors");
        return;
    }
    if let Err(e) = tcp.set_nodelay(true) {
        // Signaling frames are small and latency-bound: without TCP_NODELAY, Nagle's
        // algorithm and delayed ACKs stall a peer with several frames in flight for ~40 ms.
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let (id, tracked) = app.http_connections.insert();
    let kill = Arc::new(Kill::default());
    // A trusted proxy's connections carry many clients: counted in the ledger only.
    let address = Some(remote.ip()).filter(|ip| !app.config.trusted_proxies.contains(*ip));
    let io = TokioIo::new(Watched::new(
        tcp,
        app.config.message_timeout.get(),
        Arc::clone(&kill),
        watch::Charge::new(Arc::clone(&app.unfinished), address),
    ));
    let router = router.clone();
    let service_tracked = Arc::clone(&tracked);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        req.extensions_mut()
            .insert(ConnectionKill(Arc::clone(&kill)));
        let busy = Busy::new(&service_tracked);
        let router = router.clone();
        async move {
            let response = router.oneshot(req.map(Body::new)).await;
            drop(busy);
            response
        }
    });
    let header_timeout = app.config.request_header_timeout.get();
    let token = app.shutdown.token().clone();
    let app2 = app.clone();
    app.shutdown.tracker().spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        let mut drain_deadline = None;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!(error = %e, "http connection ended");
                    }
                    break;
                }
                () = tracked.evict.notified() => {
                    app2.metrics.limit("idle_connection_evicted");
                    break;
                }
                () = token.cancelled(), if drain_deadline.is_none() => {
                    // Finish the request in progress, but do not wait for a long poll
                    // whose client is gone.
                    conn.as_mut().graceful_shutdown();
                    drain_deadline = Some(Box::pin(tokio::time::sleep(HTTP_DRAIN)));
                }
                () = async { drain_deadline.as_mut().expect("guarded").await }, if drain_deadline.is_some() => break,
            }
        }
        app2.http_connections.remove(id);
    });
}
