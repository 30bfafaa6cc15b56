//! One admission policy for every entry point.
//!
//! - [`Admission::admit`] decides whether a new connection may open, for every WebSocket
//!   dialect (before the upgrade, as an HTTP status) and for Socket.io (at connect, as
//!   `connect_error`), in this order: draining (503), `Origin` (403), memory over the
//!   critical threshold (503), connection limits (429).
//! - [`CreationPolicy`] decides whether a room may be created, asked by the core registry
//!   at the moment a join or `POST /api/rooms` would create one, in every dialect:
//!   draining or memory critical (the dialect's `overloaded`), then the client's
//!   `ROOM_CREATIONS_PER_MINUTE` budget (its `creation_rate_limited`, HTTP 429).
//!
//! Joins into rooms that exist, and messages on open connections, are not admission: they
//! are governed by room capacity and the message rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderMap, StatusCode, header};
use switchboard_core::{CreationGate, JoinError, Ledger};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::memory::MemoryGate;
use crate::metrics::Metrics;
use crate::rate::PerIp;
use crate::tcp::budget::Budget;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server is shutting down.
    Draining,
    /// `Origin` is not in `CORS_ORIGINS`.
    ForbiddenOrigin,
    /// `Origin` is present but not a readable (ASCII) origin.
    MalformedOrigin,
    /// Resident memory is over `MEMORY_CRITICAL_THRESHOLD`.
    MemoryCritical,
    /// The outboxes together hold more than `BUFFERED_BYTES_MAX`.
    BuffersFull,
    /// `MAX_CONNECTIONS` connections are open.
    TooManyConnections,
    /// `MAX_CONNECTIONS_PER_IP` connections are open from this client.
    TooManyConnectionsFromIp,
}

impl Refusal {
    /// The HTTP status a refused upgrade gets.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Draining | Self::MemoryCritical | Self::BuffersFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::ForbiddenOrigin | Self::MalformedOrigin => StatusCode::FORBIDDEN,
            Self::TooManyConnections | Self::TooManyConnectionsFromIp => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }

    /// The message a refused client reads (HTTP body `error`, Socket.io `connect_error`).
    pub fn message(self) -> &'static str {
        match self {
            Self::Draining => "Server is shutting down",
            Self::ForbiddenOrigin => "Origin not allowed",
            Self::MalformedOrigin => "Malformed Origin header",
            Self::MemoryCritical => "Server overloaded: memory critical; try again later",
            Self::BuffersFull => "Server overloaded: too much undelivered data; try again later",
            Self::TooManyConnections => "Too many connections",
            Self::TooManyConnectionsFromIp => "Too many connections from this address",
        }
    }

    /// The machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::ForbiddenOrigin | Self::MalformedOrigin => "forbidden_origin",
            Self::MemoryCritical | Self::BuffersFull => "overloaded",
            Self::TooManyConnections => "too_many_connections",
            Self::TooManyConnectionsFromIp => "too_many_connections_per_ip",
        }
    }
}

/// Who may open a connection: the policy and what it reads.
#[derive(Debug)]
pub struct Admission {
    cors_origins: Vec<String>,
    ledger: Arc<Ledger>,
    buffered_cap: usize,
    memory: Arc<MemoryGate>,
    draining: CancellationToken,
    connections: Arc<ConnectionLimiter>,
    metrics: Metrics,
}

impl Admission {
    /// The policy `config` sets, reading the memory gate and the shutdown token.
    pub fn new(
        config: &Config,
        budget: Budget,
        ledger: Arc<Ledger>,
        memory: Arc<MemoryGate>,
        draining: CancellationToken,
        metrics: Metrics,
    ) -> Self {
        Self {
            cors_origins: config.cors_origins.as_slice().to_vec(),
            ledger,
            buffered_cap: config.buffered_bytes_cap(),
            memory,
            draining,
            connections: Arc::new(ConnectionLimiter::new(
                config.max_connections.resolve(budget.sockets).unwrap_or(0),
                config.max_connections_per_ip,
            )),
            metrics,
        }
    }

    /// Decides whether a connection from `client` (with these request headers) may open,
    /// and if so takes its place in the connection limits (released when the slot drops).
    ///
    /// # Errors
    /// The [`Refusal`], already counted in the metrics.
    pub fn admit(&self, headers: &HeaderMap, client: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let verdict = self.check(headers, client);
        if let Err(r) = &verdict {
            match r {
                Refusal::Draining => {}
                Refusal::ForbiddenOrigin | Refusal::MalformedOrigin => {
                    self.metrics.error("forbidden_origin");
                }
                Refusal::MemoryCritical => self.metrics.limit("memory"),
                Refusal::BuffersFull => self.metrics.limit("buffered_bytes"),
                Refusal::TooManyConnections => self.metrics.limit("connections"),
                Refusal::TooManyConnectionsFromIp => self.metrics.limit("connections_per_ip"),
            }
        }
        verdict
    }

    fn check(&self, headers: &HeaderMap, client: IpAddr) -> Result<ConnectionSlot, Refusal> {
        if self.draining.is_cancelled() {
            return Err(Refusal::Draining);
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| Refusal::MalformedOrigin)?;
            if !origin_allowed(&self.cors_origins, origin) {
                return Err(Refusal::ForbiddenOrigin);
            }
        }
        if self.memory.is_critical() {
            return Err(Refusal::MemoryCritical);
        }
        if self.ledger.buffered() > self.buffered_cap {
            return Err(Refusal::BuffersFull);
        }
        self.connections.acquire(client)
    }

    /// The most connections allowed at once (0: unlimited).
    pub fn max_connections(&self) -> usize {
        self.connections.max_total
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }
}

/// Whether `origin` is allowed: any when the list is empty (or holds `*`); otherwise an
/// exact match of the origin or of its host name, ignoring case.
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    if allowed.is_empty() || allowed.iter().any(|a| a == "*") {
        return true;
    }
    let origin = origin.trim_end_matches('/');
    let host = origin
        .split("://")
        .nth(1)
        .unwrap_or(origin)
        .split(':')
        .next()
        .unwrap_or("");
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(origin) || a.eq_ignore_ascii_case(host))
}

/// Counts open connections per client address and in total.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    /// Invariant: never held across an `.await`.
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl ConnectionLimiter {
    /// Limits of `max_total` and `max_per_ip` open connections; 0 is unlimited.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
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
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if self.max_total != 0 && open.0 >= self.max_total {
            return Err(Refusal::TooManyConnections);
        }
        let per_ip = open.1.entry(ip).or_insert(0);
        if self.max_per_ip != 0 && *per_ip >= self.max_per_ip {
            return Err(Refusal::TooManyConnectionsFromIp);
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
        self.open.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

/// One open connection's place in the [`ConnectionLimiter`].
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionSlot {
    /// The client address the slot is counted against.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Whether a room may be created now: the registry's [`CreationGate`].
#[derive(Debug)]
pub struct CreationPolicy {
    memory: Arc<MemoryGate>,
    draining: CancellationToken,
    budget: PerIp,
}

impl CreationPolicy {
    /// A policy refusing creation while `memory` is critical or `draining` is cancelled,
    /// and past `per_minute` creations per client address.
    pub fn new(memory: Arc<MemoryGate>, draining: CancellationToken, per_minute: u32) -> Self {
        Self {
            memory,
            draining,
            budget: PerIp::per_minute(per_minute),
        }
    }

    /// Forgets clients whose budgets are full again.
    pub fn prune(&self) {
        self.budget.prune();
    }
}

impl CreationGate for CreationPolicy {
    fn allow(&self, creator: Option<IpAddr>) -> Result<(), JoinError> {
        if self.draining.is_cancelled() || self.memory.is_critical() {
            return Err(JoinError::NotAdmitting);
        }
        match creator {
            Some(ip) if !self.budget.check(ip) => Err(JoinError::CreationRateLimited),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_host() {
        let allowed = vec!["http://localhost:3000".to_owned(), "example.com".to_owned()];
        assert!(origin_allowed(&allowed, "http://localhost:3000"));
        assert!(origin_allowed(&allowed, "https://example.com"));
        assert!(!origin_allowed(&allowed, "http://localhost:3001"));
        assert!(!origin_allowed(&allowed, "http://evil.example.org"));
        assert!(origin_allowed(&[], "http://anything"));
    }

    #[test]
    fn creation_is_refused_under_pressure_and_past_the_budget() {
        let memory = Arc::new(MemoryGate::default());
        let token = CancellationToken::new();
        let p = CreationPolicy::new(Arc::clone(&memory), token.clone(), 2);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        assert_eq!(p.allow(Some(ip)), Ok(()));
        assert_eq!(p.allow(Some(ip)), Ok(()));
        assert_eq!(p.allow(Some(ip)), Err(JoinError::CreationRateLimited));
        assert_eq!(
            p.allow(None),
            Ok(()),
            "server-side creations have no budget"
        );
        memory.record(10, 1, 1);
        assert_eq!(p.allow(None), Err(JoinError::NotAdmitting));
        memory.record(0, 1, 1);
        token.cancel();
        assert_eq!(p.allow(None), Err(JoinError::NotAdmitting));
    }
}
