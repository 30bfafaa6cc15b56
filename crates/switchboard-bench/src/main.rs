//! `switchboard-bench`: a loopback-only load generator for Switchboard and other WebRTC
//! signaling servers.
//!
//! Scenarios (see `README.md`):
//! - `idle`: hold N joined peers; server RSS per peer.
//! - `relay`: P pairs × M messages; throughput, latency percentiles, loss/order checks,
//!   server CPU per message.
//! - `churn`: connect → join → ack → leave → close, repeatedly; joins/s, join latency,
//!   server CPU per join.
//! - `soak`: idle peers, paced relay pairs, churners and a slowloris crowd at once for a
//!   long time; 0 errors, flat server RSS, no descriptor leak.
//!
//! Layout: `dialect/` builds and reads each server's frames (no I/O); `net` checks URLs and
//! opens loopback sockets; `client` joins and leaves one peer; `scenario/` drives the runs;
//! `stats` and `report` turn samples into the verdict and the summary; `procfs` reads the
//! server's memory and CPU.

mod client;
mod dialect;
mod net;
mod procfs;
mod report;
mod scenario;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::client::{Counters, Ctx};
use crate::dialect::Kind;
use crate::net::Target;
use crate::procfs::Server;
use crate::report::Report;

/// Extra time after `--duration-limit` for a cancelled run to wind down and print its
/// report before the process exits regardless.
const HARD_STOP_GRACE: Duration = Duration::from_secs(15);

/// Load generator for WebRTC signaling servers (loopback only).
#[derive(Debug, Parser)]
#[command(name = "switchboard-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: ScenarioCmd,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct Common {
    /// Server WebSocket URL (ws:// on 127.0.0.0/8, ::1 or localhost only). Rendezvous:
    /// `ws://127.0.0.1:3000/ws` (the tool appends `?room=`); OctateCode: the signaling port,
    /// any path; matchbox: `ws://127.0.0.1:3536/` (the tool appends the room).
    #[arg(long, global = true, default_value = "ws://127.0.0.1:3001/")]
    url: String,
    /// Wire dialect of the server.
    #[arg(long, global = true, value_enum, default_value_t = Kind::Octate)]
    dialect: Kind,
    /// PID of the server process, to read its RSS and CPU time from /proc. A comma list
    /// (a cluster's nodes and its Redis) sums them.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// A second server URL (another node of a cluster): the second peer of each pair (relay:
    /// the sender; churn: the churning peers) connects here, so every message and join
    /// crosses nodes. Same rules as --url.
    #[arg(long, global = true)]
    peer_url: Option<String>,
    /// Hard wall-clock bound for the whole run, in seconds.
    #[arg(long, global = true, default_value_t = 120.0, value_parser = positive_secs)]
    duration_limit: f64,
    /// Also print the summary as one JSON line (last line of stdout).
    #[arg(long, global = true)]
    json: bool,
    /// Tiny sizes so the whole run takes a few seconds (CI smoke test). Explicit size
    /// options still win.
    #[arg(long, global = true)]
    quick: bool,
    /// Per-peer bound on connect + join, in seconds.
    #[arg(long, global = true, default_value_t = 10.0, value_parser = positive_secs)]
    join_timeout: f64,
    /// Tokio worker threads for the load generator. The default of 1 leaves the other
    /// core(s) of a small machine to the server.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Connect every client from the kernel's default source address instead of cycling
    /// over 127.0.0.2..=127.0.0.250 (limits a run to ~28k concurrent connections).
    #[arg(long, global = true)]
    no_spread: bool,
    /// Prefix for room and peer ids (default: derived from the pid and time, unique per
    /// run). Keep it to letters, digits and '-'.
    #[arg(long, global = true)]
    prefix: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ScenarioCmd {
    /// Hold N connected, joined peers and report the server's RSS per peer.
    Idle(scenario::idle::IdleArgs),
    /// P pairs × M messages; throughput, latency and delivery checks.
    Relay(scenario::relay::RelayArgs),
    /// Repeated connect → join → ack → leave → close; join rate and latency.
    Churn(scenario::churn::ChurnArgs),
    /// Idle peers, paced relay pairs, churners and slowloris sockets at once for
    /// --duration seconds; checks for errors, RSS growth and leaked descriptors.
    Soak(Box<scenario::soak::SoakArgs>),
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(report) => {
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "switchboard-bench: FAILED: {}",
                    report.failures().join("; ")
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("switchboard-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<Report> {
    let c = &cli.common;
    if c.threads == 0 {
        bail!("--threads must be at least 1");
    }
    // Check the URL before anything else so a non-loopback URL never gets further.
    net::parse_loopback_url(&c.url)?;
    if let Some(u) = &c.peer_url {
        net::parse_loopback_url(u)?;
    }
    let limit = Duration::from_secs_f64(c.duration_limit);
    if let ScenarioCmd::Soak(a) = &cli.scenario {
        scenario::soak::check(a, c.quick, &c.url, limit)?;
    }
    let prefix = c.prefix.clone().unwrap_or_else(default_prefix);
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
    {
        bail!("--prefix must be non-empty letters, digits and '-'");
    }
    let fd_limit = procfs::raise_fd_limit().context("raising the open-file limit")?;
    let server = Server(c.server_pid.clone()).check()?;
    spawn_hard_stop(limit + HARD_STOP_GRACE);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(c.threads)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = rt.block_on(async {
        let target = Target::resolve(&c.url, !c.no_spread).await?;
        let peer_target = match &c.peer_url {
            Some(u) => Some(Target::resolve(u, !c.no_spread).await?),
            None => None,
        };
        let cancel = CancellationToken::new();
        let ctx = Arc::new(Ctx {
            target,
            peer_target,
            dialect: c.dialect.build(),
            join_timeout: Duration::from_secs_f64(c.join_timeout),
            cancel: cancel.clone(),
            prefix,
            counters: Counters::default(),
            rooms: std::sync::Mutex::default(),
        });
        // The duration limit and Ctrl-C both cancel the run; the scenario then stops,
        // reports what it has, and fails.
        let limit_hit = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (cancel, limit_hit) = (cancel.clone(), limit_hit.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(limit) => {
                        limit_hit.store(true, std::sync::atomic::Ordering::Relaxed);
                        eprintln!("switchboard-bench: duration limit of {limit:?} reached, stopping");
                    }
                    r = tokio::signal::ctrl_c() => {
                        if r.is_ok() {
                            eprintln!("switchboard-bench: interrupted, stopping");
                        }
                    }
                }
                cancel.cancel();
            });
        }
        let mut report = match &cli.scenario {
            ScenarioCmd::Idle(a) => scenario::idle::run(ctx.clone(), server, a, c.quick).await,
            ScenarioCmd::Relay(a) => scenario::relay::run(ctx.clone(), server, a, c.quick).await,
            ScenarioCmd::Churn(a) => scenario::churn::run(ctx.clone(), server, a, c.quick).await,
            ScenarioCmd::Soak(a) => scenario::soak::run(ctx.clone(), server, a, c.quick).await,
        }?;
        if cancel.is_cancelled() {
            report.fail(if limit_hit.load(std::sync::atomic::Ordering::Relaxed) {
                format!("duration limit of {limit:?} reached before the run finished")
            } else {
                "interrupted".to_owned()
            });
        }
        cancel.cancel();
        report.row("dialect", ctx.dialect.name());
        report.row("url", c.url.as_str());
        if let Some(u) = &c.peer_url {
            report.row("peer_url", u.as_str());
        }
        report.row("server_pids", c.server_pid.len());
        report.row("fd_limit", fd_limit);
        anyhow::Ok(report)
    })?;
    // Do not wait for stragglers (e.g. peers still closing after a failure).
    rt.shutdown_timeout(Duration::from_secs(1));

    print!("{}", report.table());
    if c.json {
        println!("{}", report.json_line());
    }
    Ok(report)
}

/// A run-unique id prefix such as `sb-1a2b-k3x9`.
fn default_prefix() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!(
        "sb{}-{}",
        base36(u64::from(std::process::id())),
        base36(secs)
    )
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[usize::try_from(n % 36).expect("digit < 36")]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// Whatever happens inside the runtime, the process ends by `after`.
fn spawn_hard_stop(after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        eprintln!("switchboard-bench: still running {after:?} after start; exiting");
        std::process::exit(3);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn common_options_go_anywhere() {
        let cli = Cli::try_parse_from([
            "switchboard-bench",
            "relay",
            "--pairs",
            "3",
            "--dialect",
            "rendezvous",
            "--quick",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.common.dialect, Kind::Rendezvous);
        assert!(cli.common.quick && cli.common.json);
        let ScenarioCmd::Relay(a) = cli.scenario else {
            panic!()
        };
        assert_eq!(a.pairs, Some(3));
        assert!(
            Cli::try_parse_from(["switchboard-bench", "idle", "--duration-limit", "0"]).is_err()
        );
    }

    #[test]
    fn prefixes_are_short_and_safe() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        let p = default_prefix();
        assert!(
            p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{p}"
        );
    }
}
