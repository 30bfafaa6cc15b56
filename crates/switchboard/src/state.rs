//! The state every handler and connection shares: configuration, the registry, auth,
//! metrics, shutdown, the memory gate and the connection limiter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use switchboard_core::{Registry, unix_millis};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::memory::MemoryGate;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Clone-cheap shared state.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Inner {
    /// Validated configuration.
    pub config: Config,
    /// Rooms and peers.
    pub registry: Registry,
    /// Token signing and checking.
    pub auth: Authenticator,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Shutdown token and connection tracker.
    pub shutdown: Shutdown,
    /// Memory pressure.
    pub memory: MemoryGate,
    /// Open connections, per IP and in total.
    pub connections: Arc<ConnectionLimiter>,
    /// Per-IP HTTP API rate limit.
    pub http_rate: crate::http::ratelimit::HttpRateLimit,
    /// When the server started.
    pub started: Instant,
    /// When the server started, Unix milliseconds.
    pub started_ms: u64,
    /// nt-backend-wrtc dialect state: per-room mailboxes and rendezvous codes.
    pub nt: crate::protocol::nt::NtStore,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Builds the shared state from a validated configuration.
    pub fn new(config: Config, shutdown: Shutdown) -> Self {
        let registry = Registry::new(config.limits());
        let auth = Authenticator::new(
            &config.auth_secret,
            config.token_ttl,
            config.admin_api_key.clone(),
        );
        let connections = Arc::new(ConnectionLimiter::new(
            config.max_connections,
            config.max_connections_per_ip,
        ));
        let http_rate = crate::http::ratelimit::HttpRateLimit::new(config.http_requests_per_second);
        Self(Arc::new(Inner {
            config,
            registry,
            auth,
            metrics: Metrics::new(),
            shutdown,
            memory: MemoryGate::default(),
            connections,
            http_rate,
            started: Instant::now(),
            started_ms: unix_millis(),
            nt: crate::protocol::nt::NtStore::default(),
        }))
    }
}

/// Counts open connections per client IP and in total.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    /// Invariant: never held across an `.await`.
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Which connection limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefused {
    /// `MAX_CONNECTIONS`.
    Total,
    /// `MAX_CONNECTIONS_PER_IP`.
    PerIp,
}

impl ConnectionLimiter {
    fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// Takes a slot for a connection from `ip`; the slot frees itself on drop.
    ///
    /// # Errors
    /// Which limit is reached.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, ConnectionRefused> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.max_total != 0 && open.0 >= self.max_total {
            return Err(ConnectionRefused::Total);
        }
        let per_ip = open.1.entry(ip).or_insert(0);
        if self.max_per_ip != 0 && *per_ip >= self.max_per_ip {
            return Err(ConnectionRefused::PerIp);
        }
        *per_ip += 1;
        open.0 += 1;
        Ok(ConnectionSlot {
            limiter: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }
}

/// One open connection's place in the [`ConnectionLimiter`].
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}
