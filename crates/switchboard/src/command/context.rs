//! [`Context`]: everything a command may use beyond its own connection's [`Session`] — the
//! membership service, the token verifier, the ICE servers, this node's name in a cluster,
//! the outboxes' byte total and the metrics commands count into. Nothing else of the
//! server's state reaches a command, so a command can be run (and tested) against an
//! in-memory [`Registry`](switchboard_core::Registry) with a context built in one line.
//!
//! The server builds one at start ([`AppState`](crate::AppState)'s `commands`) and every
//! connection borrows it: applying a command costs no clone.
//!
//! [`Session`]: super::Session

use std::sync::Arc;

use switchboard_core::{Ledger, MembershipService};

use super::CommandError;
use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::turn::IceServers;

/// What commands run against.
#[derive(Clone, Debug)]
pub struct Context {
    /// Every room operation: join, leave, relay, mailbox, touch, first flow.
    pub membership: Arc<dyn MembershipService>,
    /// Verifies the tokens connections present ([`check_token`](super::check_token)).
    pub tokens: Authenticator,
    /// The ICE servers the OctateCode `auth` reply carries.
    pub ice: IceServers,
    /// This node's id when it is one node of a cluster (`REDIS_URL`): peer ids derived from
    /// a connection carry it, so that they are unique cluster-wide. `None` on one node.
    pub cluster_node: Option<String>,
    /// Bytes waiting in every peer's outbox.
    pub ledger: Arc<Ledger>,
    /// `BUFFERED_BYTES_MAX`: past it, nothing is relayed ([`CommandError::ServerBusy`]).
    pub buffered_cap: usize,
    /// Refusals, limit hits, signals relayed and the nt telemetry series.
    pub metrics: Metrics,
}

impl Context {
    /// A context for `membership` with `tokens`, and the rest at rest: no ICE servers, one
    /// node, no bound on buffered bytes, fresh metrics.
    pub fn new(membership: Arc<dyn MembershipService>, tokens: Authenticator) -> Self {
        Self {
            membership,
            tokens,
            ice: IceServers::default(),
            cluster_node: None,
            ledger: Arc::new(Ledger::default()),
            buffered_cap: usize::MAX,
            metrics: Metrics::new(),
        }
    }

    /// Whether the outboxes together hold more than `BUFFERED_BYTES_MAX`: nothing is
    /// relayed until slow readers are closed.
    pub fn buffers_full(&self) -> bool {
        self.ledger.buffered() > self.buffered_cap
    }

    /// Counts a refusal: `switchboard_errors_total{kind}` and, for limits,
    /// `switchboard_limit_hits_total{limit}`. The transports call it for every refusal,
    /// decoded or applied.
    pub fn count(&self, e: &CommandError) {
        self.metrics.error(e.code());
        if let Some(limit) = e.limit() {
            self.metrics.limit(limit);
        }
    }
}
