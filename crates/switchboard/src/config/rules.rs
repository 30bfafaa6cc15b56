//! The cross-field rules of [`Config`]: what no single value's parser can judge (a timeout
//! against an interval, production's secrets, ports that must differ, the metrics path
//! against the server's own routes). [`Config::validate`] lists every broken rule at once.

use std::time::Duration;

use super::{Config, ConfigError, DEFAULT_AUTH_SECRET, Span};

impl Config {
    /// The rules that involve more than one setting, or more than a value's type.
    ///
    /// # Errors
    /// A [`ConfigError`] listing every broken rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        let mut rule = |broken: bool, msg: String| {
            if broken {
                p.push(format!("  {msg}"));
            }
        };
        for (var, v) in [
            ("ROOM_TTL", self.room_ttl),
            ("HEARTBEAT", self.heartbeat),
            ("PING_INTERVAL", self.ping_interval),
            ("CLEANUP_CHECK_INTERVAL", self.cleanup_check_interval),
            ("MEMORY_CHECK_INTERVAL", self.memory_check_interval),
            ("UNJOINED_ROOM_TTL", self.unjoined_room_ttl),
        ] {
            rule(v.is_zero(), format!("{var}: must be greater than zero"));
        }
        rule(
            !self.ping_interval.is_zero() && self.peer_heartbeat_timeout <= self.ping_interval,
            format!(
                "PEER_HEARTBEAT_TIMEOUT={}: must be longer than PING_INTERVAL ({}) or every peer times out",
                self.peer_heartbeat_timeout, self.ping_interval
            ),
        );
        rule(
            !self.heartbeat.is_zero() && self.peer_heartbeat_timeout <= self.heartbeat,
            format!(
                "HEARTBEAT={}: must be shorter than PEER_HEARTBEAT_TIMEOUT ({}) or every rendezvous peer times out",
                self.heartbeat, self.peer_heartbeat_timeout
            ),
        );
        rule(
            self.memory_critical_threshold < self.memory_warning_threshold,
            format!(
                "MEMORY_CRITICAL_THRESHOLD={}: must not be below MEMORY_WARNING_THRESHOLD ({})",
                self.memory_critical_threshold, self.memory_warning_threshold
            ),
        );
        rule(
            self.max_frame_bytes.get() < 1024,
            format!(
                "MAX_FRAME_BYTES={}: must be at least 1k",
                self.max_frame_bytes
            ),
        );
        rule(
            self.ws_read_buffer.get() < 256,
            format!(
                "WS_READ_BUFFER={}: must be at least 256 bytes",
                self.ws_read_buffer
            ),
        );
        rule(
            self.outbox_capacity == 0,
            "OUTBOX_CAPACITY: must be at least 1".into(),
        );
        rule(
            self.turn_ttl < Span::secs(1),
            format!("TURN_TTL={}: must be at least 1s", self.turn_ttl),
        );
        for (var, urls, schemes) in [
            ("STUN_URLS", &self.stun_urls, ["stun:", "stuns:"]),
            ("TURN_URLS", &self.turn_urls, ["turn:", "turns:"]),
        ] {
            for u in urls
                .iter()
                .filter(|u| !schemes.iter().any(|s| u.starts_with(s)))
            {
                rule(
                    true,
                    format!(
                        "{var}: {u:?} must start with {} or {}",
                        schemes[0], schemes[1]
                    ),
                );
            }
        }
        rule(
            self.turn_secret.is_some() && self.turn_urls.is_empty(),
            "TURN_SECRET: set, but TURN_URLS is empty".into(),
        );
        rule(
            !["https://", "http://", "/"]
                .iter()
                .any(|s| self.demo_yjs_url.starts_with(s)),
            format!(
                "DEMO_YJS_URL={:?}: expected an http(s) URL or an absolute path",
                self.demo_yjs_url
            ),
        );
        if let Some(url) = &self.redis_url {
            rule(
                !cfg!(feature = "cluster"),
                "REDIS_URL: this build has no cluster mode (built without the `cluster` feature)"
                    .into(),
            );
            rule(
                !url.starts_with("redis://"),
                "REDIS_URL: expected redis://[user:password@]host:port[/db]".into(),
            );
        }
        rule(
            self.node_id.as_deref().is_some_and(|n| {
                n.len() > 64
                    || !n
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            }),
            "NODE_ID: 1 to 64 letters, digits, '-', '_' or '.'".into(),
        );
        rule(
            self.cluster_lease.get() < Duration::from_millis(300),
            format!("CLUSTER_LEASE={}: at least 300ms", self.cluster_lease),
        );
        rule(
            self.cluster_fence_timeout.get() < self.cluster_lease.get(),
            "CLUSTER_FENCE_TIMEOUT: must be at least CLUSTER_LEASE".into(),
        );
        if let Err(why) = check_metrics_route(&self.metrics_route) {
            rule(
                true,
                format!("METRICS_ROUTE={:?}: {why}", self.metrics_route),
            );
        }
        rule(
            self.port != 0 && self.port == self.signaling_port,
            format!(
                "SIGNALING_PORT={}: must differ from PORT",
                self.signaling_port
            ),
        );
        rule(
            self.socketio_port != 0
                && (self.socketio_port == self.port || self.socketio_port == self.signaling_port),
            format!(
                "SOCKETIO_PORT={}: must differ from PORT and SIGNALING_PORT",
                self.socketio_port
            ),
        );
        // tower-http panics on `*` in a list of origins: the server died building its
        // routers. Found by fuzzing (fuzz/fuzz_targets/config.rs).
        rule(
            self.cors_origins.iter().any(|o| o == "*"),
            "CORS_ORIGINS: \"*\" is not an origin; leave CORS_ORIGINS empty to allow any".into(),
        );
        // The key comes back as `Authorization: Bearer <key>`, read as visible ASCII and
        // trimmed: a key no header can carry would lock the admin API. Found by fuzzing
        // (fuzz/fuzz_targets/config.rs).
        if let Some(key) = &self.admin_api_key {
            rule(
                !key.bytes().all(|b| (0x20..0x7f).contains(&b)) || key.trim() != key,
                "ADMIN_API_KEY: must be printable ASCII without spaces at either end (it is sent in an Authorization header)".into(),
            );
        }
        if self.is_production() {
            rule(
                self.auth_secret == DEFAULT_AUTH_SECRET || self.auth_secret.len() < 16,
                "AUTH_SECRET: production needs a secret of at least 16 characters other than the default".into(),
            );
            rule(
                self.admin_api_key.is_none(),
                "ADMIN_API_KEY: production needs an admin key for token issuing and the admin API"
                    .into(),
            );
        } else {
            rule(
                self.auth_secret.is_empty(),
                "AUTH_SECRET: must not be empty".into(),
            );
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p))
        }
    }
}

/// Paths served on PORT that the metrics endpoint must not take over.
const RESERVED_PATHS: [&str; 11] = [
    "/",
    "/signaling",
    "/ws",
    "/y-webrtc",
    "/healthz",
    "/readyz",
    "/health",
    "/stats",
    "/info",
    "/rendezvous/code",
    "/rendezvous/redeem",
];

/// A metrics path is absolute, plain (no route parameters or wildcards), and clear of the
/// server's own routes.
fn check_metrics_route(path: &str) -> Result<(), String> {
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if !path.starts_with('/') || path.len() < 2 || !plain || path.contains("//") {
        return Err("expected an absolute path of letters, digits, '/', '-', '_' or '.'".into());
    }
    let trimmed = path.trim_end_matches('/');
    if RESERVED_PATHS.contains(&trimmed)
        || trimmed.starts_with("/api/")
        || trimmed == "/api"
        || trimmed.starts_with("/socket.io")
        || ["/demo", "/sdk"]
            .iter()
            .any(|r| trimmed == *r || trimmed.starts_with(&format!("{r}/")))
    {
        return Err("that path is already served by Switchboard".into());
    }
    Ok(())
}
