//! Prometheus metrics, registered into one explicit registry at start-up and rendered by
//! `/metrics`. Label values are closed sets (`&'static str` from fixed tables); the two that
//! come from clients (nt telemetry's `mode` and `reason`) go through [`BoundedLabels`], so a
//! client cannot blow up the series count.

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

/// `node` and `backplane` labels of `switchboard_node`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// `NODE_ID` (or the generated name).
    pub node: String,
    /// `local` (one node) or `redis` (cluster mode).
    pub backplane: &'static str,
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

/// `dir` label of `nt_ws_frame_bytes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NtDirLabel {
    /// `in` or `out`.
    pub dir: &'static str,
}

/// `mode` label of `nt_session_established_total`: a client-supplied value, so it comes
/// through [`BoundedLabels`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NtModeLabel {
    /// Lower-cased `mode`, `unspecified` when empty, `other` past the bound.
    pub mode: String,
}

/// `reason` label of `nt_session_failed_total` (bounded like [`NtModeLabel`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NtReasonLabel {
    /// Lower-cased `reason`, `ice-failed` when none is given, `other` past the bound.
    pub reason: String,
}

/// Turns client-supplied strings into label values without letting a client create series
/// at will: the first [`BoundedLabels::MAX`] distinct values (lower-cased, at most 32 of
/// `[a-z0-9_.-]`) get their own label; anything else is `other`.
#[derive(Debug, Default)]
pub struct BoundedLabels(std::sync::Mutex<std::collections::HashSet<String>>);

impl BoundedLabels {
    /// Distinct values kept per label.
    pub const MAX: usize = 16;

    /// The label value for `raw` (`empty` when `raw` is empty).
    pub fn value(&self, raw: &str, empty: &str) -> String {
        let v = raw.trim().to_ascii_lowercase();
        if v.is_empty() {
            return empty.to_owned();
        }
        let plain = v.len() <= 32
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !plain {
            return "other".to_owned();
        }
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(&v) || seen.len() < Self::MAX {
            seen.insert(v.clone());
            v
        } else {
            "other".to_owned()
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn frame_bytes_histogram() -> Histogram {
    // 64 B … 1 MiB
    Histogram::new(exponential_buckets(64.0, 4.0, 8))
}

fn rtt_histogram() -> Histogram {
    // 100 µs … ~26 s
    Histogram::new(exponential_buckets(0.000_1, 4.0, 10))
}

/// The nt-backend-wrtc series under their original, unprefixed names (`nt_*`).
#[derive(Clone)]
pub struct NtMetrics {
    /// Successful `/ws` upgrades of both forms (`?room=` and `?appID=`), including ones then
    /// refused (`side X busy`, an invalid key, a full room).
    pub ws_connections: Counter,
    /// `/ws` connections refused after the upgrade, rendezvous error replies, and nt
    /// messages ignored as malformed.
    pub ws_errors: Counter,
    /// Messages received on `/ws` connections, by type (nt's and rendezvous's types).
    pub ws_messages: Family<NtTypeLabel, Counter>,
    /// Rooms holding `/ws` peers (set at scrape time from the registry).
    pub rooms_active: Gauge,
    /// Peers connected through `/ws` (set at scrape time from the registry).
    pub peers_active: Gauge,
    /// Relayed signaling messages (`offer`, `answer`, `ice`, `sender_ready`) and mailbox
    /// `send`s received, by type.
    pub signal_messages: Family<NtTypeLabel, Counter>,
    /// Bytes of signaling messages, by direction and type.
    pub signal_bytes: Family<NtBytesLabels, Counter>,
    /// Relayed signaling messages dropped because the other side was not connected (the
    /// original drops them silently; so does Switchboard, but counts them).
    pub signal_dropped: Family<NtTypeLabel, Counter>,
    /// Sizes of frames received (`in`) and written (`out`) on nt connections.
    pub ws_frame_bytes: HistogramFamily<NtDirLabel>,
    /// The `in` and `out` series of `ws_frame_bytes`, looked up once rather than per frame.
    frames_in: Histogram,
    frames_out: Histogram,
    /// WebSocket round-trip times of nt connections, from ping to pong.
    pub ws_rtt: Histogram,
    /// `telemetry {event:"ice-connected", mode}`: once per room.
    pub session_established: Family<NtModeLabel, Counter>,
    /// `telemetry {event:"ice-failed", reason}`.
    pub session_failed: Family<NtReasonLabel, Counter>,
    /// From the room first holding both sides to its first `ice-connected`.
    pub session_time_to_first_flow: Histogram,
    /// The bound on client-supplied `mode` values.
    pub modes: Arc<BoundedLabels>,
    /// The bound on client-supplied `reason` values.
    pub reasons: Arc<BoundedLabels>,
}

impl NtMetrics {
    /// Records the size of a frame received.
    pub fn frame_in(&self, len: usize) {
        self.frames_in.observe(len as f64);
    }

    /// Records the size of a frame written.
    pub fn frame_out(&self, len: usize) {
        self.frames_out.observe(len as f64);
    }
}

impl Default for NtMetrics {
    fn default() -> Self {
        let ws_frame_bytes: HistogramFamily<NtDirLabel> =
            Family::new_with_constructor(frame_bytes_histogram);
        let series = |dir| ws_frame_bytes.get_or_create(&NtDirLabel { dir }).clone();
        let (frames_in, frames_out) = (series("in"), series("out"));
        Self {
            ws_connections: Counter::default(),
            ws_errors: Counter::default(),
            ws_messages: Family::default(),
            rooms_active: Gauge::default(),
            peers_active: Gauge::default(),
            signal_messages: Family::default(),
            signal_bytes: Family::default(),
            signal_dropped: Family::default(),
            ws_frame_bytes,
            frames_in,
            frames_out,
            ws_rtt: rtt_histogram(),
            session_established: Family::default(),
            session_failed: Family::default(),
            // 50 ms … ~100 s
            session_time_to_first_flow: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            modes: Arc::default(),
            reasons: Arc::default(),
        }
    }
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
    /// `bytes{direction="in"}`, held here so that connections need not each hold it.
    pub bytes_in: Counter,
    /// `bytes{direction="out"}`, likewise.
    pub bytes_out: Counter,
    /// Rooms alive (set at scrape time).
    pub rooms_active: Gauge,
    /// Peers in rooms (set at scrape time).
    pub peers_active: Gauge,
    /// Resident memory in bytes (set at scrape time).
    pub resident_memory: Gauge,
    /// Time from a relayed event entering a peer's outbox to its frame being written.
    pub relay_latency: Histogram,
    /// WebSocket round trips, from a server ping to its pong.
    pub ws_rtt: Histogram,
    /// Peers closed because their outbox was full.
    pub slow_consumers: Counter,
    /// Signals this node relayed (each relay counted once, however many recipients took
    /// it): `/api/stats`' `operations.total`.
    pub signals_relayed: Counter,
    /// Panics in connection tasks (and anywhere else), from [`PANICS`] at scrape time.
    pub panics: Counter,
    /// 1, labelled with this node's name and backplane (so a cluster's series can be told
    /// apart and joined by node).
    pub node: Family<NodeLabels, Gauge>,
    /// 1 while the membership service can serve (always on one node; in cluster mode, while
    /// Redis answers), 0 otherwise: the alert rules' "Redis unreachable" (set at scrape time).
    pub backplane_up: Gauge,
    /// `MEMORY_WARNING_THRESHOLD` in bytes, so that alerts compare RSS with this node's own
    /// thresholds rather than a copy of them.
    pub memory_warning_bytes: Gauge,
    /// `MEMORY_CRITICAL_THRESHOLD` in bytes.
    pub memory_critical_bytes: Gauge,
}

/// Panics since the process started, counted by the panic hook ([`count_panics`]).
pub static PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Installs a panic hook that logs the panic with its location (as an error, in the
/// configured log format), counts it in [`PANICS`], and then runs the default hook. Tokio
/// catches the panic at the task's edge: one connection ends, the process goes on.
pub fn count_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, %message, "panic");
        default(info);
    }));
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
        ntr.register(
            "nt_rooms_active",
            "Rooms holding peers connected through /ws",
            nt.rooms_active.clone(),
        );
        ntr.register(
            "nt_peers_active",
            "Peers connected through /ws (rendezvous and nt)",
            nt.peers_active.clone(),
        );
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
        ntr.register(
            "nt_ws_frame_bytes",
            "nt dialect frame sizes, by direction",
            nt.ws_frame_bytes.clone(),
        );
        ntr.register(
            "nt_ws_rtt_seconds",
            "nt dialect WebSocket ping round trips",
            nt.ws_rtt.clone(),
        );
        ntr.register(
            "nt_session_established",
            "nt rooms whose peers reported ice-connected, by mode",
            nt.session_established.clone(),
        );
        ntr.register(
            "nt_session_failed",
            "nt telemetry ice-failed reports, by reason",
            nt.session_failed.clone(),
        );
        ntr.register(
            "nt_session_time_to_first_flow_seconds",
            "nt rooms: from both sides present to the first ice-connected",
            nt.session_time_to_first_flow.clone(),
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        let direction = |direction| bytes.get_or_create(&DirectionLabels { direction }).clone();
        let (bytes_in, bytes_out) = (direction("in"), direction("out"));
        let m = Self {
            registry: Arc::new(Registry::default()),
            nt_registry: Arc::new(ntr),
            nt,
            connections: Family::default(),
            connections_active: Family::default(),
            messages: Family::default(),
            errors: Family::default(),
            limit_hits: Family::default(),
            bytes,
            bytes_in,
            bytes_out,
            rooms_active: Gauge::default(),
            peers_active: Gauge::default(),
            resident_memory: Gauge::default(),
            relay_latency: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
            ws_rtt: rtt_histogram(),
            slow_consumers: Counter::default(),
            signals_relayed: Counter::default(),
            panics: Counter::default(),
            node: Family::default(),
            backplane_up: Gauge::default(),
            memory_warning_bytes: Gauge::default(),
            memory_critical_bytes: Gauge::default(),
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
            "ws_rtt_seconds",
            "WebSocket round trips, from a server ping to its pong",
            m.ws_rtt.clone(),
        );
        r.register(
            "slow_consumers",
            "Peers closed because their outbox was full",
            m.slow_consumers.clone(),
        );
        r.register(
            "signals_relayed",
            "Signals relayed (offers, answers, candidates, room broadcasts, mailbox items)",
            m.signals_relayed.clone(),
        );
        r.register(
            "panics",
            "Panics caught (each ended one connection's task, not the process)",
            m.panics.clone(),
        );
        r.register(
            "node",
            "This node: its NODE_ID and backplane (always 1)",
            m.node.clone(),
        );
        r.register(
            "backplane_up",
            "1 while the membership service can serve (cluster mode: Redis reachable), else 0",
            m.backplane_up.clone(),
        );
        r.register(
            "memory_warning_bytes",
            "MEMORY_WARNING_THRESHOLD in bytes",
            m.memory_warning_bytes.clone(),
        );
        r.register(
            "memory_critical_bytes",
            "MEMORY_CRITICAL_THRESHOLD in bytes",
            m.memory_critical_bytes.clone(),
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
        #[cfg(feature = "count-alloc")]
        {
            use std::fmt::Write as _;
            let _ = write!(
                out,
                "# TYPE switchboard_alloc_calls counter\nswitchboard_alloc_calls_total {}\n\
                 # TYPE switchboard_alloc_bytes counter\nswitchboard_alloc_bytes_total {}\n",
                crate::alloc_count::calls(),
                crate::alloc_count::bytes()
            );
        }
        encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedLabels;

    #[test]
    fn client_supplied_labels_are_bounded() {
        let labels = BoundedLabels::default();
        assert_eq!(labels.value(" P2P ", "unspecified"), "p2p");
        assert_eq!(labels.value("", "unspecified"), "unspecified");
        assert_eq!(labels.value("has space", "x"), "other");
        assert_eq!(labels.value(&"a".repeat(33), "x"), "other");
        for i in 1..BoundedLabels::MAX {
            assert_eq!(labels.value(&format!("m{i}"), "x"), format!("m{i}"));
        }
        assert_eq!(labels.value("one-too-many", "x"), "other");
        assert_eq!(
            labels.value("p2p", "x"),
            "p2p",
            "known values keep their label"
        );
    }
}
