//! Configuration: one typed [`Config`] whose `Default` is the embedded defaults, loaded from
//! command-line flags and environment variables (the seeds' names where they had one).
//!
//! Every setting is validated before any port is bound; [`Config::from_args`] reports all
//! invalid settings at once and `main` exits with status 64 (`EX_USAGE`).
//!
//! Durations accept a unit (`250ms`, `30s`, `5m`, `3h`); a bare number is milliseconds, as
//! in the OctateCode seed (`ROOM_INACTIVITY_TIMEOUT=10800000`). Sizes accept `k`/`m`
//! suffixes (binary). Memory thresholds are megabytes of resident memory.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::Parser;

/// The secret the OctateCode seed shipped with; refused in production.
pub const DEFAULT_AUTH_SECRET: &str = "dev-secret-change-in-production";

/// Command-line flags, each also read from the environment variable shown in `--help`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: a WebRTC signaling and rendezvous server",
    long_about = "Switchboard introduces WebRTC peers: it authenticates them, keeps rooms, \
                  relays SDP offers/answers and ICE candidates, and notices when peers vanish. \
                  It speaks the OctateCode, Socket.io, rendezvous (nt-backend-wrtc) and y-webrtc \
                  signaling dialects. Every flag can also be set by its environment variable."
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// HTTP API port; every WebSocket endpoint is also served here.
    #[arg(long, env = "PORT", default_value = "3000")]
    pub port: String,
    /// OctateCode signaling WebSocket port (any path).
    #[arg(long, env = "SIGNALING_PORT", default_value = "3001")]
    pub signaling_port: String,
    /// Socket.io (seed 003) port: the Vibe REST API and Socket.io at `/socket.io/`.
    #[arg(long, env = "SOCKETIO_PORT", default_value = "4000")]
    pub socketio_port: String,
    /// `development` or `production` (production requires tokens and an admin key).
    #[arg(long, env = "NODE_ENV", default_value = "development")]
    pub node_env: String,
    /// Same as NODE_ENV=production.
    #[arg(long)]
    pub production: bool,
    /// Comma-separated allowed origins for CORS and the WebSocket Origin check; empty allows any.
    #[arg(long, env = "CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// HMAC secret for signing and verifying JWT tokens (HS256).
    #[arg(long, env = "AUTH_SECRET", default_value = DEFAULT_AUTH_SECRET, hide_default_value = false)]
    pub auth_secret: String,
    /// Lifetime of tokens issued by POST /api/auth/token.
    #[arg(long, env = "TOKEN_TTL", default_value = "1h")]
    pub token_ttl: String,
    /// Bearer key for token issuing and the admin endpoints (required in production).
    #[arg(long, env = "ADMIN_API_KEY", default_value = "")]
    pub admin_api_key: String,
    /// A room with no activity for this long is closed.
    #[arg(long, env = "ROOM_INACTIVITY_TIMEOUT", default_value = "3h")]
    pub room_inactivity_timeout: String,
    /// A peer that sends nothing (not even a pong) for this long is removed.
    #[arg(long, env = "PEER_HEARTBEAT_TIMEOUT", default_value = "60s")]
    pub peer_heartbeat_timeout: String,
    /// How often the room sweep runs.
    #[arg(long, env = "CLEANUP_CHECK_INTERVAL", default_value = "60s")]
    pub cleanup_check_interval: String,
    /// How long an empty room survives before the sweep removes it.
    #[arg(long, env = "EMPTY_ROOM_GRACE", default_value = "30s")]
    pub empty_room_grace: String,
    /// WebSocket ping interval (the first ping of each connection is jittered).
    #[arg(long, env = "PING_INTERVAL", default_value = "25s")]
    pub ping_interval: String,
    /// Resident memory (MB) above which idle rooms are swept.
    #[arg(long, env = "MEMORY_WARNING_THRESHOLD", default_value = "200")]
    pub memory_warning_threshold: String,
    /// Resident memory (MB) above which new connections and rooms are refused.
    #[arg(long, env = "MEMORY_CRITICAL_THRESHOLD", default_value = "300")]
    pub memory_critical_threshold: String,
    /// How often resident memory is sampled.
    #[arg(long, env = "MEMORY_CHECK_INTERVAL", default_value = "5s")]
    pub memory_check_interval: String,
    /// Peers per room, 0 = unlimited.
    #[arg(long, env = "MAX_PEERS_PER_ROOM", default_value = "0")]
    pub max_peers_per_room: String,
    /// Rooms alive at once, 0 = unlimited.
    #[arg(long, env = "MAX_ROOMS", default_value = "10000")]
    pub max_rooms: String,
    /// Largest accepted WebSocket message; larger ones get an error reply.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value = "64k")]
    pub max_frame_bytes: String,
    /// Messages per second per connection (burst of twice that), 0 = unlimited.
    #[arg(long, env = "MAX_MESSAGES_PER_SECOND", default_value = "100")]
    pub max_messages_per_second: String,
    /// HTTP API requests per second per client IP (burst of twice that), 0 = unlimited.
    #[arg(long, env = "HTTP_REQUESTS_PER_SECOND", default_value = "50")]
    pub http_requests_per_second: String,
    /// Concurrent WebSocket connections per client IP, 0 = unlimited.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value = "0")]
    pub max_connections_per_ip: String,
    /// Concurrent WebSocket connections in total, 0 = unlimited.
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "0")]
    pub max_connections: String,
    /// WebSocket read buffer per connection, allocated at connect, and the most read per
    /// read call (bytes; smaller saves idle memory, larger saves read calls under load).
    #[arg(long, env = "WS_READ_BUFFER", default_value = "512")]
    pub ws_read_buffer: String,
    /// WebSocket write buffer: frames are batched up to this before a socket write (bytes).
    #[arg(long, env = "WS_WRITE_BUFFER", default_value = "8k")]
    pub ws_write_buffer: String,
    /// Events a peer's outbox holds before the peer is closed as too slow.
    #[arg(long, env = "OUTBOX_CAPACITY", default_value = "256")]
    pub outbox_capacity: String,
    /// Deadline to authenticate (production) or join (rendezvous) after connecting.
    #[arg(long, env = "AUTH_TIMEOUT", default_value = "10s")]
    pub auth_timeout: String,
    /// Shared key the rendezvous dialect (`/ws?room=`) requires as `?key=`; empty: none.
    #[arg(
        long,
        env = "RENDEZVOUS_WS_KEY",
        default_value = "",
        hide_env_values = true
    )]
    pub rendezvous_ws_key: String,
    /// Rendezvous rooms idle this long are closed; rendezvous codes live this long.
    #[arg(long, env = "ROOM_TTL", default_value = "10m")]
    pub room_ttl: String,
    /// WebSocket ping interval of the rendezvous dialect (`/ws?room=`).
    #[arg(long, env = "HEARTBEAT", default_value = "20s")]
    pub heartbeat: String,
    /// Peers per rendezvous room (`/ws?room=`), 0 = only the server-wide limit.
    #[arg(long, env = "RENDEZVOUS_MAX_PEERS", default_value = "2")]
    pub rendezvous_max_peers: String,
    /// How long shutdown waits for peers to receive their close frames.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s")]
    pub shutdown_timeout: String,
    /// Runtime worker threads; 0 = one per CPU core this process may run on.
    #[arg(long, env = "WORKER_THREADS", default_value = "0")]
    pub worker_threads: String,
    /// Path of the Prometheus endpoint on PORT (nt-backend-wrtc's `METRICS_ROUTE`).
    #[arg(long, env = "METRICS_ROUTE", default_value = "/metrics")]
    pub metrics_route: String,
    /// trace, debug, info, warn or error (or a tracing filter directive).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// text, json, or auto (json in production, text otherwise).
    #[arg(long, env = "LOG_FORMAT", default_value = "auto")]
    pub log_format: String,
    /// Comma-separated STUN URLs handed to clients (GET /api/ice-servers, OctateCode auth).
    #[arg(long, env = "STUN_URLS", default_value = "")]
    pub stun_urls: String,
    /// Comma-separated TURN URLs handed to clients, e.g. turn:host:3478?transport=udp.
    #[arg(long, env = "TURN_URLS", default_value = "")]
    pub turn_urls: String,
    /// coturn `static-auth-secret`: with it, TURN credentials follow the TURN REST scheme.
    #[arg(long, env = "TURN_SECRET", default_value = "", hide_env_values = true)]
    pub turn_secret: String,
    /// Lifetime of handed-out TURN credentials.
    #[arg(long, env = "TURN_TTL", default_value = "3600s")]
    pub turn_ttl: String,
    /// Serve the browser SDK (/sdk/switchboard.js) and the demo editor (/demo/) on PORT: on or off.
    #[arg(long, env = "DEMO", default_value = "on")]
    pub demo: String,
    /// ES-module URL of Yjs in the demo's import map (a public CDN by default).
    #[arg(long, env = "DEMO_YJS_URL", default_value = "https://esm.sh/yjs@13")]
    pub demo_yjs_url: String,
}

/// Run mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Auth optional, permissive defaults.
    Development,
    /// Tokens required, admin endpoints need `ADMIN_API_KEY`, secrets must be set.
    Production,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration. `Config::default()` is what `switchboard` runs with when
/// nothing is set; tests build it with struct update syntax and port 0.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address. Default `0.0.0.0`.
    pub host: IpAddr,
    /// HTTP port. Default 3000.
    pub port: u16,
    /// OctateCode signaling port. Default 3001.
    pub signaling_port: u16,
    /// Socket.io port (Vibe REST API and `/socket.io/`). Default 4000.
    pub socketio_port: u16,
    /// Development or production. Default development.
    pub mode: Mode,
    /// Allowed origins; empty allows any. Default empty.
    pub cors_origins: Vec<String>,
    /// JWT HMAC secret. Default [`DEFAULT_AUTH_SECRET`] (refused in production).
    pub auth_secret: String,
    /// Token lifetime. Default 1 h.
    pub token_ttl: Duration,
    /// Admin bearer key; `None` when unset. Default unset.
    pub admin_api_key: Option<String>,
    /// Room inactivity timeout. Default 3 h.
    pub room_inactivity_timeout: Duration,
    /// Peer silence timeout. Default 60 s.
    pub peer_heartbeat_timeout: Duration,
    /// Sweep interval. Default 60 s.
    pub cleanup_check_interval: Duration,
    /// Empty room grace. Default 30 s.
    pub empty_room_grace: Duration,
    /// WebSocket ping interval. Default 25 s.
    pub ping_interval: Duration,
    /// Memory warning threshold, bytes. Default 200 MB.
    pub memory_warning_bytes: u64,
    /// Memory critical threshold, bytes. Default 300 MB.
    pub memory_critical_bytes: u64,
    /// Memory sampling interval. Default 5 s.
    pub memory_check_interval: Duration,
    /// Peers per room, 0 = unlimited. Default 0.
    pub max_peers_per_room: usize,
    /// Rooms, 0 = unlimited. Default 10 000.
    pub max_rooms: usize,
    /// Largest accepted message, bytes. Default 64 KiB.
    pub max_frame_bytes: usize,
    /// Messages per second per connection, 0 = unlimited. Default 100.
    pub max_messages_per_second: u32,
    /// HTTP requests per second per IP, 0 = unlimited. Default 50.
    pub http_requests_per_second: u32,
    /// Connections per IP, 0 = unlimited. Default 0.
    pub max_connections_per_ip: usize,
    /// Connections in total, 0 = unlimited. Default 0.
    pub max_connections: usize,
    /// WebSocket read buffer, bytes. Default 512 (see BENCHMARKS.md for the trade-off).
    pub ws_read_buffer: usize,
    /// WebSocket write batching threshold, bytes. Default 8 KiB.
    pub ws_write_buffer: usize,
    /// Outbox capacity per peer. Default 256.
    pub outbox_capacity: usize,
    /// Authentication deadline. Default 10 s.
    pub auth_timeout: Duration,
    /// Rendezvous `?key=` secret (`RENDEZVOUS_WS_KEY`); `None` when unset. Default unset.
    pub rendezvous_ws_key: Option<String>,
    /// Rendezvous room inactivity timeout and rendezvous code lifetime (`ROOM_TTL`).
    /// Default 10 min.
    pub room_ttl: Duration,
    /// Rendezvous dialect ping interval (`HEARTBEAT`). Default 20 s.
    pub heartbeat: Duration,
    /// Peers per rendezvous room (`RENDEZVOUS_MAX_PEERS`), 0 = server-wide limit only.
    /// Default 2.
    pub rendezvous_max_peers: usize,
    /// Shutdown grace. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Runtime worker threads, 0 = one per available core. Default 0.
    pub worker_threads: usize,
    /// Path of the Prometheus endpoint. Default `/metrics`.
    pub metrics_route: String,
    /// Log filter. Default `info`.
    pub log_level: String,
    /// Log format. Default text in development, JSON in production.
    pub log_format: LogFormat,
    /// STUN URLs handed to clients. Default empty.
    pub stun_urls: Vec<String>,
    /// TURN URLs handed to clients. Default empty.
    pub turn_urls: Vec<String>,
    /// TURN REST shared secret (coturn `static-auth-secret`); `None` when unset. Default unset.
    pub turn_secret: Option<String>,
    /// TURN credential lifetime. Default 1 h.
    pub turn_ttl: Duration,
    /// Serve `/sdk/switchboard.js` and `/demo/` (`DEMO`). Default on.
    pub demo: bool,
    /// Yjs ES-module URL for the demo's import map (`DEMO_YJS_URL`). Default `https://esm.sh/yjs@13`.
    pub demo_yjs_url: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 3000,
            signaling_port: 3001,
            socketio_port: 4000,
            mode: Mode::Development,
            cors_origins: Vec::new(),
            auth_secret: DEFAULT_AUTH_SECRET.to_owned(),
            token_ttl: Duration::from_secs(3600),
            admin_api_key: None,
            room_inactivity_timeout: Duration::from_secs(3 * 3600),
            peer_heartbeat_timeout: Duration::from_secs(60),
            cleanup_check_interval: Duration::from_secs(60),
            empty_room_grace: Duration::from_secs(30),
            ping_interval: Duration::from_secs(25),
            memory_warning_bytes: 200 << 20,
            memory_critical_bytes: 300 << 20,
            memory_check_interval: Duration::from_secs(5),
            max_peers_per_room: 0,
            max_rooms: 10_000,
            max_frame_bytes: 64 << 10,
            max_messages_per_second: 100,
            http_requests_per_second: 50,
            max_connections_per_ip: 0,
            max_connections: 0,
            ws_read_buffer: 512,
            ws_write_buffer: 8 << 10,
            outbox_capacity: 256,
            auth_timeout: Duration::from_secs(10),
            rendezvous_ws_key: None,
            room_ttl: Duration::from_secs(600),
            heartbeat: Duration::from_secs(20),
            rendezvous_max_peers: 2,
            shutdown_timeout: Duration::from_secs(10),
            worker_threads: 0,
            metrics_route: "/metrics".to_owned(),
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: Duration::from_secs(3600),
            demo: true,
            demo_yjs_url: "https://esm.sh/yjs@13".to_owned(),
        }
    }
}

/// Every invalid setting, one per line, naming its environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// Collects parse failures so that all of them are reported together.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn take<T>(&mut self, var: &str, value: &str, parsed: Result<T, String>, fallback: T) -> T {
        parsed.unwrap_or_else(|why| {
            self.0.push(format!("  {var}={value:?}: {why}"));
            fallback
        })
    }
}

impl Config {
    /// Validates parsed flags into a configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] listing every invalid setting.
    pub fn from_args(a: &Args) -> Result<Self, ConfigError> {
        let d = Self::default();
        let mut p = Problems::default();
        let mode = match a.node_env.to_ascii_lowercase().as_str() {
            _ if a.production => Mode::Production,
            "production" | "prod" => Mode::Production,
            "development" | "dev" | "test" | "" => Mode::Development,
            _ => {
                p.0.push(format!(
                    "  NODE_ENV={:?}: expected development or production",
                    a.node_env
                ));
                Mode::Development
            }
        };
        let host = p.take(
            "HOST",
            &a.host,
            a.host.parse().map_err(|_| "not an IP address".into()),
            d.host,
        );
        let port = p.take("PORT", &a.port, parse_port(&a.port), d.port);
        let signaling_port = p.take(
            "SIGNALING_PORT",
            &a.signaling_port,
            parse_port(&a.signaling_port),
            d.signaling_port,
        );
        let socketio_port = p.take(
            "SOCKETIO_PORT",
            &a.socketio_port,
            parse_port(&a.socketio_port),
            d.socketio_port,
        );
        let dur = |p: &mut Problems, var: &str, v: &str, fb: Duration| {
            p.take(var, v, parse_duration(v), fb)
        };
        let token_ttl = dur(&mut p, "TOKEN_TTL", &a.token_ttl, d.token_ttl);
        let room_inactivity_timeout = dur(
            &mut p,
            "ROOM_INACTIVITY_TIMEOUT",
            &a.room_inactivity_timeout,
            d.room_inactivity_timeout,
        );
        let peer_heartbeat_timeout = dur(
            &mut p,
            "PEER_HEARTBEAT_TIMEOUT",
            &a.peer_heartbeat_timeout,
            d.peer_heartbeat_timeout,
        );
        let cleanup_check_interval = dur(
            &mut p,
            "CLEANUP_CHECK_INTERVAL",
            &a.cleanup_check_interval,
            d.cleanup_check_interval,
        );
        let empty_room_grace = dur(
            &mut p,
            "EMPTY_ROOM_GRACE",
            &a.empty_room_grace,
            d.empty_room_grace,
        );
        let ping_interval = dur(&mut p, "PING_INTERVAL", &a.ping_interval, d.ping_interval);
        let memory_check_interval = dur(
            &mut p,
            "MEMORY_CHECK_INTERVAL",
            &a.memory_check_interval,
            d.memory_check_interval,
        );
        let auth_timeout = dur(&mut p, "AUTH_TIMEOUT", &a.auth_timeout, d.auth_timeout);
        let room_ttl = dur(&mut p, "ROOM_TTL", &a.room_ttl, d.room_ttl);
        let heartbeat = dur(&mut p, "HEARTBEAT", &a.heartbeat, d.heartbeat);
        let rendezvous_max_peers = p.take(
            "RENDEZVOUS_MAX_PEERS",
            &a.rendezvous_max_peers,
            parse_count(&a.rendezvous_max_peers),
            d.rendezvous_max_peers,
        );
        if room_ttl.is_zero() {
            p.0.push("  ROOM_TTL: must be greater than zero".into());
        }
        if heartbeat.is_zero() {
            p.0.push("  HEARTBEAT: must be greater than zero".into());
        }
        if !heartbeat.is_zero() && peer_heartbeat_timeout <= heartbeat {
            p.0.push(format!(
                "  HEARTBEAT={:?}: must be shorter than PEER_HEARTBEAT_TIMEOUT ({peer_heartbeat_timeout:?}) or every rendezvous peer times out",
                a.heartbeat
            ));
        }
        let shutdown_timeout = dur(
            &mut p,
            "SHUTDOWN_TIMEOUT",
            &a.shutdown_timeout,
            d.shutdown_timeout,
        );
        let mb = |p: &mut Problems, var: &str, v: &str, fb: u64| {
            p.take(var, v, parse_count(v).map(|n| (n as u64) << 20), fb)
        };
        let memory_warning_bytes = mb(
            &mut p,
            "MEMORY_WARNING_THRESHOLD",
            &a.memory_warning_threshold,
            d.memory_warning_bytes,
        );
        let memory_critical_bytes = mb(
            &mut p,
            "MEMORY_CRITICAL_THRESHOLD",
            &a.memory_critical_threshold,
            d.memory_critical_bytes,
        );
        let count =
            |p: &mut Problems, var: &str, v: &str, fb: usize| p.take(var, v, parse_count(v), fb);
        let max_peers_per_room = count(&mut p, "MAX_PEERS_PER_ROOM", &a.max_peers_per_room, 0);
        let max_rooms = count(&mut p, "MAX_ROOMS", &a.max_rooms, d.max_rooms);
        let max_frame_bytes = count(
            &mut p,
            "MAX_FRAME_BYTES",
            &a.max_frame_bytes,
            d.max_frame_bytes,
        );
        let max_messages_per_second = count(
            &mut p,
            "MAX_MESSAGES_PER_SECOND",
            &a.max_messages_per_second,
            d.max_messages_per_second as usize,
        );
        let http_requests_per_second = count(
            &mut p,
            "HTTP_REQUESTS_PER_SECOND",
            &a.http_requests_per_second,
            d.http_requests_per_second as usize,
        );
        let max_connections_per_ip = count(
            &mut p,
            "MAX_CONNECTIONS_PER_IP",
            &a.max_connections_per_ip,
            0,
        );
        let max_connections = count(&mut p, "MAX_CONNECTIONS", &a.max_connections, 0);
        let ws_read_buffer = count(
            &mut p,
            "WS_READ_BUFFER",
            &a.ws_read_buffer,
            d.ws_read_buffer,
        );
        let ws_write_buffer = count(
            &mut p,
            "WS_WRITE_BUFFER",
            &a.ws_write_buffer,
            d.ws_write_buffer,
        );
        if ws_read_buffer < 256 {
            p.0.push(format!(
                "  WS_READ_BUFFER={:?}: must be at least 256 bytes",
                a.ws_read_buffer
            ));
        }
        let worker_threads = count(&mut p, "WORKER_THREADS", &a.worker_threads, 0);
        let outbox_capacity = count(
            &mut p,
            "OUTBOX_CAPACITY",
            &a.outbox_capacity,
            d.outbox_capacity,
        );
        let log_format = match a.log_format.to_ascii_lowercase().as_str() {
            "auto" | "" if mode == Mode::Production => LogFormat::Json,
            "auto" | "" | "text" | "plain" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                p.0.push(format!(
                    "  LOG_FORMAT={:?}: expected text, json or auto",
                    a.log_format
                ));
                LogFormat::Text
            }
        };
        let metrics_route = a.metrics_route.trim().to_owned();
        if let Err(why) = check_metrics_route(&metrics_route) {
            p.0.push(format!("  METRICS_ROUTE={:?}: {why}", a.metrics_route));
        }
        let admin_api_key = Some(a.admin_api_key.trim().to_owned()).filter(|k| !k.is_empty());
        let turn_ttl = dur(&mut p, "TURN_TTL", &a.turn_ttl, d.turn_ttl);
        let stun_urls = url_list(&a.stun_urls);
        let turn_urls = url_list(&a.turn_urls);
        let turn_secret = Some(a.turn_secret.clone()).filter(|s| !s.is_empty());
        if turn_ttl < Duration::from_secs(1) {
            p.0.push(format!("  TURN_TTL={:?}: must be at least 1s", a.turn_ttl));
        }
        for (var, urls, schemes) in [
            ("STUN_URLS", &stun_urls, &["stun:", "stuns:"]),
            ("TURN_URLS", &turn_urls, &["turn:", "turns:"]),
        ] {
            for u in urls
                .iter()
                .filter(|u| !schemes.iter().any(|s| u.starts_with(s)))
            {
                p.0.push(format!(
                    "  {var}: {u:?} must start with {} or {}",
                    schemes[0], schemes[1]
                ));
            }
        }
        if turn_secret.is_some() && turn_urls.is_empty() {
            p.0.push("  TURN_SECRET: set, but TURN_URLS is empty".into());
        }
        let demo = match a.demo.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => true,
            "off" | "false" | "0" | "no" => false,
            _ => {
                p.0.push(format!("  DEMO={:?}: expected on or off", a.demo));
                d.demo
            }
        };
        let demo_yjs_url = a.demo_yjs_url.trim().to_owned();
        if !["https://", "http://", "/"]
            .iter()
            .any(|s| demo_yjs_url.starts_with(s))
        {
            p.0.push(format!(
                "  DEMO_YJS_URL={:?}: expected an http(s) URL or an absolute path",
                a.demo_yjs_url
            ));
        }

        // Cross-field rules.
        if ping_interval.is_zero() {
            p.0.push("  PING_INTERVAL: must be greater than zero".into());
        }
        if peer_heartbeat_timeout <= ping_interval && !ping_interval.is_zero() {
            p.0.push(format!(
                "  PEER_HEARTBEAT_TIMEOUT={:?}: must be longer than PING_INTERVAL ({ping_interval:?}) or every peer times out",
                a.peer_heartbeat_timeout
            ));
        }
        if cleanup_check_interval.is_zero() {
            p.0.push("  CLEANUP_CHECK_INTERVAL: must be greater than zero".into());
        }
        if memory_check_interval.is_zero() {
            p.0.push("  MEMORY_CHECK_INTERVAL: must be greater than zero".into());
        }
        if memory_critical_bytes < memory_warning_bytes {
            p.0.push(format!(
                "  MEMORY_CRITICAL_THRESHOLD={:?}: must not be below MEMORY_WARNING_THRESHOLD ({:?})",
                a.memory_critical_threshold, a.memory_warning_threshold
            ));
        }
        if max_frame_bytes < 1024 {
            p.0.push(format!(
                "  MAX_FRAME_BYTES={:?}: must be at least 1k",
                a.max_frame_bytes
            ));
        }
        if outbox_capacity == 0 {
            p.0.push("  OUTBOX_CAPACITY: must be at least 1".into());
        }
        if port != 0 && port == signaling_port {
            p.0.push(format!(
                "  SIGNALING_PORT={:?}: must differ from PORT",
                a.signaling_port
            ));
        }
        if socketio_port != 0 && (socketio_port == port || socketio_port == signaling_port) {
            p.0.push(format!(
                "  SOCKETIO_PORT={:?}: must differ from PORT and SIGNALING_PORT",
                a.socketio_port
            ));
        }
        if mode == Mode::Production {
            if a.auth_secret == DEFAULT_AUTH_SECRET || a.auth_secret.len() < 16 {
                p.0.push(
                    "  AUTH_SECRET: production needs a secret of at least 16 characters other than the default"
                        .into(),
                );
            }
            if admin_api_key.is_none() {
                p.0.push("  ADMIN_API_KEY: production needs an admin key for token issuing and the admin API".into());
            }
        } else if a.auth_secret.is_empty() {
            p.0.push("  AUTH_SECRET: must not be empty".into());
        }
        if !p.0.is_empty() {
            return Err(ConfigError(p.0));
        }
        Ok(Self {
            host,
            port,
            signaling_port,
            socketio_port,
            mode,
            cors_origins: a
                .cors_origins
                .split(',')
                .map(|s| s.trim().trim_end_matches('/').to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            auth_secret: a.auth_secret.clone(),
            token_ttl,
            admin_api_key,
            room_inactivity_timeout,
            peer_heartbeat_timeout,
            cleanup_check_interval,
            empty_room_grace,
            ping_interval,
            memory_warning_bytes,
            memory_critical_bytes,
            memory_check_interval,
            max_peers_per_room,
            max_rooms,
            max_frame_bytes,
            max_messages_per_second: u32::try_from(max_messages_per_second).unwrap_or(u32::MAX),
            http_requests_per_second: u32::try_from(http_requests_per_second).unwrap_or(u32::MAX),
            max_connections_per_ip,
            max_connections,
            ws_read_buffer,
            ws_write_buffer,
            outbox_capacity,
            auth_timeout,
            rendezvous_ws_key: Some(a.rendezvous_ws_key.clone()).filter(|k| !k.is_empty()),
            room_ttl,
            heartbeat,
            rendezvous_max_peers,
            shutdown_timeout,
            worker_threads,
            metrics_route,
            log_level: a.log_level.clone(),
            log_format,
            stun_urls,
            turn_urls,
            turn_secret,
            turn_ttl,
            demo,
            demo_yjs_url,
        })
    }

    /// Whether production rules apply.
    pub fn is_production(&self) -> bool {
        self.mode == Mode::Production
    }

    /// The registry limits derived from this configuration.
    pub fn limits(&self) -> switchboard_core::Limits {
        switchboard_core::Limits {
            max_peers_per_room: self.max_peers_per_room,
            max_rooms: self.max_rooms,
            outbox_capacity: self.outbox_capacity,
        }
    }
}

/// A comma-separated list, trimmed, empty entries dropped.
fn url_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_port(v: &str) -> Result<u16, String> {
    v.trim()
        .parse()
        .map_err(|_| "expected a port number 0-65535".to_owned())
}

/// Parses `250ms`, `30s`, `5m`, `3h`, `1d`; a bare number is milliseconds.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        "expected a duration such as 250ms, 30s, 5m, 3h or a number of milliseconds".to_owned()
    })?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n.saturating_mul(1000),
        "m" | "min" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    Ok(Duration::from_millis(ms))
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

/// Parses a count or size: `100`, `64k`, `1m` (binary multiples).
pub fn parse_count(v: &str) -> Result<usize, String> {
    let v = v.trim().to_ascii_lowercase();
    let (num, mult) = match v.strip_suffix(['k', 'm', 'g']) {
        Some(n) if v.ends_with('k') => (n, 1usize << 10),
        Some(n) if v.ends_with('m') => (n, 1 << 20),
        Some(n) => (n, 1 << 30),
        None => (v.as_str(), 1),
    };
    num.trim()
        .parse::<usize>()
        .map(|n| n.saturating_mul(mult))
        .map_err(|_| "expected a non-negative whole number (k and m suffixes allowed)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["switchboard"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).expect("flags parse")
    }

    #[test]
    fn the_embedded_defaults_are_valid_and_match_default() {
        let c = Config::from_args(&args(&[])).unwrap();
        let d = Config::default();
        assert_eq!(c.port, d.port);
        assert_eq!(c.signaling_port, d.signaling_port);
        assert_eq!(c.room_inactivity_timeout, d.room_inactivity_timeout);
        assert_eq!(c.max_frame_bytes, 65536);
        assert_eq!(c.mode, Mode::Development);
    }

    #[test]
    fn durations_take_units_and_bare_milliseconds() {
        assert_eq!(parse_duration("10800000"), Ok(Duration::from_secs(10800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }

    #[test]
    fn the_metrics_route_is_configurable_but_cannot_shadow_a_route() {
        let c = Config::from_args(&args(&["--metrics-route", "/internal/prom"])).unwrap();
        assert_eq!(c.metrics_route, "/internal/prom");
        for bad in [
            "metrics",
            "/",
            "/api/stats",
            "/ws",
            "/socket.io/x",
            "/m/{id}",
            "/a//b",
        ] {
            let e = Config::from_args(&args(&["--metrics-route", bad])).unwrap_err();
            assert!(e.to_string().contains("METRICS_ROUTE"), "{bad}: {e}");
        }
    }

    #[test]
    fn every_bad_setting_is_reported_at_once() {
        let err = Config::from_args(&args(&[
            "--port",
            "http",
            "--ping-interval",
            "never",
            "--max-rooms=-3",
            "--node-env",
            "staging",
        ]))
        .unwrap_err();
        let text = err.to_string();
        for var in ["PORT=", "PING_INTERVAL=", "MAX_ROOMS=", "NODE_ENV="] {
            assert!(text.contains(var), "{var} missing from:\n{text}");
        }
    }

    #[test]
    fn production_refuses_the_default_secret_and_a_missing_admin_key() {
        let err = Config::from_args(&args(&["--production"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AUTH_SECRET"), "{err}");
        assert!(err.contains("ADMIN_API_KEY"), "{err}");
        let ok = Config::from_args(&args(&[
            "--production",
            "--auth-secret",
            "a-long-enough-production-secret",
            "--admin-api-key",
            "k",
        ]))
        .unwrap();
        assert!(ok.is_production());
        assert_eq!(ok.log_format, LogFormat::Json);
    }
}
