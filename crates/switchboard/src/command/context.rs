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

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use switchboard_core::{Ledger, MembershipService};

use super::CommandError;
use crate::auth::Authenticator;
use crate::metrics::{ErrorLabels, LimitLabels, Metrics, NtMetrics};
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
    /// The series commands count into.
    pub metrics: CommandMetrics,
}

/// The series commands count into: refusals, limit hits, signals relayed and the nt
/// telemetry series. Handles onto the server's own series ([`CommandMetrics::of`]), so a
/// count here is a count in `/metrics`.
#[derive(Clone)]
pub struct CommandMetrics {
    errors: Family<ErrorLabels, Counter>,
    limit_hits: Family<LimitLabels, Counter>,
    /// `switchboard_signals_relayed_total`.
    pub signals_relayed: Counter,
    /// The nt-backend-wrtc series (telemetry counts into its session series).
    pub nt: NtMetrics,
}

impl CommandMetrics {
    /// The series of `metrics` that commands count into.
    pub fn of(metrics: &Metrics) -> Self {
        Self {
            errors: metrics.errors.clone(),
            limit_hits: metrics.limit_hits.clone(),
            signals_relayed: metrics.signals_relayed.clone(),
            nt: metrics.nt.clone(),
        }
    }
}

impl std::fmt::Debug for CommandMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandMetrics").finish_non_exhaustive()
    }
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
            metrics: CommandMetrics::of(&Metrics::new()),
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
        let m = &self.metrics;
        m.errors
            .get_or_create(&ErrorLabels { kind: e.code() })
            .inc();
        if let Some(limit) = e.limit() {
            m.limit_hits.get_or_create(&LimitLabels { limit }).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::Fixture;

    /// What a context counts is counted in the server's own series.
    #[test]
    fn a_refusal_counts_in_the_servers_series() {
        let server = Metrics::new();
        let cx = Context {
            metrics: CommandMetrics::of(&server),
            ..Fixture::new().cx
        };
        #[rustfmt::skip]
        let counted = [
            // refusal                                  series
            (CommandError::RoomFull { capacity: 2 },    ["switchboard_errors_total{kind=\"room_full\"} 1", "switchboard_limit_hits_total{limit=\"room_full\"} 1"]),
            (CommandError::NotAuthenticated,            ["switchboard_errors_total{kind=\"not_authenticated\"} 1", "switchboard_errors_total{kind=\"room_full\"} 1"]),
        ];
        for (e, series) in counted {
            cx.count(&e);
            let text = server.render();
            for s in series {
                assert!(text.contains(s), "{e:?}: {s} missing");
            }
        }
        cx.metrics.signals_relayed.inc();
        assert_eq!(server.signals_relayed.get(), 1);
    }
}
