//! # Switchboard
//!
//! A WebRTC signaling and rendezvous server. This crate is the server around
//! [`switchboard_core`] (rooms, peers, routing, limits, lifecycle):
//!
//! | Module | Owns |
//! |---|---|
//! | [`config`] | typed configuration from flags and environment, validated up front |
//! | [`auth`] | JWT tokens and the admin key |
//! | [`protocol`] | one adapter per wire dialect (frames ⇄ core calls and events) |
//! | [`transport`] | sockets: the WebSocket connection driver |
//! | [`http`] | the JSON HTTP API |
//! | [`admin`] | `/healthz`, `/readyz`, `/metrics` |
//! | [`metrics`] | the Prometheus registry |
//! | [`memory`] | RSS sampling and the memory admission gate |
//! | [`shutdown`] | signals, the shutdown token and the connection tracker |
//! | [`state`] | the shared [`AppState`] |
//!
//! [`serve`] runs the server on listeners it is given until a shutdown future resolves,
//! which is how tests run it on port 0.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod protocol;
pub mod rate;
pub mod shutdown;
pub mod state;
pub mod transport;
pub mod turn;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::client_ip::ClientIp;
pub use crate::config::Config;
pub use crate::shutdown::Shutdown;
pub use crate::state::AppState;

use crate::protocol::octate::OctateSession;

/// The bound listeners.
#[derive(Debug)]
pub struct Listeners {
    /// HTTP API and every WebSocket endpoint.
    pub http: TcpListener,
    /// OctateCode signaling (any path).
    pub signaling: TcpListener,
    /// Socket.io (seed 003): the Vibe REST API and `/socket.io/`.
    pub socketio: TcpListener,
}

impl Listeners {
    /// Binds the configured ports.
    ///
    /// # Errors
    /// When a port cannot be bound.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            http: TcpListener::bind((config.host, config.port)).await?,
            signaling: TcpListener::bind((config.host, config.signaling_port)).await?,
            socketio: TcpListener::bind((config.host, config.socketio_port)).await?,
        })
    }
}

/// An optional WebSocket upgrade: `GET /` is JSON for browsers and signaling for clients.
struct MaybeUpgrade(Option<WebSocketUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUpgrade {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            WebSocketUpgrade::from_request_parts(parts, state)
                .await
                .ok(),
        ))
    }
}

/// Admits a WebSocket request and runs `session` on it (426 without an upgrade).
fn accept<S: protocol::Session>(
    app: AppState,
    client: ClientIp,
    headers: &HeaderMap,
    ws: MaybeUpgrade,
    session: S,
) -> Response {
    let Some(ws) = ws.0 else {
        return axum::http::StatusCode::UPGRADE_REQUIRED.into_response();
    };
    match admission::admit_connection(&app, headers, client.0) {
        Ok(slot) => transport::ws::upgrade(app, ws, slot, session),
        Err(refusal) => refusal.into_response(),
    }
}

async fn octate_ws(
    State(app): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    ws: MaybeUpgrade,
) -> Response {
    accept(app, client, &headers, ws, OctateSession::new())
}

async fn root(
    state: State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    ws: MaybeUpgrade,
) -> Response {
    if ws.0.is_some() {
        return octate_ws(state, client, headers, ws).await;
    }
    http::root(state).await.into_response()
}

/// `GET /ws`: `?room=` is the rendezvous dialect (seed 004 README), `?appID=` the deployed
/// nt-backend-wrtc dialect; neither is 400.
async fn rendezvous_ws(
    State(app): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ws: MaybeUpgrade,
) -> Response {
    protocol::rendezvous::upgrade_request(app, client, &headers, &uri, ws.0)
}

/// `GET /y-webrtc`: the y-webrtc signaling dialect.
async fn ywebrtc_ws(
    State(app): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    ws: MaybeUpgrade,
) -> Response {
    accept(
        app,
        client,
        &headers,
        ws,
        protocol::ywebrtc::YWebrtcSession::new(),
    )
}

fn cors(config: &Config) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]);
    if config.cors_origins.is_empty() {
        base.allow_origin(Any)
    } else {
        let origins: Vec<HeaderValue> = config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        base.allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
    }
}

/// The layers every listener shares, innermost first: the request body limit, the
/// per-client HTTP rate limit, the client address (which the rate limit reads, so it runs
/// first), CORS and request tracing.
fn common_layers(router: Router<AppState>, app: AppState) -> Router {
    let body_limit = app.config.max_frame_bytes.get().max(16 << 10);
    router
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            rate::http_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            client_ip::resolve_layer,
        ))
        .layer(cors(&app.config))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

/// The HTTP listener's router: API, probes, and every WebSocket endpoint.
pub fn http_app(app: AppState) -> Router {
    let routes = Router::new()
        .route("/", get(root))
        .route("/signaling", any(octate_ws))
        .route("/ws", any(rendezvous_ws))
        .route("/y-webrtc", any(ywebrtc_ws))
        .route("/rendezvous/code", any(protocol::nt::code))
        .route("/rendezvous/redeem", any(protocol::nt::redeem))
        .merge(http::router())
        .merge(admin::router(&app.config.metrics_route))
        .merge(http::demo::router(&app.config))
        .fallback(http::not_found)
        .layer(protocol::socketio::layer(app.clone()));
    common_layers(routes, app)
}

/// The signaling listener's router: OctateCode on any path.
pub fn signaling_app(app: AppState) -> Router {
    let routes = Router::new()
        .route("/", any(octate_ws))
        .route("/{*path}", any(octate_ws));
    common_layers(routes, app)
}

/// The Socket.io listener's router: the Vibe REST API (seed 003) and Socket.io at
/// `/socket.io/`.
pub fn socketio_app(app: AppState) -> Router {
    let routes = Router::new()
        .merge(protocol::socketio::rest_router())
        .layer(protocol::socketio::layer(app.clone()));
    common_layers(routes, app)
}

/// Signaling frames are small and latency-bound: without `TCP_NODELAY`, Nagle's algorithm
/// and delayed ACKs stall a peer with several frames in flight for ~40 ms.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// Runs the server on `listeners` until `shutdown_signal` resolves, then closes every
/// connection (close code 1001) within the configured grace and returns.
///
/// # Errors
/// When a listener fails.
pub async fn serve(
    app: AppState,
    listeners: Listeners,
    shutdown_signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = app.shutdown.token().clone();
    let stop = move |t: tokio_util::sync::CancellationToken| async move { t.cancelled().await };
    let http = axum::serve(
        listeners.http.tap_io(no_delay),
        http_app(app.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop(token.clone()));
    let signaling = axum::serve(
        listeners.signaling.tap_io(no_delay),
        signaling_app(app.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop(token.clone()));
    let socketio = axum::serve(
        listeners.socketio.tap_io(no_delay),
        socketio_app(app.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop(token));
    spawn_lifecycle(&app);
    let trigger = tokio::spawn({
        let app = app.clone();
        async move {
            shutdown_signal.await;
            tracing::info!("shutdown: closing connections");
            let clean = app.shutdown.drain(app.config.shutdown_timeout.get()).await;
            if !clean {
                tracing::warn!("shutdown: grace period over with connections still open");
            }
        }
    });
    let (a, b, c) = tokio::join!(
        http.into_future(),
        signaling.into_future(),
        socketio.into_future()
    );
    // Listeners stop once the token is cancelled; wait for the drain to finish too.
    let _ = trigger.await;
    a?;
    b?;
    c?;
    Ok(())
}

/// Starts the periodic room sweep and the memory watch; both stop at shutdown.
fn spawn_lifecycle(app: &AppState) {
    let sweeper = app.clone();
    tokio::spawn(async move {
        let token = sweeper.shutdown.token().clone();
        let mut tick = tokio::time::interval(sweeper.config.sweep_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = tick.tick() => {
                    let r = sweeper.registry.sweep(http::sweep_policy(&sweeper, false));
                    sweeper.http_rate.prune();
                    sweeper.creation.prune();
                    if r.empty_removed + r.idle_closed > 0 {
                        tracing::info!(empty_removed = r.empty_removed, idle_closed = r.idle_closed, "room sweep");
                    }
                }
            }
        }
    });
    let watcher = app.clone();
    tokio::spawn(async move {
        let token = watcher.shutdown.token().clone();
        let mut tick = tokio::time::interval(watcher.config.memory_check_interval.get());
        let mut last = memory::Pressure::Normal;
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = tick.tick() => {
                    let cfg = &watcher.config;
                    let level = watcher.memory.record(memory::current_rss(), cfg.memory_warning_bytes(), cfg.memory_critical_bytes());
                    if level != memory::Pressure::Normal {
                        let r = watcher.registry.sweep(http::sweep_policy(&watcher, true));
                        memory::release_free_memory();
                        if level != last {
                            tracing::warn!(?level, rss = watcher.memory.rss_bytes(), removed = r.empty_removed, "memory pressure");
                        }
                    } else if last != memory::Pressure::Normal {
                        tracing::info!("memory pressure over");
                    }
                    last = level;
                }
            }
        }
    });
}

/// Sleeps at most `d`, for tests and callers that want a bounded wait.
pub async fn bounded<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(d, f).await.ok()
}
