//! `soak`: every kind of load at once for `--duration` seconds, watching the server for
//! errors and leaks.
//!
//! **Setup** (not part of the duration): `--idle` N peers join rooms of 2 and are held, as in
//! `idle`; `--pairs` P relay pairs join, one room each, as in `relay`; `--churners` C anchor
//! peers create one room each, as in `churn`.
//!
//! **Steady phase** (`--duration` seconds), all at once:
//! - the idle peers stay joined, reading (so pings are answered); a peer the server drops
//!   is an error;
//! - every relay pair sends `--rate` messages per second (per pair) on a fixed schedule, at
//!   most `--inflight` undelivered, checked for loss, order and duplicates as in `relay`;
//! - C churners loop connect → join their anchor's room → ack → leave → close, pausing
//!   `--churn-pause` after each cycle; the anchor must hear every leave;
//! - `--slowloris` S raw TCP sockets connect to the server's HTTP port (`--http`) and
//!   dribble an unfinished WebSocket upgrade request, one byte every
//!   `--slowloris-interval` seconds. The server closes each one once its request-head
//!   deadline passes (`REQUEST_HEADER_TIMEOUT`, 10 s by default) and the socket reconnects
//!   at once; the closes are counted. Starts are staggered so the crowd does not move in
//!   lockstep. A socket left open longer than `--slowloris-deadline` is an error.
//! - once a second, the server's RSS and open descriptors (`/proc/<pid>/fd`) are sampled.
//!
//! **Teardown**: the relay drains, then everyone leaves and closes; the server's descriptor
//! count is polled until it is back within `--fd-tolerance` of the count before setup (for
//! at most `--settle` seconds).
//!
//! **Verdict**: 0 errors of any kind (join failures, dropped peers, relay errors, lost,
//! reordered or duplicated messages, stalled senders, missing leave announcements, failed
//! slowloris connects, overdue slowloris sockets); RSS flat after the warm-up (the first
//! `--warmup-fraction` of the duration or `--warmup-min` seconds, whichever is longer):
//! (max − min) / min ≤ `--rss-tolerance` %; descriptors after ≤ before + `--fd-tolerance`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::churn::{self, Anchor};
use super::idle::{self, HoldEnd};
use super::relay::{self, Load, Running};
use super::{Progress, per_sec, pick};
use crate::client::{Counters, Ctx};
use crate::net::{self, Target};
use crate::procfs::{self, Server};
use crate::report::{Report, round2};
use crate::stats::{ErrorSamples, Latencies, SeqTotals};

mod parts;
use self::parts::*;

/// Idle rooms and relay pairs joining at once during setup.
const SETUP_CONCURRENCY: usize = 32;
/// Seconds between two readings of the server.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Latency samples kept over the whole relay (every n-th message is timed past that).
const LATENCY_SAMPLES: u64 = 1_000_000;
/// Relay messages tracked at most (one byte each in the sequence trackers).
const MAX_TRACKED_MESSAGES: u64 = 200_000_000;
/// Bound on one slowloris connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Slowloris starts are spread over this long (the server's default request-head
/// deadline), or over half the duration if that is shorter.
const SLOWLORIS_STAGGER: Duration = Duration::from_secs(10);
/// Cycles per churner per second that no machine reaches: the count bound of a churner.
const MAX_CYCLES_PER_SEC: u64 = 10_000;
/// How often the descriptor count is polled after teardown, and the last wait before the
/// final reading once it is within tolerance.
const SETTLE_POLL: Duration = Duration::from_millis(250);
const SETTLE_FINAL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Seconds the combined load runs, after setup [default: 600; --quick: 5].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Idle peers held joined, in rooms of 2 [default: 15000; --quick: 50].
    #[arg(long)]
    pub idle: Option<usize>,
    /// Relay pairs, one room each [default: 200; --quick: 4].
    #[arg(long)]
    pub pairs: Option<usize>,
    /// Messages per second PER PAIR, each sender on a fixed schedule (unlike `relay
    /// --rate`, which is the total). For half the measured maximum: max / 2 / pairs
    /// (scripts/soak.sh does this) [default: 100; --quick: 20].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Relay messages in flight per pair at most [default: 32; --quick: 4].
    #[arg(long)]
    pub inflight: Option<usize>,
    /// Seconds to wait for missing relay messages after the last send, and the longest a
    /// sender waits for credit [default: 5].
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    /// Churn clients, each with its own anchor room [default: 20; --quick: 2].
    #[arg(long)]
    pub churners: Option<usize>,
    /// Seconds a churner pauses after each cycle; 0: flat out (churn then competes with the
    /// relay for the server's core) [default: 0.1].
    #[arg(long)]
    pub churn_pause: Option<f64>,
    /// Slowloris sockets [default: 500; --quick: 10].
    #[arg(long)]
    pub slowloris: Option<usize>,
    /// The server's HTTP address for the slowloris crowd, HOST:PORT on loopback (e.g.
    /// 127.0.0.1:3000) [default: the host and port of --url, which is an HTTP listener
    /// too].
    #[arg(long)]
    pub http: Option<String>,
    /// Seconds between two bytes of a slowloris request [default: 2].
    #[arg(long)]
    pub slowloris_interval: Option<f64>,
    /// A slowloris socket still open after this many seconds is an error (the server's
    /// REQUEST_HEADER_TIMEOUT is 10 s by default) [default: 30].
    #[arg(long)]
    pub slowloris_deadline: Option<f64>,
    /// Warm-up, as a fraction of the duration; RSS is judged after it [default: 0.2].
    #[arg(long)]
    pub warmup_fraction: Option<f64>,
    /// Shortest warm-up in seconds [default: 10; --quick: 1].
    #[arg(long)]
    pub warmup_min: Option<f64>,
    /// Largest allowed RSS spread after the warm-up, (max − min) / min in percent
    /// [default: 5].
    #[arg(long)]
    pub rss_tolerance: Option<f64>,
    /// Descriptors the server may hold after the run beyond its count before [default: 4].
    #[arg(long)]
    pub fd_tolerance: Option<u64>,
    /// Longest wait, in seconds, for the server's descriptors to come back after teardown
    /// [default: 15].
    #[arg(long)]
    pub settle: Option<f64>,
    /// Also write the per-second server readings to this CSV file (`t_s,rss_kib,fds`, t
    /// in seconds into the steady phase), to see the RSS curve behind the verdict.
    #[arg(long)]
    pub samples_out: Option<std::path::PathBuf>,
}

/// A run's sizes and bounds, after defaults.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    duration: Duration,
    idle: usize,
    pairs: usize,
    rate: f64,
    inflight: usize,
    drain: Duration,
    churners: usize,
    churn_pause: Duration,
    slowloris: usize,
    slowloris_interval: Duration,
    slowloris_deadline: Duration,
    warmup: Duration,
    rss_tolerance_pct: f64,
    fd_tolerance: u64,
    settle: Duration,
}

impl SoakArgs {
    fn plan(&self, quick: bool) -> Result<Plan> {
        let secs = |name: &str, v: f64| -> Result<Duration> {
            anyhow::ensure!(
                v.is_finite() && v >= 0.0,
                "--{name} must be a number of seconds, 0 or more"
            );
            Ok(Duration::from_secs_f64(v))
        };
        let duration = secs("duration", pick(self.duration, quick, 5.0, 600.0))?;
        let fraction = self.warmup_fraction.unwrap_or(0.2);
        anyhow::ensure!(
            (0.0..1.0).contains(&fraction),
            "--warmup-fraction must be at least 0 and below 1"
        );
        let warmup_min = secs("warmup-min", pick(self.warmup_min, quick, 1.0, 10.0))?;
        let rate = pick(self.rate, quick, 20.0, 100.0);
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number of messages per second per pair"
        );
        let rss_tolerance_pct = self.rss_tolerance.unwrap_or(5.0);
        anyhow::ensure!(
            rss_tolerance_pct.is_finite() && rss_tolerance_pct >= 0.0,
            "--rss-tolerance must be a percentage, 0 or more"
        );
        let plan = Plan {
            duration,
            idle: pick(self.idle, quick, 50, 15_000),
            pairs: pick(self.pairs, quick, 4, 200),
            rate,
            inflight: pick(self.inflight, quick, 4, 32),
            drain: secs("drain-timeout", self.drain_timeout.unwrap_or(5.0))?,
            churners: pick(self.churners, quick, 2, 20),
            churn_pause: secs("churn-pause", self.churn_pause.unwrap_or(0.1))?,
            slowloris: pick(self.slowloris, quick, 10, 500),
            slowloris_interval: secs("slowloris-interval", self.slowloris_interval.unwrap_or(2.0))?,
            slowloris_deadline: secs(
                "slowloris-deadline",
                self.slowloris_deadline.unwrap_or(30.0),
            )?,
            warmup: warmup(duration, fraction, warmup_min),
            rss_tolerance_pct,
            fd_tolerance: self.fd_tolerance.unwrap_or(4),
            settle: secs("settle", self.settle.unwrap_or(15.0))?,
        };
        anyhow::ensure!(plan.inflight > 0, "--inflight must be at least 1");
        anyhow::ensure!(
            plan.slowloris == 0 || !plan.slowloris_interval.is_zero(),
            "--slowloris-interval must be above 0"
        );
        anyhow::ensure!(
            plan.pairs as u64 * plan.messages_per_pair() <= MAX_TRACKED_MESSAGES,
            "--pairs × --rate × --duration exceeds {MAX_TRACKED_MESSAGES} messages"
        );
        Ok(plan)
    }
}

impl Plan {
    /// What each sender sends: its schedule filled over the duration.
    fn messages_per_pair(&self) -> u64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = (self.rate * self.duration.as_secs_f64()).floor() as u64;
        n
    }
}

/// The warm-up: `fraction` of `duration` or `min`, whichever is longer, and never more than
/// the duration.
fn warmup(duration: Duration, fraction: f64, min: Duration) -> Duration {
    duration.mul_f64(fraction).max(min).min(duration)
}

/// Checks what can be checked before anything runs: sizes, the `--http` address (loopback
/// only), and that `--duration-limit` leaves room for setup and teardown.
///
/// # Errors
/// Bad sizes, a non-loopback address, or a duration limit too short for the run.
pub fn check(args: &SoakArgs, quick: bool, url: &str, limit: Duration) -> Result<()> {
    let plan = args.plan(quick)?;
    http_url(args.http.as_deref(), url)?;
    // Setup and teardown of the largest runs take a few seconds each; the settle is bounded.
    let needed = plan.duration + plan.settle + plan.drain + Duration::from_secs(30);
    if limit < needed {
        bail!(
            "--duration-limit {}s is too short for --duration {}s: setup, drain and teardown \
             need time too; pass --duration-limit {} or more",
            limit.as_secs_f64(),
            plan.duration.as_secs_f64(),
            needed.as_secs_f64().ceil()
        );
    }
    Ok(())
}

/// The `ws://HOST:PORT/` form of the slowloris target: `--http` when given (a bare
/// HOST:PORT on loopback), else the host and port of `--url`.
fn http_url(http: Option<&str>, url: &str) -> Result<String> {
    let Some(http) = http else {
        let (host, port) = net::parse_loopback_url(url)?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        return Ok(format!("ws://{host}:{port}/"));
    };
    if http.contains('/') || http.contains('?') || http.contains('@') {
        bail!("--http takes HOST:PORT (e.g. 127.0.0.1:3000), not a URL: {http:?}");
    }
    let as_url = format!("ws://{http}/");
    net::parse_loopback_url(&as_url).with_context(|| format!("--http {http:?}"))?;
    Ok(as_url)
}

/// Live figures for the progress line.
#[derive(Debug, Default)]
struct Live {
    idle_dropped: Arc<AtomicU64>,
    loris_closes: AtomicU64,
    rss_kib: AtomicU64,
    fds: AtomicU64,
}

pub async fn run(ctx: Arc<Ctx>, server: Server, args: &SoakArgs, quick: bool) -> Result<Report> {
    let plan = args.plan(quick)?;
    let loris_target = Arc::new(
        Target::resolve(
            &http_url(args.http.as_deref(), ctx.target.url())?,
            ctx.target.spreads(),
        )
        .await?,
    );
    let fds_before = server.fd_count()?;
    let rss_before = server.rss_kib()?;
    let live = Arc::new(Live::default());
    let _progress = {
        let live = live.clone();
        Progress::start(&ctx, "soak", move |c, _| {
            let dropped = live.idle_dropped.load(Ordering::Relaxed);
            format!(
                "joined {} (dropped {dropped}), relay sent {} received {}, churn cycles {} \
                 (failed {}), slowloris closes {}, server {} MiB {} fds",
                Counters::get(&c.joined),
                Counters::get(&c.sent),
                Counters::get(&c.received),
                Counters::get(&c.done).saturating_sub(dropped),
                Counters::get(&c.failed),
                live.loris_closes.load(Ordering::Relaxed),
                live.rss_kib.load(Ordering::Relaxed) / 1024,
                live.fds.load(Ordering::Relaxed),
            )
        })
    };

    // Setup: idle peers, relay pairs, churn anchors.
    let setup_start = Instant::now();
    let release = ctx.cancel.child_token();
    let idle = join_idle(&ctx, plan.idle, &release, &live.idle_dropped).await?;
    let (pairs, pair_errors) = join_pairs(&ctx, plan.pairs).await?;
    let anchor_stop = ctx.cancel.child_token();
    let mut anchors = Vec::with_capacity(plan.churners);
    let mut anchor_errors = ErrorSamples::default();
    for w in 0..plan.churners {
        match churn::start_anchor(&ctx, w, &anchor_stop).await {
            Ok(a) => anchors.push(a),
            Err(e) => anchor_errors.add(&format!("{e:#}")),
        }
    }
    let setup_elapsed = setup_start.elapsed();
    let setup_ok = idle.errors.total() + idle.skipped + pair_errors.total() + anchor_errors.total()
        == 0
        && !ctx.cancel.is_cancelled();
    // A failed setup is reported at once rather than after ten minutes of a partial load.
    let plan = if setup_ok {
        plan
    } else {
        Plan {
            duration: Duration::ZERO,
            ..plan
        }
    };
    eprintln!(
        "soak: setup took {:.1}s; running {:.0}s",
        setup_elapsed.as_secs_f64(),
        plan.duration.as_secs_f64()
    );

    // Steady phase.
    let cpu_before = server.cpu_time()?;
    let own_before = procfs::own_cpu_time().ok();
    let steal_before = procfs::steal_time().ok();
    let start = Instant::now();
    let sampling_stop = ctx.cancel.child_token();
    let sampler = tokio::spawn(sample_server(
        server.clone(),
        start,
        plan.duration,
        sampling_stop.clone(),
        live.clone(),
    ));
    let relay_stop = ctx.cancel.child_token();
    let load = Load {
        messages: plan.messages_per_pair(),
        inflight: plan.inflight,
        pace: Some(Duration::from_secs_f64(1.0 / plan.rate)),
        start,
        latency_every: (plan.pairs as u64 * plan.messages_per_pair() / LATENCY_SAMPLES).max(1),
    };
    let mut running: Vec<Running> = pairs
        .into_iter()
        .map(|(rx, tx)| Running::start(&ctx, rx, tx, load, plan.drain, &relay_stop))
        .collect();
    let churn_stop = ctx.cancel.child_token();
    let churners = start_churners(&ctx, &plan, anchors, &churn_stop);
    let loris_stop = ctx.cancel.child_token();
    let loris = start_slowloris(&plan, &loris_target, &loris_stop, &live);

    tokio::select! {
        () = ctx.cancel.cancelled() => {}
        () = tokio::time::sleep_until(start + plan.duration) => {}
    }
    sampling_stop.cancel();
    churn_stop.cancel();
    loris_stop.cancel();
    // Senders end on their schedule (now, unless they fell behind); receivers then get the
    // drain timeout to collect the rest.
    let mut tx_results = Vec::with_capacity(running.len());
    for r in &mut running {
        tx_results.push((&mut r.sender).await?);
    }
    let drain_timer = {
        let (stop, drain) = (relay_stop.clone(), plan.drain);
        tokio::spawn(async move {
            tokio::time::sleep(drain).await;
            stop.cancel();
        })
    };
    let mut rx_results = Vec::with_capacity(running.len());
    for r in &mut running {
        rx_results.push((&mut r.receiver).await?);
    }
    drain_timer.abort();
    let mut churn_out = churn::WorkerResult::default();
    let mut finished_anchors = Vec::new();
    for h in churners {
        let (r, anchor) = h.await?;
        churn_out.latencies.merge(r.latencies);
        churn_out.join_errors.merge(&r.join_errors);
        churn_out.close_errors.merge(&r.close_errors);
        churn_out.missing_left.merge(&r.missing_left);
        finished_anchors.push(anchor);
    }
    let mut loris_out = LorisResult::default();
    for h in loris {
        loris_out.merge(h.await?);
    }
    let elapsed = start.elapsed();
    let cpu_after = server.cpu_time()?;
    let own_after = procfs::own_cpu_time().ok();
    let steal_after = procfs::steal_time().ok();
    let (samples, sample_error) = sampler.await?;
    if let Some(path) = &args.samples_out {
        std::fs::write(path, samples_csv(&samples))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    relay_stop.cancel();

    // What the relay delivered.
    let mut totals = SeqTotals::default();
    let mut latencies = Latencies::default();
    let mut rx_errors = ErrorSamples::default();
    for (r, t) in rx_results.iter_mut().zip(&tx_results) {
        totals.add(r.tracker.totals(t.sent));
        latencies.merge(std::mem::take(&mut r.latencies));
        rx_errors.merge(&r.errors);
    }
    let stalled = tx_results.iter().filter(|t| t.stalled).count();
    let mut tx_errors = ErrorSamples::default();
    for e in tx_results.iter().filter_map(|t| t.error.as_deref()) {
        tx_errors.add(e);
    }

    // Teardown: everyone leaves and closes; then the descriptors must come back.
    let idle_dropped = live.idle_dropped.load(Ordering::Relaxed);
    release.cancel();
    let mut close_errors = ErrorSamples::default();
    let mut drop_reasons = ErrorSamples::default();
    for h in idle.holders {
        match h.await? {
            HoldEnd::Released(Ok(())) => {}
            HoldEnd::Released(Err(e)) => close_errors.add(&format!("{e:#}")),
            HoldEnd::Dropped(why) => drop_reasons.add(&why),
        }
    }
    let (tx_server_errors, relay_close_errors) =
        relay::close_pairs(&ctx, running, tx_results, rx_results).await?;
    close_errors.merge(&relay_close_errors);
    anchor_stop.cancel();
    let anchor_drops = churn::release_anchors(&ctx, finished_anchors, &mut close_errors).await?;
    close_errors.merge(&churn_out.close_errors);
    let settled = settle_fds(&server, fds_before, plan.fd_tolerance, plan.settle).await?;
    let rss_after = server.rss_kib()?;

    // The report.
    let flat = Flatness::of(&samples, plan.warmup);
    let mut report = Report::new("soak");
    report.row("duration_s", plan.duration.as_secs_f64());
    report.row("warmup_s", round2(plan.warmup.as_secs_f64()));
    report.row("setup_s", round2(setup_elapsed.as_secs_f64()));
    report.row("elapsed_s", round2(elapsed.as_secs_f64()));

    report.row("idle_peers", plan.idle);
    report.row("idle_joined", idle.joined);
    report.row("idle_join_failed", idle.errors.total() + idle.skipped);
    report.row("idle_dropped", idle_dropped);

    let delivered = totals.received;
    report.row("relay_pairs", plan.pairs);
    report.row("relay_pairs_failed_setup", pair_errors.total());
    report.row("relay_rate_per_pair", plan.rate);
    report.row("relay_offered_rate", round2(plan.rate * plan.pairs as f64));
    report.row("relay_sent", totals.sent);
    report.row("relay_delivered", delivered);
    report.row("relay_lost", totals.lost);
    report.row("relay_reordered", totals.reordered);
    report.row("relay_duplicated", totals.duplicated);
    report.row("relay_unexpected", totals.unexpected);
    report.row("relay_stalled", stalled);
    report.row("relay_msgs_per_sec", round2(per_sec(delivered, elapsed)));
    report.row("relay_latency_sampled_every", load.latency_every);
    report.latency("relay_latency", latencies.percentiles(), true);

    let churn_joins = churn_out.latencies.len() as u64;
    report.row("churners", plan.churners);
    report.row("churn_pause_s", plan.churn_pause.as_secs_f64());
    report.row("churn_joins", churn_joins);
    report.row("churn_join_failed", churn_out.join_errors.total());
    report.row("churn_leave_not_announced", churn_out.missing_left.total());
    report.row("churn_joins_per_sec", round2(per_sec(churn_joins, elapsed)));
    report.latency(
        "churn_join_latency",
        churn_out.latencies.percentiles(),
        false,
    );

    report.row("slowloris_sockets", plan.slowloris);
    report.row("slowloris_http", loris_target.addr().to_string());
    report.row("slowloris_connects", loris_out.connects);
    report.row("slowloris_closes", loris_out.closes);
    report.row("slowloris_connect_failed", loris_out.connect_errors.total());
    report.row("slowloris_answered", loris_out.answered);
    report.row("slowloris_overdue", loris_out.overdue);
    let open = loris_out.open_times.percentiles();
    let ms = |us: u64| round2(us as f64 / 1000.0);
    report.row("slowloris_open_min_ms", open.map(|p| ms(p.min)));
    report.row("slowloris_open_p50_ms", open.map(|p| ms(p.p50)));
    report.row("slowloris_open_max_ms", open.map(|p| ms(p.max)));

    report.row("server_rss_before_kib", rss_before);
    report.row("server_rss_start_kib", samples.first().map(|s| s.rss_kib));
    report.row("server_rss_min_kib", flat.map(|f| f.min_kib));
    report.row("server_rss_max_kib", flat.map(|f| f.max_kib));
    report.row(
        "server_rss_spread_pct",
        flat.map(|f| round2(f.spread_pct())),
    );
    report.row("server_rss_end_kib", samples.last().map(|s| s.rss_kib));
    report.row("server_rss_after_release_kib", rss_after);
    report.row("rss_samples_judged", flat.map_or(0, |f| f.samples));
    report.row("server_fds_before", fds_before);
    report.row("server_fds_peak", samples.iter().map(|s| s.fds).max());
    report.row("server_fds_after", settled.fds);
    report.row("fd_settle_s", round2(settled.waited.as_secs_f64()));
    report.row("server_cpu_ms", cpu_ms(cpu_before, cpu_after));
    report.row("bench_cpu_ms", cpu_ms(own_before, own_after));
    if let (Some(b), Some(a)) = (steal_before, steal_after) {
        report.row(
            "host_steal_ms",
            u64::try_from(a.saturating_sub(b).as_millis()).unwrap_or(u64::MAX),
        );
    }
    report.close_errors(&close_errors);

    // The verdict.
    let mut errors = 0;
    let mut fail = |report: &mut Report, n: u64, why: String| {
        if n > 0 {
            errors += n;
            report.fail(why);
        }
    };
    fail(
        &mut report,
        idle.errors.total() + idle.skipped,
        format!(
            "{} of {} idle peers failed to join ({} skipped after an earlier failure in their \
             room): {}",
            idle.errors.total() + idle.skipped,
            plan.idle,
            idle.skipped,
            idle.errors.describe()
        ),
    );
    fail(
        &mut report,
        idle_dropped,
        format!(
            "the server dropped {idle_dropped} idle peers: {}",
            drop_reasons.describe()
        ),
    );
    fail(
        &mut report,
        pair_errors.total(),
        format!(
            "{} of {} relay pairs failed to join: {}",
            pair_errors.total(),
            plan.pairs,
            pair_errors.describe()
        ),
    );
    fail(
        &mut report,
        anchor_errors.total(),
        format!("churn anchors failed to join: {}", anchor_errors.describe()),
    );
    // Cut short, receivers stopped with up to K messages per pair in flight: not losses.
    let lost = if ctx.cancel.is_cancelled() {
        0
    } else {
        totals.lost
    };
    fail(
        &mut report,
        lost + totals.reordered + totals.duplicated + totals.unexpected,
        format!(
            "relay delivery errors: {lost} lost, {} reordered, {} duplicated, {} unexpected",
            totals.reordered, totals.duplicated, totals.unexpected
        ),
    );
    fail(
        &mut report,
        stalled as u64,
        format!(
            "{stalled} relay senders stalled: no credit back within {:?}",
            plan.drain
        ),
    );
    for (what, e) in [
        ("relay send errors", &tx_errors),
        ("relay receive errors", &rx_errors),
        ("error frames or drops on relay senders", &tx_server_errors),
        ("churn joins failed", &churn_out.join_errors),
        (
            "churn leaves not announced to the anchor",
            &churn_out.missing_left,
        ),
        ("churn anchors dropped by the server", &anchor_drops),
        ("slowloris connects failed", &loris_out.connect_errors),
    ] {
        fail(&mut report, e.total(), format!("{what}: {}", e.describe()));
    }
    fail(
        &mut report,
        loris_out.overdue,
        format!(
            "{} slowloris sockets stayed open longer than {:?}: the server did not enforce \
             its request-head deadline",
            loris_out.overdue, plan.slowloris_deadline
        ),
    );
    if let Some(e) = sample_error {
        fail(
            &mut report,
            1,
            format!("reading the server during the run: {e}"),
        );
    }
    report.row("errors", errors);
    match flat {
        Some(f) if f.spread_pct() > plan.rss_tolerance_pct => report.fail(format!(
            "server RSS not flat after the {:.0}s warm-up: {} to {} KiB ({:.2} % > {} %)",
            plan.warmup.as_secs_f64(),
            f.min_kib,
            f.max_kib,
            f.spread_pct(),
            plan.rss_tolerance_pct
        )),
        Some(_) => {}
        None if server.0.is_empty() => {
            eprintln!("note: no --server-pid: RSS and descriptor checks skipped");
        }
        None if plan.duration > plan.warmup => report.fail(
            "fewer than 2 RSS samples after the warm-up: the server could not be read".to_owned(),
        ),
        None => eprintln!("note: the warm-up covers the whole duration: RSS not judged"),
    }
    if let (Some(before), Some(after)) = (fds_before, settled.fds)
        && after > before + plan.fd_tolerance
    {
        report.fail(format!(
            "the server holds {after} descriptors after the run, {before} before \
             (tolerance {}): {} leaked",
            plan.fd_tolerance,
            after - before
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
