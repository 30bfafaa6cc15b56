//! The state every handler and connection shares: configuration, the registry, auth,
//! metrics, shutdown, the memory gate, admission and the rate limits, and the narrow
//! [`Context`] the command layer runs against (built here, once, from the rest).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use switchboard_core::{CodeBook, Ledger, MembershipService, OutboxBounds, Registry, unix_millis};

use crate::admission::{Admission, CreationPolicy};
use crate::auth::Authenticator;
use crate::command::Context;
use crate::config::Config;
use crate::memory::MemoryGate;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::tcp::budget::{Budget, HttpConnections};

/// Clone-cheap shared state.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Inner {
    /// Validated configuration.
    pub config: Config,
    /// The membership service: every room operation goes through it (in memory on one
    /// node; a cluster backend across nodes).
    pub membership: Arc<dyn MembershipService>,
    /// This node's own rooms and sockets (the in-memory registry; on one node, the same
    /// rooms the membership service serves).
    pub registry: Registry,
    /// Rendezvous codes.
    pub codes: Arc<dyn CodeBook>,
    /// This node's name (`NODE_ID`, or the host name and a random suffix).
    pub node_id: String,
    /// Token signing and checking.
    pub auth: Authenticator,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Shutdown token and connection tracker.
    pub shutdown: Shutdown,
    /// Memory pressure.
    pub memory: Arc<MemoryGate>,
    /// Who may connect (and how many are connected).
    pub admission: Admission,
    /// How the descriptor limit is shared out.
    pub budget: Budget,
    /// Plain HTTP connections open on every listener.
    pub http_connections: HttpConnections,
    /// Bytes waiting in every peer's outbox, and held by unfinished inbound messages.
    pub ledger: Arc<Ledger>,
    /// Unfinished inbound messages' bytes per client address ([`crate::tcp::unfinished`]).
    pub unfinished: Arc<crate::tcp::unfinished::Unfinished>,
    /// Per-IP HTTP request rate limit.
    pub http_rate: crate::rate::PerIp,
    /// Who may create rooms (the registry asks it).
    pub creation: Arc<CreationPolicy>,
    /// What commands run against: borrowed by every connection for every command.
    pub commands: Context,
    /// When the server started.
    pub started: Instant,
    /// When the server started, Unix milliseconds.
    pub started_ms: u64,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The bounds of a new connection's outbox.
    pub fn outbox_bounds(&self) -> OutboxBounds {
        OutboxBounds {
            items: self.config.outbox_capacity,
            bytes: self.config.outbox_max_bytes.get(),
            ledger: Some(Arc::clone(&self.ledger)),
        }
    }

    /// Whether the outboxes together hold more than `BUFFERED_BYTES_MAX`: no new work
    /// until slow readers are closed.
    pub fn buffers_full(&self) -> bool {
        self.ledger.buffered() > self.config.buffered_bytes_cap()
    }

    /// Builds the shared state from a validated configuration.
    pub fn new(config: Config, shutdown: Shutdown) -> Self {
        let memory = Arc::new(MemoryGate::default());
        let creation = Arc::new(CreationPolicy::new(
            Arc::clone(&memory),
            shutdown.token().clone(),
            config.room_creations_per_minute,
        ));
        let registry = Registry::with_gate(config.limits(), creation.clone());
        let auth = Authenticator::new(
            &config.auth_secret,
            config.token_ttl.get(),
            config.admin_api_key.clone(),
            config.auth_failures_per_minute,
        );
        let metrics = Metrics::new();
        let budget = Budget::current();
        let ledger = Arc::new(Ledger::default());
        let admission = Admission::new(
            &config,
            budget,
            Arc::clone(&ledger),
            Arc::clone(&memory),
            shutdown.token().clone(),
            metrics.clone(),
        );
        let http_rate = crate::rate::PerIp::per_second(config.http_requests_per_second);
        let unfinished = Arc::new(crate::tcp::unfinished::Unfinished::new(
            config.unfinished_bytes_per_address(),
            Arc::clone(&ledger),
        ));
        let node_id = config
            .node_id
            .clone()
            .unwrap_or_else(crate::backend::default_node_id);
        let (membership, codes) =
            crate::backend::backends(&config, &node_id, &registry, creation.clone());
        metrics
            .node
            .get_or_create(&crate::metrics::NodeLabels {
                node: node_id.clone(),
                backplane: membership.name(),
            })
            .set(1);
        let commands = Context {
            membership: Arc::clone(&membership),
            tokens: auth.clone(),
            ice: crate::turn::IceServers::from_config(&config),
            cluster_node: config.redis_url.is_some().then(|| node_id.clone()),
            ledger: Arc::clone(&ledger),
            buffered_cap: config.buffered_bytes_cap(),
            metrics: crate::command::context::CommandMetrics::of(&metrics),
        };
        Self(Arc::new(Inner {
            config,
            membership,
            registry,
            codes,
            node_id,
            auth,
            metrics,
            shutdown,
            memory,
            admission,
            budget,
            http_connections: HttpConnections::default(),
            ledger,
            unfinished,
            http_rate,
            creation,
            commands,
            started: Instant::now(),
            started_ms: unix_millis(),
        }))
    }
}
