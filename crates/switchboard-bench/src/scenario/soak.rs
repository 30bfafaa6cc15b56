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

/// CPU time between two readings, in milliseconds.
fn cpu_ms(before: Option<Duration>, after: Option<Duration>) -> Option<f64> {
    before
        .zip(after)
        .map(|(b, a)| round2(a.saturating_sub(b).as_secs_f64() * 1e3))
}

/// The idle peers, joined and held.
struct IdleSetup {
    holders: Vec<JoinHandle<HoldEnd>>,
    joined: u64,
    errors: ErrorSamples,
    skipped: u64,
}

/// Joins `n` idle peers in rooms of 2, held until `release` fires.
async fn join_idle(
    ctx: &Arc<Ctx>,
    n: usize,
    release: &CancellationToken,
    dropped: &Arc<AtomicU64>,
) -> Result<IdleSetup> {
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let rooms: Vec<_> = (0..n.div_ceil(2))
        .map(|r| {
            let peers = 2.min(n - r * 2);
            let (ctx, gate, release, dropped) =
                (ctx.clone(), gate.clone(), release.clone(), dropped.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore never closed");
                idle::join_room(&ctx, r, peers, &release, &dropped).await
            })
        })
        .collect();
    let mut out = IdleSetup {
        holders: Vec::with_capacity(n),
        joined: 0,
        errors: ErrorSamples::default(),
        skipped: 0,
    };
    for r in rooms {
        let room = r.await?;
        out.joined += room.latencies.len() as u64;
        out.holders.extend(room.holders);
        out.errors.merge(&room.errors);
        out.skipped += room.skipped;
    }
    Ok(out)
}

/// Joins the relay pairs; returns those that joined and why the others did not.
async fn join_pairs(
    ctx: &Arc<Ctx>,
    pairs: usize,
) -> Result<(
    Vec<(crate::client::Joined, crate::client::Joined)>,
    ErrorSamples,
)> {
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let setups: Vec<_> = (0..pairs)
        .map(|i| {
            let (ctx, gate) = (ctx.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore never closed");
                relay::join_pair(&ctx, i).await
            })
        })
        .collect();
    let mut ready = Vec::with_capacity(pairs);
    let mut errors = ErrorSamples::default();
    for s in setups {
        match s.await? {
            Ok(pair) => ready.push(pair),
            Err(e) => errors.add(&format!("{e:#}")),
        }
    }
    Ok((ready, errors))
}

/// One churner per anchor, cycling until `stop`.
fn start_churners(
    ctx: &Arc<Ctx>,
    plan: &Plan,
    anchors: Vec<Anchor>,
    stop: &CancellationToken,
) -> Vec<JoinHandle<(churn::WorkerResult, Anchor)>> {
    let next = Arc::new(AtomicU64::new(0));
    let churn_plan = churn::Plan {
        iterations: (anchors.len() as u64)
            .saturating_mul(plan.duration.as_secs().saturating_add(1))
            .saturating_mul(MAX_CYCLES_PER_SEC),
        pause: plan.churn_pause,
    };
    anchors
        .into_iter()
        .map(|mut anchor| {
            let (ctx, next, stop) = (ctx.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                let r = churn::worker(&ctx, &next, churn_plan, &stop, Some(&mut anchor)).await;
                (r, anchor)
            })
        })
        .collect()
}

/// One reading of the server, `at` into the steady phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: u64,
}

/// Reads the server's RSS and descriptors once a second until `stop` (at most one reading
/// per second of `duration`, plus one). Returns the readings and the error that ended them
/// early, if any. Without a server pid there is nothing to read.
async fn sample_server(
    server: Server,
    start: Instant,
    duration: Duration,
    stop: CancellationToken,
    live: Arc<Live>,
) -> (Vec<Sample>, Option<String>) {
    let mut samples = Vec::new();
    if server.0.is_empty() {
        return (samples, None);
    }
    let mut tick = tokio::time::interval_at(start, SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..=duration.as_secs() + 1 {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let reading = server.rss_kib().and_then(|r| Ok((r, server.fd_count()?)));
        match reading {
            Ok((Some(rss_kib), Some(fds))) => {
                live.rss_kib.store(rss_kib, Ordering::Relaxed);
                live.fds.store(fds, Ordering::Relaxed);
                samples.push(Sample {
                    at: start.elapsed(),
                    rss_kib,
                    fds,
                });
            }
            Ok(_) => break,
            Err(e) => return (samples, Some(format!("{e:#}"))),
        }
    }
    (samples, None)
}

/// The readings as CSV, one line per second.
fn samples_csv(samples: &[Sample]) -> String {
    let mut out = String::from("t_s,rss_kib,fds\n");
    for s in samples {
        out.push_str(&format!(
            "{:.1},{},{}\n",
            s.at.as_secs_f64(),
            s.rss_kib,
            s.fds
        ));
    }
    out
}

/// The server's RSS after the warm-up: lowest and highest reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flatness {
    min_kib: u64,
    max_kib: u64,
    samples: usize,
}

impl Flatness {
    /// Over the samples taken at or after `warmup`; `None` when fewer than two.
    fn of(samples: &[Sample], warmup: Duration) -> Option<Self> {
        let judged: Vec<u64> = samples
            .iter()
            .filter(|s| s.at >= warmup)
            .map(|s| s.rss_kib)
            .collect();
        if judged.len() < 2 {
            return None;
        }
        Some(Self {
            min_kib: *judged.iter().min()?,
            max_kib: *judged.iter().max()?,
            samples: judged.len(),
        })
    }

    /// (max − min) / min, in percent.
    fn spread_pct(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let (min, max) = (self.min_kib.max(1) as f64, self.max_kib as f64);
        (max - min) / min * 100.0
    }
}

/// The server's descriptors after teardown, and how long it took them to come back.
struct Settled {
    fds: Option<u64>,
    waited: Duration,
}

/// Polls the server's descriptor count until it is within `tolerance` of `before` (then
/// reads it once more after a short pause, for the figure) or `within` has passed.
async fn settle_fds(
    server: &Server,
    before: Option<u64>,
    tolerance: u64,
    within: Duration,
) -> Result<Settled> {
    let start = Instant::now();
    let Some(before) = before else {
        return Ok(Settled {
            fds: None,
            waited: Duration::ZERO,
        });
    };
    let polls = within.as_millis() / SETTLE_POLL.as_millis() + 1;
    let mut fds = server.fd_count()?;
    for _ in 0..polls {
        if fds.is_some_and(|n| n <= before + tolerance) {
            let waited = start.elapsed();
            tokio::time::sleep(SETTLE_FINAL).await;
            return Ok(Settled {
                fds: server.fd_count()?,
                waited,
            });
        }
        tokio::time::sleep(SETTLE_POLL).await;
        fds = server.fd_count()?;
    }
    Ok(Settled {
        fds,
        waited: start.elapsed(),
    })
}

/// What the slowloris crowd saw.
#[derive(Debug, Default)]
struct LorisResult {
    connects: u64,
    /// Connections the server closed (or reset).
    closes: u64,
    /// Connections on which the server sent something (e.g. a 408) before closing.
    answered: u64,
    /// Connections open longer than the deadline.
    overdue: u64,
    connect_errors: ErrorSamples,
    /// How long each connection the server closed had been open.
    open_times: Latencies,
}

impl LorisResult {
    fn merge(&mut self, o: LorisResult) {
        self.connects += o.connects;
        self.closes += o.closes;
        self.answered += o.answered;
        self.overdue += o.overdue;
        self.connect_errors.merge(&o.connect_errors);
        self.open_times.merge(o.open_times);
    }
}

/// What every slowloris socket shares.
struct Loris {
    target: Arc<Target>,
    request: Vec<u8>,
    interval: Duration,
    deadline: Duration,
    /// Connections per socket at most (the count bound of its loop).
    max_connects: u64,
    /// Steps (bytes sent or reads) per connection at most.
    max_steps: u64,
    stop: CancellationToken,
    live: Arc<Live>,
}

/// A WebSocket upgrade request head that never ends: the blank line is never sent.
fn loris_request(host: SocketAddr) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         User-Agent: switchboard-bench-slowloris\r\n"
    )
    .into_bytes()
}

/// Starts the slowloris sockets, their starts spread over the stagger.
fn start_slowloris(
    plan: &Plan,
    target: &Arc<Target>,
    stop: &CancellationToken,
    live: &Arc<Live>,
) -> Vec<JoinHandle<LorisResult>> {
    if plan.slowloris == 0 || plan.duration.is_zero() {
        return Vec::new();
    }
    let stagger = SLOWLORIS_STAGGER.min(plan.duration / 2);
    let ticks = plan.duration.as_secs_f64() / plan.slowloris_interval.as_secs_f64();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let loris = Arc::new(Loris {
        target: target.clone(),
        request: loris_request(target.addr()),
        interval: plan.slowloris_interval,
        deadline: plan.slowloris_deadline,
        // A connection lasts at least a round trip; ten a second would be a broken server.
        max_connects: plan.duration.as_secs().saturating_add(1).saturating_mul(10),
        max_steps: ticks.ceil() as u64 + 10_000,
        stop: stop.clone(),
        live: live.clone(),
    });
    (0..plan.slowloris)
        .map(|i| {
            let delay = stagger.mul_f64(i as f64 / plan.slowloris as f64);
            tokio::spawn(loris_socket(loris.clone(), delay))
        })
        .collect()
}

/// One slowloris socket: connect, dribble until the server closes it, reconnect; until
/// `stop`.
async fn loris_socket(l: Arc<Loris>, delay: Duration) -> LorisResult {
    let mut out = LorisResult::default();
    tokio::select! {
        () = l.stop.cancelled() => return out,
        () = tokio::time::sleep(delay) => {}
    }
    for _ in 0..l.max_connects {
        let opened = Instant::now();
        let connected = tokio::select! {
            () = l.stop.cancelled() => break,
            r = tokio::time::timeout(CONNECT_TIMEOUT, l.target.connect_tcp()) => r,
        };
        let stream = match connected {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                out.connect_errors.add(&format!("{e:#}"));
                tokio::select! {
                    () = l.stop.cancelled() => break,
                    () = tokio::time::sleep(l.interval) => continue,
                }
            }
            Err(_) => {
                out.connect_errors
                    .add(&format!("connect timed out after {CONNECT_TIMEOUT:?}"));
                continue;
            }
        };
        out.connects += 1;
        let (end, answered) = dribble(stream, &l).await;
        let open = opened.elapsed();
        out.answered += u64::from(answered);
        if open > l.deadline {
            out.overdue += 1;
        }
        match end {
            DribbleEnd::ClosedByServer => {
                out.closes += 1;
                out.open_times.record(open);
                l.live.loris_closes.fetch_add(1, Ordering::Relaxed);
            }
            DribbleEnd::Stopped => break,
        }
    }
    out
}

enum DribbleEnd {
    ClosedByServer,
    Stopped,
}

/// Sends the request one byte per interval (never its end) and reads whatever comes back,
/// until the server closes the connection or `stop` fires. Also returns whether the server
/// sent anything.
async fn dribble(mut stream: TcpStream, l: &Loris) -> (DribbleEnd, bool) {
    let (mut rd, mut wr) = stream.split();
    let mut sent = 0;
    let mut answered = false;
    let mut buf = [0_u8; 512];
    let mut tick = tokio::time::interval(l.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..l.max_steps {
        tokio::select! {
            () = l.stop.cancelled() => return (DribbleEnd::Stopped, answered),
            _ = tick.tick() => {
                if let Some(byte) = l.request.get(sent) {
                    if wr.write_all(std::slice::from_ref(byte)).await.is_err() {
                        return (DribbleEnd::ClosedByServer, answered);
                    }
                    sent += 1;
                }
            }
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return (DribbleEnd::ClosedByServer, answered),
                Ok(_) => answered = true,
            },
        }
    }
    (DribbleEnd::Stopped, answered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SoakArgs,
    }

    fn args(extra: &[&str]) -> SoakArgs {
        Cli::try_parse_from(std::iter::once("soak").chain(extra.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults_are_the_issue_s_soak() {
        let p = args(&[]).plan(false).unwrap();
        assert_eq!(p.duration, Duration::from_secs(600));
        assert_eq!(
            (p.idle, p.pairs, p.churners, p.slowloris),
            (15_000, 200, 20, 500)
        );
        // 20 % of 600 s.
        assert_eq!(p.warmup, Duration::from_secs(120));
        assert_eq!(p.messages_per_pair(), 60_000);
        let q = args(&[]).plan(true).unwrap();
        assert!(q.duration < Duration::from_secs(10));
        let e = args(&["--idle", "7", "--rate", "2.5"]).plan(true).unwrap();
        assert_eq!(e.idle, 7);
        assert_eq!(e.messages_per_pair(), 12);
    }

    #[test]
    fn warmup_is_the_longer_of_fraction_and_minimum() {
        let s = Duration::from_secs;
        assert_eq!(warmup(s(600), 0.2, s(10)), s(120));
        assert_eq!(warmup(s(30), 0.2, s(10)), s(10));
        assert_eq!(warmup(s(30), 0.5, s(10)), s(15));
        assert_eq!(warmup(s(5), 0.2, s(10)), s(5));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(args(&["--rate", "0"]).plan(false).is_err());
        assert!(args(&["--warmup-fraction", "1"]).plan(false).is_err());
        assert!(args(&["--duration=-1"]).plan(false).is_err());
        assert!(args(&["--inflight", "0"]).plan(false).is_err());
        assert!(
            args(&["--rate", "100000", "--pairs", "10000"])
                .plan(false)
                .is_err()
        );
    }

    #[test]
    fn the_duration_limit_must_leave_room() {
        let a = args(&["--duration", "600"]);
        let url = "ws://127.0.0.1:3001/";
        assert!(check(&a, false, url, Duration::from_secs(120)).is_err());
        check(&a, false, url, Duration::from_secs(700)).unwrap();
        check(&args(&[]), true, url, Duration::from_secs(120)).unwrap();
    }

    #[test]
    fn slowloris_goes_to_loopback_only() {
        let url = "ws://127.0.0.1:3001/";
        assert_eq!(http_url(None, url).unwrap(), "ws://127.0.0.1:3001/");
        assert_eq!(
            http_url(None, "ws://[::1]:3001/x").unwrap(),
            "ws://[::1]:3001/"
        );
        assert_eq!(
            http_url(Some("127.0.0.1:3000"), url).unwrap(),
            "ws://127.0.0.1:3000/"
        );
        assert_eq!(
            http_url(Some("localhost:3000"), url).unwrap(),
            "ws://localhost:3000/"
        );
        for bad in [
            "10.0.0.1:3000",
            "example.com:80",
            "http://127.0.0.1:3000",
            "127.0.0.1:3000/x",
            "user@127.0.0.1:3000",
        ] {
            assert!(http_url(Some(bad), url).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_slowloris_request_never_ends() {
        let r = loris_request("127.0.0.1:3000".parse().unwrap());
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
        assert!(text.ends_with("\r\n"));
        assert!(!text.contains("\r\n\r\n"), "{text}");
    }

    fn sample(at: u64, rss_kib: u64) -> Sample {
        Sample {
            at: Duration::from_secs(at),
            rss_kib,
            fds: 10,
        }
    }

    #[test]
    fn flatness_ignores_the_warm_up() {
        let samples = [
            sample(0, 1000),
            sample(1, 5000),
            sample(2, 10_000),
            sample(3, 10_200),
            sample(4, 10_100),
        ];
        let f = Flatness::of(&samples, Duration::from_secs(2)).unwrap();
        assert_eq!((f.min_kib, f.max_kib, f.samples), (10_000, 10_200, 3));
        assert!((f.spread_pct() - 2.0).abs() < 1e-9);
        let all = Flatness::of(&samples, Duration::ZERO).unwrap();
        assert!((all.spread_pct() - 920.0).abs() < 1e-9);
        assert_eq!(Flatness::of(&samples, Duration::from_secs(4)), None);
        assert_eq!(
            samples_csv(&samples[..2]),
            "t_s,rss_kib,fds\n0.0,1000,10\n1.0,5000,10\n"
        );
    }
}
