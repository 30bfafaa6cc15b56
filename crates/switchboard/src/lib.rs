//! # Switchboard
//!
//! A WebRTC signaling and rendezvous server. This crate is the server around
//! [`switchboard_core`] (rooms, peers, the membership service, routing, limits). A signal
//! goes: transport ([`transport`]) → dialect codec ([`dialect`]) → command layer
//! ([`command`]) → membership service (the core) → the recipient's outbox → its transport →
//! its codec.
//!
//! | Module | Owns |
//! |---|---|
//! | [`config`] | typed configuration from flags and environment, one source of defaults, validated up front |
//! | [`admission`] | who may connect and who may create rooms (one policy for every entry point) |
//! | [`client_ip`] | the client address every per-client limit counts (`TRUSTED_PROXIES`) |
//! | [`backend`] | which membership service a node runs on: in memory, or cluster mode on Redis (`REDIS_URL`: the `switchboard-cluster` crate, feature `cluster`) |
//! | [`rate`] | the rate limits (per client address, per connection) |
//! | [`command`] | the command layer: what each command does (one file per command, over a narrow `Context`), every token check, and every refusal, for every dialect |
//! | [`dialect`] | one codec per wire dialect: frames ⇄ commands, events ⇄ frames |
//! | [`connection`] | one connection's life without its socket: a session, its codec and limits, fed frames, outbox items and ticks, answering with what to write and when to close |
//! | [`transport`] | sockets: the WebSocket driver (moves bytes for a [`connection::Connection`]) and the Socket.io (socketioxide) driver |
//! | [`http`] | every HTTP route, one router file per API, and the listeners' routers |
//! | [`auth`] | JWT tokens and the admin key |
//! | [`turn`] | ICE servers and TURN REST credentials |
//! | [`metrics`] | the Prometheus registry |
//! | [`memory`] | RSS sampling and the memory gate |
//! | [`lifecycle`] | the room sweep and the memory watch |
//! | [`tcp`] | accepting and serving connections: the descriptor budget, request and message deadlines |
//! | [`shutdown`] | signals, the shutdown token and the connection tracker |
//! | [`state`] | the shared [`AppState`] |
//!
//! Dependencies point one way: `http` and `transport` use `dialect` and `command`;
//! `dialect` uses `command` (its types); `command` uses the core. No module imports a
//! module that imports it (see the README's layout section for how that is checked).
//!
//! [`serve`] runs the server on listeners it is given until a shutdown future resolves,
//! which is how tests run it on port 0.

pub mod admission;
#[cfg(feature = "count-alloc")]
pub mod alloc_count;
pub mod auth;
pub mod backend;
pub mod client_ip;
pub mod command;
pub mod config;
pub mod connection;
pub mod dialect;
pub mod http;
pub mod lifecycle;
pub mod memory;
pub mod metrics;
pub mod rate;
pub mod shutdown;
pub mod state;
pub mod tcp;
pub mod transport;
pub mod turn;

use std::future::Future;

use tokio::net::TcpListener;

pub use crate::config::Config;
pub use crate::shutdown::Shutdown;
pub use crate::state::AppState;

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
    let http = tcp::serve(app.clone(), listeners.http, http::http_app(app.clone()));
    let signaling = tcp::serve(
        app.clone(),
        listeners.signaling,
        http::signaling_app(app.clone()),
    );
    let socketio = tcp::serve(
        app.clone(),
        listeners.socketio,
        http::socketio_app(app.clone()),
    );
    lifecycle::spawn(&app);
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
    tokio::join!(http, signaling, socketio);
    // Listeners stop once the token is cancelled; wait for the drain to finish too.
    let _ = trigger.await;
    // A cluster node writes its peers' departures and gives up its place.
    app.membership.shutdown().await;
    Ok(())
}
