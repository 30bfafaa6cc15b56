//! Configuration: one typed [`Config`], parsed by clap from command-line flags and
//! environment variables (the seeds' names where they had one).
//!
//! Each setting's default is written once, as its `default_value_t`; `Config::default()`
//! is the same parse with nothing set, so `--help`, the README's table (a test compares
//! them) and the embedded defaults cannot drift apart. Values are typed as they are
//! written: durations ([`Span`]: `250ms`, `30s`, `5m`, `3h`, or a bare number of
//! milliseconds as in the OctateCode seed), sizes ([`Size`]: `512`, `64k`, `1m`), comma
//! lists ([`List`]) and address ranges ([`Cidrs`]).
//!
//! A configuration file (`--config switchboard.toml`, [`file`]) sets the same names as the
//! environment; the environment and flags override it. [`Config::load`] reports every
//! invalid setting at once (bad values, a file's with their lines, and cross-field rules
//! alike), and `main` exits with status 64 (`EX_USAGE`) before binding any port.
//!
//! Layout: this file has the settings and loading; `check` runs each given value through
//! its setting's parser, `rules` the cross-field rules ([`Config::validate`]), `values`
//! the value types.

mod check;
pub mod file;
mod rules;
#[cfg(test)]
mod tests;
mod values;

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use self::check::check_values;
pub use self::file::ConfigFile;
pub use self::values::{Cidrs, Count, DIALECTS, Dialects, List, Size, Span};

/// The secret the OctateCode seed shipped with; refused in production.
pub const DEFAULT_AUTH_SECRET: &str = "dev-secret-change-in-production";

/// The validated configuration. Every field is a flag and an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Parser, serde::Serialize)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: a WebRTC signaling and rendezvous server",
    long_about = "Switchboard introduces WebRTC peers: it authenticates them, keeps rooms, \
                  relays SDP offers/answers and ICE candidates, and notices when peers vanish. \
                  It speaks the OctateCode, Socket.io, rendezvous (nt-backend-wrtc) and y-webrtc \
                  signaling dialects. Every flag can also be set by its environment variable. \
                  Durations take ms/s/m/h/d (a bare number is milliseconds); sizes take k/m/g."
)]
pub struct Config {
    /// Print every setting's effective value as a configuration file (`NAME = value`,
    /// secrets left out) that --config accepts, and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
    /// Read settings from this TOML file: `NAME = value` with the environment variables'
    /// names. The environment and flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub host: IpAddr,
    /// HTTP API port; every WebSocket endpoint is also served here.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// OctateCode signaling WebSocket port (any path).
    #[arg(long, env = "SIGNALING_PORT", default_value_t = 3001)]
    pub signaling_port: u16,
    /// Socket.io (seed 003) port: the Vibe REST API and Socket.io at `/socket.io/`.
    #[arg(long, env = "SOCKETIO_PORT", default_value_t = 4000)]
    pub socketio_port: u16,
    /// development or production (production requires tokens and an admin key).
    #[arg(long, env = "NODE_ENV", default_value_t = NodeEnv::Development)]
    pub node_env: NodeEnv,
    /// Same as NODE_ENV=production.
    #[arg(long)]
    pub production: bool,
    /// Comma-separated allowed origins for CORS and the WebSocket Origin check; empty allows any.
    #[arg(long, env = "CORS_ORIGINS", default_value_t)]
    pub cors_origins: List,
    /// HMAC secret for signing and verifying JWT tokens (HS256).
    #[arg(long, env = "AUTH_SECRET", default_value = DEFAULT_AUTH_SECRET, hide_env_values = true)]
    pub auth_secret: String,
    /// Lifetime of tokens issued by POST /api/auth/token.
    #[arg(long, env = "TOKEN_TTL", default_value_t = Span::secs(3600))]
    pub token_ttl: Span,
    /// Bearer key for token issuing and the admin endpoints (required in production).
    #[arg(long, env = "ADMIN_API_KEY", hide_env_values = true)]
    pub admin_api_key: Option<String>,
    /// Failed authentication attempts (wrong admin keys, forged or unreadable tokens) one
    /// client IP may make per minute before all its attempts are refused for the rest of
    /// the minute (0 = unlimited).
    #[arg(long, env = "AUTH_FAILURES_PER_MINUTE", default_value_t = 20)]
    pub auth_failures_per_minute: u32,
    /// Dialects whose connections must present a token: auto (all in production, none in
    /// development), all, none, or a list of octate, socketio, rendezvous, nt, ywebrtc.
    #[arg(long, env = "REQUIRE_TOKEN", default_value_t)]
    pub require_token: Dialects,
    /// A room with no activity for this long is closed.
    #[arg(long, env = "ROOM_INACTIVITY_TIMEOUT", default_value_t = Span::secs(3 * 3600))]
    pub room_inactivity_timeout: Span,
    /// A peer that sends nothing (not even a pong) for this long is removed.
    #[arg(long, env = "PEER_HEARTBEAT_TIMEOUT", default_value_t = Span::secs(60))]
    pub peer_heartbeat_timeout: Span,
    /// How often the room sweep runs (at least as often as UNJOINED_ROOM_TTL).
    #[arg(long, env = "CLEANUP_CHECK_INTERVAL", default_value_t = Span::secs(60))]
    pub cleanup_check_interval: Span,
    /// How long a room emptied by its last member leaving survives.
    #[arg(long, env = "EMPTY_ROOM_GRACE", default_value_t = Span::secs(30))]
    pub empty_room_grace: Span,
    /// How long a room created empty (POST /api/rooms) waits for its first member.
    #[arg(long, env = "UNJOINED_ROOM_TTL", default_value_t = Span::secs(60))]
    pub unjoined_room_ttl: Span,
    /// WebSocket ping interval (the first ping of each connection is jittered).
    #[arg(long, env = "PING_INTERVAL", default_value_t = Span::secs(25))]
    pub ping_interval: Span,
    /// Resident memory (MB) above which empty rooms are swept at once.
    #[arg(long, env = "MEMORY_WARNING_THRESHOLD", default_value_t = 200)]
    pub memory_warning_threshold: u64,
    /// Resident memory (MB) above which new connections and rooms are refused.
    #[arg(long, env = "MEMORY_CRITICAL_THRESHOLD", default_value_t = 300)]
    pub memory_critical_threshold: u64,
    /// How often resident memory is sampled.
    #[arg(long, env = "MEMORY_CHECK_INTERVAL", default_value_t = Span::secs(5))]
    pub memory_check_interval: Span,
    /// Peers per room, 0 = unlimited.
    #[arg(long, env = "MAX_PEERS_PER_ROOM", default_value_t = 0)]
    pub max_peers_per_room: usize,
    /// Rooms alive at once, 0 = unlimited.
    #[arg(long, env = "MAX_ROOMS", default_value_t = 10_000)]
    pub max_rooms: usize,
    /// Rooms one client IP may create per minute, in every dialect together (0 = unlimited).
    #[arg(long, env = "ROOM_CREATIONS_PER_MINUTE", default_value_t = 60)]
    pub room_creations_per_minute: u32,
    /// Largest accepted WebSocket message; larger ones get an error reply (4x this closes).
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = Size(64 << 10))]
    pub max_frame_bytes: Size,
    /// Messages per second per connection (burst of twice that), 0 = unlimited.
    #[arg(long, env = "MAX_MESSAGES_PER_SECOND", default_value_t = 100)]
    pub max_messages_per_second: u32,
    /// HTTP requests per second per client IP on every port (burst of twice that), 0 = unlimited.
    #[arg(long, env = "HTTP_REQUESTS_PER_SECOND", default_value_t = 50)]
    pub http_requests_per_second: u32,
    /// Concurrent WebSocket and Socket.io connections per client IP (a NAT or a proxy that
    /// is not in TRUSTED_PROXIES counts as one client), 0 = unlimited.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 1000)]
    pub max_connections_per_ip: usize,
    /// Concurrent WebSocket and Socket.io connections in total: auto (the descriptor limit
    /// less a tenth kept for HTTP requests and probes), a number, or 0 = unlimited.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = Count::Auto)]
    pub max_connections: Count,
    /// Time a connection has to send a complete request head, from connecting or from the
    /// previous response; a silent or slow client is closed.
    #[arg(long, env = "REQUEST_HEADER_TIMEOUT", default_value_t = Span::secs(10))]
    pub request_header_timeout: Span,
    /// Time a WebSocket message has to arrive whole once its first byte has (every
    /// dialect, fragmented messages included); 0 = no deadline.
    #[arg(long, env = "MESSAGE_TIMEOUT", default_value_t = Span::secs(10))]
    pub message_timeout: Span,
    /// Proxies whose X-Forwarded-For / Forwarded headers name the client (comma list of
    /// addresses or CIDR ranges); from anyone else these headers are ignored.
    #[arg(long, env = "TRUSTED_PROXIES", default_value_t)]
    pub trusted_proxies: Cidrs,
    /// WebSocket read buffer per connection and the most read per read call (smaller saves
    /// idle memory, larger saves read calls under load).
    #[arg(long, env = "WS_READ_BUFFER", default_value_t = Size(512))]
    pub ws_read_buffer: Size,
    /// WebSocket write buffer: frames are batched up to this before a socket write.
    #[arg(long, env = "WS_WRITE_BUFFER", default_value_t = Size(8 << 10))]
    pub ws_write_buffer: Size,
    /// Events a peer's outbox holds before the peer is closed as too slow.
    #[arg(long, env = "OUTBOX_CAPACITY", default_value_t = 256)]
    pub outbox_capacity: usize,
    /// Bytes a peer's outgoing queue holds before the peer is closed as too slow (with
    /// `OUTBOX_CAPACITY`, whichever is reached first).
    #[arg(long, env = "OUTBOX_MAX_BYTES", default_value_t = Size(1 << 20))]
    pub outbox_max_bytes: Size,
    /// Bytes waiting in all outgoing queues together past which new connections are
    /// refused (503) and relays get `server_busy`, until the slow readers holding them are
    /// closed; at most half of `MEMORY_CRITICAL_THRESHOLD`.
    #[arg(long, env = "BUFFERED_BYTES_MAX", default_value_t = Size(128 << 20))]
    pub buffered_bytes_max: Size,
    /// Bytes a room's mailbox (the nt dialect's `send`) keeps at most; the oldest go first.
    #[arg(long, env = "MAILBOX_MAX_BYTES", default_value_t = Size(1 << 20))]
    pub mailbox_max_bytes: Size,
    /// Deadline to authenticate (production) or join (rendezvous) after connecting.
    #[arg(long, env = "AUTH_TIMEOUT", default_value_t = Span::secs(10))]
    pub auth_timeout: Span,
    /// Shared key the rendezvous dialect (`/ws?room=`) requires as `?key=`; unset: none.
    #[arg(long, env = "RENDEZVOUS_WS_KEY", hide_env_values = true)]
    pub rendezvous_ws_key: Option<String>,
    /// Rendezvous rooms idle this long are closed; rendezvous codes live this long.
    #[arg(long, env = "ROOM_TTL", default_value_t = Span::secs(600))]
    pub room_ttl: Span,
    /// WebSocket ping interval of the rendezvous dialect (`/ws?room=`).
    #[arg(long, env = "HEARTBEAT", default_value_t = Span::secs(20))]
    pub heartbeat: Span,
    /// Peers per rendezvous room (`/ws?room=`), 0 = only the server-wide limit.
    #[arg(long, env = "RENDEZVOUS_MAX_PEERS", default_value_t = 2)]
    pub rendezvous_max_peers: usize,
    /// How long shutdown waits for peers to receive their close frames.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = Span::secs(10))]
    pub shutdown_timeout: Span,
    /// Runtime worker threads; 0 = one per CPU core this process may run on.
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// Path of the Prometheus endpoint on PORT (nt-backend-wrtc's `METRICS_ROUTE`).
    #[arg(long, env = "METRICS_ROUTE", default_value = "/metrics")]
    pub metrics_route: String,
    /// trace, debug, info, warn or error (or a tracing filter directive).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// text, json, or auto (json in production, text otherwise).
    #[arg(long, env = "LOG_FORMAT", default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// Comma-separated STUN URLs handed to clients (GET /api/ice-servers, OctateCode auth).
    #[arg(long, env = "STUN_URLS", default_value_t)]
    pub stun_urls: List,
    /// Comma-separated TURN URLs handed to clients, e.g. turn:host:3478?transport=udp.
    #[arg(long, env = "TURN_URLS", default_value_t)]
    pub turn_urls: List,
    /// coturn `static-auth-secret`: with it, TURN credentials follow the TURN REST scheme.
    #[arg(long, env = "TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Lifetime of handed-out TURN credentials.
    #[arg(long, env = "TURN_TTL", default_value_t = Span::secs(3600))]
    pub turn_ttl: Span,
    /// Serve the browser SDK (/sdk/switchboard.js) and the demo editor (/demo/) on PORT: on or off.
    #[arg(long, env = "DEMO", default_value = "on", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
    /// ES-module URL of Yjs in the demo's import map (default: the pinned Yjs build embedded
    /// in the binary, so the demo needs no other server).
    #[arg(long, env = "DEMO_YJS_URL", default_value = "/demo/yjs.js")]
    pub demo_yjs_url: String,
    /// Cluster mode: the Redis server every node shares (redis://[user:password@]host:port[/db]).
    /// Unset: one node, everything in memory.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// This node's name in logs, /api/info and metrics (default: the host name and a random suffix).
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster mode: a node that has not renewed its lease for this long (renewed every third
    /// of it) is dead to the others, who remove its peers.
    #[arg(long, env = "CLUSTER_LEASE", default_value_t = Span::secs(3))]
    pub cluster_lease: Span,
    /// Cluster mode: a node that cannot reach Redis for this long closes its peers so that
    /// they reconnect elsewhere (a shorter cut past the lease closes them once Redis is back).
    #[arg(long, env = "CLUSTER_FENCE_TIMEOUT", default_value_t = Span::secs(30))]
    pub cluster_fence_timeout: Span,
}

/// `NODE_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NodeEnv {
    /// Tokens optional, admin endpoints open.
    #[value(alias = "dev", alias = "test")]
    Development,
    /// Tokens required, admin endpoints need `ADMIN_API_KEY`, secrets must be set.
    #[value(alias = "prod")]
    Production,
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON in production, text otherwise.
    Auto,
    /// Human-readable lines.
    #[value(alias = "plain")]
    Text,
    /// One JSON object per line.
    Json,
}

macro_rules! display_value_enum {
    ($($ty:ty),*) => {$(
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let v = self.to_possible_value().expect("no variant is skipped");
                f.write_str(v.get_name())
            }
        }
    )*};
}
display_value_enum!(NodeEnv, LogFormat);

/// Settings serialise as they are written in the environment (`30s`, `1m`, `auto`), for
/// [`Config::effective`].
macro_rules! serialize_as_written {
    ($($ty:ty),*) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_written!(NodeEnv, LogFormat, Span, Size, List, Cidrs, Dialects, Count);

impl Default for Config {
    /// The embedded defaults: the parse of an empty command line with no environment.
    fn default() -> Self {
        Self::parse_without_env(["switchboard"]).expect("the embedded defaults parse")
    }
}

/// Every invalid setting, one per line, naming its environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// Why [`Config::load_from`] did not return a configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--help`, `--version`, an unknown flag, a missing value: clap's own message, to be
    /// printed with [`clap::Error::exit`].
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// Settings with invalid values or that contradict each other.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl Config {
    /// Loads the configuration from the process's arguments and environment.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load() -> Result<Self, LoadError> {
        Self::load_from(std::env::args_os())
    }

    /// Loads the configuration from `args`, the process environment and the configuration
    /// file `--config` names (flags over the environment over the file over the embedded
    /// defaults): every value is checked first, so that all bad ones are reported together
    /// (a file's with their lines), then the cross-field rules.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load_from<I, T>(args: I) -> Result<Self, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::load_with(
            Self::command(),
            &args.into_iter().map(Into::into).collect::<Vec<_>>(),
        )
    }

    /// The environment names of every setting: the keys a configuration file may have.
    pub fn settings() -> Vec<&'static str> {
        static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        NAMES
            .get_or_init(|| {
                Self::command()
                    .get_arguments()
                    .filter_map(|a| a.get_env())
                    .map(|e| e.to_string_lossy().into_owned())
                    .collect()
            })
            .iter()
            .map(String::as_str)
            .collect()
    }

    /// Parses `args` alone, ignoring the environment (for `Default` and tests); a
    /// configuration file named by `--config` is read as by [`Config::load_from`].
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn parse_without_env<I, T>(args: I) -> Result<Self, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::load_with(
            Self::command_without_env(),
            &args.into_iter().map(Into::into).collect::<Vec<_>>(),
        )
    }

    /// [`Config::load_from`] with `base` as the command: the configuration file (when
    /// `--config` is given), then the values `base` reads (flags, and the environment unless
    /// `base` ignores it), each checked, then the cross-field rules.
    fn load_with(base: clap::Command, args: &[OsString]) -> Result<Self, LoadError> {
        let mut problems = Vec::new();
        let mut from_file = Vec::new();
        let mut origin = String::new();
        if let Some(path) = file::config_path(args) {
            origin = path.to_string_lossy().into_owned();
            let read = ConfigFile::read(Path::new(&path), &Self::settings());
            problems.extend(read.problems);
            let (good, bad) = check::check_file(&Self::command(), &origin, read.entries);
            problems.extend(bad);
            problems.sort_by_key(|p| file::problem_line(p));
            from_file = good;
        }
        let cmd = check::with_file(base, &from_file);
        let checked = check_values(&cmd, args)?;
        problems.extend(checked.problems);
        if !problems.is_empty() {
            // Report the cross-field rules too, judged with the good values and the
            // defaults in place of the bad ones.
            if let Ok(partial) = Self::from_matches(
                &check::with_file(Self::command_without_env(), &from_file),
                checked.good,
            ) && let Err(more) = partial.validate()
            {
                problems.extend(more.0);
            }
            return Err(ConfigError(problems).into());
        }
        let config = Self::from_matches(&cmd, args)?;
        if let Err(broken) = config.validate() {
            return Err(ConfigError(located(broken.0, &cmd, args, (&origin, &from_file))).into());
        }
        Ok(config)
    }

    fn command_without_env() -> clap::Command {
        Self::command().mut_args(|a| a.env(None::<&str>))
    }

    fn from_matches<I, T>(cmd: &clap::Command, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut config = Self::from_arg_matches(&cmd.clone().try_get_matches_from(args)?)?;
        config.normalise();
        Ok(config)
    }

    /// Empty strings in optional secrets mean "unset"; origins compare without a trailing
    /// slash.
    fn normalise(&mut self) {
        for opt in [
            &mut self.admin_api_key,
            &mut self.rendezvous_ws_key,
            &mut self.turn_secret,
            &mut self.redis_url,
            &mut self.node_id,
        ] {
            if opt.as_deref().is_some_and(str::is_empty) {
                *opt = None;
            }
        }
        for o in &mut self.cors_origins.0 {
            while o.ends_with('/') {
                o.pop();
            }
        }
        self.metrics_route = self.metrics_route.trim().to_owned();
    }

    /// Every setting as the server runs with it, in `--help` order: its environment name
    /// and value, secrets masked (`(set)` / `unset`), and what `auto` resolves to
    /// (`max_connections`: the connection limit the descriptor budget gives). For
    /// `--print-config` and `/api/info` (admin).
    pub fn effective(&self, max_connections: usize) -> Vec<(String, String)> {
        let values = serde_json::to_value(self).unwrap_or_default();
        let mut out = Vec::new();
        for arg in Self::command().get_arguments() {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
                continue;
            };
            let v = &values[arg.get_id().as_str()];
            let shown = match v {
                serde_json::Value::Null => "unset".to_owned(),
                _ if arg.is_hide_env_values_set() => "(set)".to_owned(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let shown = match env {
                "MAX_CONNECTIONS" if self.max_connections == Count::Auto => {
                    format!("auto ({max_connections})")
                }
                "REQUIRE_TOKEN" if self.require_token == Dialects::Auto => {
                    let on: Vec<&str> = DIALECTS
                        .iter()
                        .copied()
                        .filter(|d| self.requires_token(d))
                        .collect();
                    let on = if on.is_empty() {
                        "none".to_owned()
                    } else {
                        on.join(",")
                    };
                    format!("auto ({on})")
                }
                "BUFFERED_BYTES_MAX"
                    if self.buffered_bytes_cap() < self.buffered_bytes_max.get() =>
                {
                    format!("{shown} (capped at {})", Size(self.buffered_bytes_cap()))
                }
                _ => shown,
            };
            out.push((env.to_owned(), shown));
        }
        out
    }

    /// Whether connections of `dialect` must present a token (`REQUIRE_TOKEN`).
    pub fn requires_token(&self, dialect: &str) -> bool {
        self.require_token.contains(dialect, self.is_production())
    }

    /// Whether production rules apply (`NODE_ENV=production` or `--production`).
    pub fn is_production(&self) -> bool {
        self.production || self.node_env == NodeEnv::Production
    }

    /// The log format in effect (`auto` resolved).
    pub fn effective_log_format(&self) -> LogFormat {
        match self.log_format {
            LogFormat::Auto if self.is_production() => LogFormat::Json,
            LogFormat::Auto => LogFormat::Text,
            other => other,
        }
    }

    /// `MEMORY_WARNING_THRESHOLD` in bytes.
    pub fn memory_warning_bytes(&self) -> u64 {
        self.memory_warning_threshold.saturating_mul(1 << 20)
    }

    /// The effective `BUFFERED_BYTES_MAX`: at most half the critical memory threshold.
    pub fn buffered_bytes_cap(&self) -> usize {
        let half_critical = usize::try_from(self.memory_critical_bytes() / 2).unwrap_or(usize::MAX);
        self.buffered_bytes_max.get().min(half_critical)
    }

    /// `MEMORY_CRITICAL_THRESHOLD` in bytes.
    pub fn memory_critical_bytes(&self) -> u64 {
        self.memory_critical_threshold.saturating_mul(1 << 20)
    }

    /// The largest message any connection may send before it is closed with 1009 (four
    /// times `MAX_FRAME_BYTES`, at least 1 MiB); messages between the two get an error reply.
    pub fn hard_frame_cap(&self) -> usize {
        self.max_frame_bytes.get().saturating_mul(4).max(1 << 20)
    }

    /// What the unfinished inbound messages of one client address may hold together: eight
    /// messages at the hard frame cap (8 MiB by default), so that one address cannot hold
    /// the server's memory up for `MESSAGE_TIMEOUT` however many connections it opens.
    pub fn unfinished_bytes_per_address(&self) -> usize {
        self.hard_frame_cap().saturating_mul(8)
    }

    /// How often the room sweep runs: `CLEANUP_CHECK_INTERVAL`, or more often when a room
    /// created empty would otherwise outlive `UNJOINED_ROOM_TTL` by more than half of it.
    pub fn sweep_interval(&self) -> Duration {
        self.cleanup_check_interval
            .get()
            .min(self.unjoined_room_ttl.get() / 2)
            .max(Duration::from_millis(10))
    }

    /// The registry limits derived from this configuration.
    pub fn limits(&self) -> switchboard_core::Limits {
        switchboard_core::Limits {
            max_peers_per_room: self.max_peers_per_room,
            max_rooms: self.max_rooms,
            outbox_capacity: self.outbox_capacity,
            mailbox_bytes: self.mailbox_max_bytes.get(),
            separate_secured: self.is_production(),
            ..switchboard_core::Limits::default()
        }
    }
}

/// Cross-field problems with the file line of the setting they start with, when that
/// setting's value came from the configuration file (not overridden by the environment or a
/// flag).
fn located(
    problems: Vec<String>,
    cmd: &clap::Command,
    args: &[OsString],
    (origin, from_file): (&str, &[file::Entry]),
) -> Vec<String> {
    use clap::parser::ValueSource;
    let Ok(raw) = check::raw_command(cmd).try_get_matches_from(args) else {
        return problems;
    };
    let line_of = |problem: &str| {
        let name = problem.trim_start().split(['=', ':']).next()?;
        let entry = from_file.iter().rev().find(|e| e.name == name)?;
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name))?;
        (raw.value_source(arg.get_id().as_str()) == Some(ValueSource::DefaultValue))
            .then_some(entry.line)
    };
    problems
        .into_iter()
        .map(|p| match line_of(&p) {
            Some(line) => format!("{p} ({origin}:{line})"),
            None => p,
        })
        .collect()
}

/// A value of type `T` for a setting, as clap's value parsers need it.
impl FromStr for NodeEnv {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        <Self as ValueEnum>::from_str(s, true)
    }
}
