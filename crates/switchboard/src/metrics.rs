//! Prometheus metrics, registered into one explicit registry at start-up and rendered by
//! `/metrics`. Label values are closed sets (`&'static str` from fixed tables), never
//! client-supplied strings, so a client cannot blow up the series count.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `dialect` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DialectLabel {
    /// Dialect name (`octate`, `socketio`, `rendezvous`, `nt`, `ywebrtc`).
    pub dialect: &'static str,
}

/// `dialect` and `type` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// Dialect name.
    pub dialect: &'static str,
    /// Message type, from the dialect's fixed table (`unknown` otherwise).
    pub kind: &'static str,
}

/// `kind` label for errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Error code (`bad_json`, `unknown_type`, `peer_not_found`, …).
    pub kind: &'static str,
}

/// `limit` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// Which limit (`frame_size`, `rate`, `room_full`, `rooms`, `connections_per_ip`, …).
    pub limit: &'static str,
}

/// `direction` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `in` or `out`.
    pub direction: &'static str,
}

/// `type` label of the nt-backend-wrtc series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NtTypeLabel {
    /// Lower-cased message type from the nt dialect's fixed table (`unknown` otherwise).
    pub r#type: &'static str,
}

/// `dir` and `type` labels of `nt_signal_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NtBytesLabels {
    /// `in` (received) or `out` (written to recipients).
    pub dir: &'static str,
    /// Lower-cased message type from the nt dialect's fixed table.
    pub r#type: &'static str,
}

/// The nt-backend-wrtc series under their original, unprefixed names (`nt_*`).
#[derive(Clone, Default)]
pub struct NtMetrics {
    /// Successful `/ws?appID=` upgrades, including ones then refused as `side X busy`.
    pub ws_connections: Counter,
    /// nt connections refused after the upgrade (`side X busy`, a full room) and messages
    /// ignored as malformed.
    pub ws_errors: Counter,
    /// Messages received on nt connections, by type.
    pub ws_messages: Family<NtTypeLabel, Counter>,
    /// Rooms alive (set at scrape time from the registry).
    pub rooms_active: Gauge,
    /// Peers in rooms (set at scrape time from the registry).
    pub peers_active: Gauge,
    /// Relayed signaling messages (`offer`, `answer`, `ice`, `sender_ready`) and mailbox
    /// `send`s received, by type.
    pub signal_messages: Family<NtTypeLabel, Counter>,
    /// Bytes of signaling messages, by direction and type.
    pub signal_bytes: Family<NtBytesLabels, Counter>,
    /// Relayed signaling messages dropped because the other side was not connected (the
    /// original drops them silently; so does Switchboard, but counts them).
    pub signal_dropped: Family<NtTypeLabel, Counter>,
}

/// Every metric the server exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// The unprefixed registry holding the `nt_*` series.
    nt_registry: Arc<Registry>,
    /// The nt-backend-wrtc series.
    pub nt: NtMetrics,
    /// WebSocket connections accepted, by dialect.
    pub connections: Family<DialectLabel, Counter>,
    /// WebSocket connections open now, by dialect.
    pub connections_active: Family<DialectLabel, Gauge>,
    /// Messages received, by dialect and type.
    pub messages: Family<MessageLabels, Counter>,
    /// Error replies and error closes, by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Limit hits, by limit.
    pub limit_hits: Family<LimitLabels, Counter>,
    /// WebSocket payload bytes, by direction.
    pub bytes: Family<DirectionLabels, Counter>,
    /// Rooms alive (set at scrape time).
    pub rooms_active: Gauge,
    /// Peers in rooms (set at scrape time).
    pub peers_active: Gauge,
    /// Resident memory in bytes (set at scrape time).
    pub resident_memory: Gauge,
    /// Time from a relayed event entering a peer's outbox to its frame being written.
    pub relay_latency: Histogram,
    /// Peers closed because their outbox was full.
    pub slow_consumers: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric into a fresh registry.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("switchboard");
        let nt = NtMetrics::default();
        let mut ntr = Registry::default();
        ntr.register(
            "nt_ws_connections",
            "nt dialect WebSocket upgrades",
            nt.ws_connections.clone(),
        );
        ntr.register(
            "nt_ws_errors",
            "nt dialect refused connections and malformed messages",
            nt.ws_errors.clone(),
        );
        ntr.register(
            "nt_ws_messages",
            "nt dialect messages received, by type",
            nt.ws_messages.clone(),
        );
        ntr.register("nt_rooms_active", "Rooms alive", nt.rooms_active.clone());
        ntr.register("nt_peers_active", "Peers in rooms", nt.peers_active.clone());
        ntr.register(
            "nt_signal_messages",
            "nt dialect signaling messages received, by type",
            nt.signal_messages.clone(),
        );
        ntr.register(
            "nt_signal_bytes",
            "nt dialect signaling bytes, by direction and type",
            nt.signal_bytes.clone(),
        );
        ntr.register(
            "nt_signal_dropped",
            "nt dialect signaling messages dropped: the other side was not connected",
            nt.signal_dropped.clone(),
        );
        let m = Self {
            registry: Arc::new(Registry::default()),
            nt_registry: Arc::new(ntr),
            nt,
            connections: Family::default(),
            connections_active: Family::default(),
            messages: Family::default(),
            errors: Family::default(),
            limit_hits: Family::default(),
            bytes: Family::default(),
            rooms_active: Gauge::default(),
            peers_active: Gauge::default(),
            resident_memory: Gauge::default(),
            relay_latency: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
            slow_consumers: Counter::default(),
        };
        r.register(
            "connections",
            "WebSocket connections accepted",
            m.connections.clone(),
        );
        r.register(
            "connections_active",
            "WebSocket connections open",
            m.connections_active.clone(),
        );
        r.register(
            "messages",
            "Messages received from clients",
            m.messages.clone(),
        );
        r.register("errors", "Errors returned to clients", m.errors.clone());
        r.register(
            "limit_hits",
            "Requests refused by a limit",
            m.limit_hits.clone(),
        );
        r.register("bytes", "WebSocket payload bytes", m.bytes.clone());
        r.register("rooms_active", "Rooms alive", m.rooms_active.clone());
        r.register("peers_active", "Peers in rooms", m.peers_active.clone());
        r.register(
            "resident_memory_bytes",
            "Resident set size",
            m.resident_memory.clone(),
        );
        r.register(
            "relay_latency_seconds",
            "Time from an event entering a peer's outbox to its frame being written",
            m.relay_latency.clone(),
        );
        r.register(
            "slow_consumers",
            "Peers closed because their outbox was full",
            m.slow_consumers.clone(),
        );
        Self {
            registry: Arc::new(r),
            ..m
        }
    }

    /// Counts an error by code.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// Counts a limit hit.
    pub fn limit(&self, limit: &'static str) {
        self.limit_hits.get_or_create(&LimitLabels { limit }).inc();
    }

    /// Counts a received message.
    pub fn message(&self, dialect: &'static str, kind: &'static str) {
        self.messages
            .get_or_create(&MessageLabels { dialect, kind })
            .inc();
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        encode_registry(&mut out, &self.registry).expect("writing to a String cannot fail");
        encode_registry(&mut out, &self.nt_registry).expect("writing to a String cannot fail");
        encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}
