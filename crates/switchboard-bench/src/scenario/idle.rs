//! `idle`: hold N connected, joined peers and measure the server's memory per peer.
//!
//! 1. Read the server's RSS (the idle baseline).
//! 2. Join N peers in rooms of `--room-size` (the first peer of a room creates it; a room's
//!    peers join one after another, `--concurrency` rooms at a time). Every held peer keeps
//!    reading, so pings are answered and announcements drained.
//! 3. After the last join, wait `--settle` seconds and read RSS again:
//!    per peer = (loaded − baseline) / N, in KiB.
//! 4. Optionally hold `--hold` seconds more (peers that the server drops count as failures),
//!    then every peer leaves and closes, and RSS is read once more after `--settle` (a hint
//!    of what the server gives back; allocators keep some).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Progress, per_sec, pick, sleep_unless_cancelled};
use crate::client::{Counters, Ctx, Joined, leave_and_close, read_until};
use crate::dialect::PeerSpec;
use crate::procfs::Server;
use crate::report::{Report, round2};
use crate::stats::{ErrorSamples, Latencies};

/// Per-peer bound on leaving and closing at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Peers to hold [default: 1000; --quick: 20].
    #[arg(long)]
    pub peers: Option<usize>,
    /// Peers per room [default: 2, which every dialect allows].
    #[arg(long)]
    pub room_size: Option<usize>,
    /// Rooms joining at once [default: 32; --quick: 8].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Seconds to wait after the last join (and after the last close) before reading RSS
    /// [default: 2; --quick: 0.5].
    #[arg(long)]
    pub settle: Option<f64>,
    /// Seconds to keep holding the peers after the measurement [default: 0].
    #[arg(long)]
    pub hold: Option<f64>,
}

/// How one held peer ended.
pub(super) enum HoldEnd {
    /// Released by us; the close finished cleanly or not.
    Released(Result<()>),
    /// The server closed or broke the connection while we were holding it.
    Dropped(String),
}

pub(super) struct RoomOutcome {
    pub holders: Vec<JoinHandle<HoldEnd>>,
    pub latencies: Latencies,
    pub errors: ErrorSamples,
    /// Peers not attempted because an earlier peer of the room failed.
    pub skipped: u64,
}

pub async fn run(ctx: Arc<Ctx>, server: Server, args: &IdleArgs, quick: bool) -> Result<Report> {
    let n = pick(args.peers, quick, 20, 1000);
    let room_size = pick(args.room_size, quick, 2, 2);
    let concurrency = pick(args.concurrency, quick, 8, 32);
    let settle = Duration::from_secs_f64(pick(args.settle, quick, 0.5, 2.0).max(0.0));
    let hold = Duration::from_secs_f64(args.hold.unwrap_or(0.0).max(0.0));
    anyhow::ensure!(n > 0, "--peers must be at least 1");
    anyhow::ensure!(room_size > 0, "--room-size must be at least 1");
    anyhow::ensure!(concurrency > 0, "--concurrency must be at least 1");
    if let Some(cap) = ctx.dialect.room_capacity() {
        anyhow::ensure!(
            room_size <= cap,
            "--room-size {room_size} exceeds the {} dialect's default room capacity of {cap}",
            ctx.dialect.name()
        );
    }
    let rooms = n.div_ceil(room_size);

    let rss_before = server.rss_kib()?;
    let cpu_before = server.cpu_time()?;
    let _progress = Progress::start(&ctx, "idle", move |c, _| {
        format!(
            "joined {}/{n}, failed {}, dropped {}",
            Counters::get(&c.joined),
            Counters::get(&c.failed),
            Counters::get(&c.done)
        )
    });

    // Phase 1: join everyone.
    let release = ctx.cancel.child_token();
    let dropped = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let mut room_tasks = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let peers_here = room_size.min(n - r * room_size);
        let (ctx, gate, release, dropped) =
            (ctx.clone(), gate.clone(), release.clone(), dropped.clone());
        room_tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore never closed");
            join_room(&ctx, r, peers_here, &release, &dropped).await
        }));
    }
    let mut holders = Vec::with_capacity(n);
    let mut latencies = Latencies::with_capacity(n);
    let mut errors = ErrorSamples::default();
    let mut skipped = 0;
    for t in room_tasks {
        let out = t.await?;
        holders.extend(out.holders);
        latencies.merge(out.latencies);
        errors.merge(&out.errors);
        skipped += out.skipped;
    }
    let join_elapsed = start.elapsed();
    let joined = latencies.len() as u64;

    // Phase 2: let the server settle, then measure.
    sleep_unless_cancelled(&ctx, settle).await;
    let rss_loaded = server.rss_kib()?;
    let cpu_after = server.cpu_time()?;
    let held = joined - dropped.load(Ordering::Relaxed);
    if !hold.is_zero() {
        eprintln!("holding {held} peers for {hold:?}");
        sleep_unless_cancelled(&ctx, hold).await;
    }
    let dropped_while_held = dropped.load(Ordering::Relaxed);

    // Phase 3: release everyone and see what the server gives back.
    release.cancel();
    let mut close_errors = ErrorSamples::default();
    let mut drop_reasons = ErrorSamples::default();
    for h in holders {
        match h.await? {
            HoldEnd::Released(Ok(())) => {}
            HoldEnd::Released(Err(e)) => close_errors.add(&format!("{e:#}")),
            HoldEnd::Dropped(why) => drop_reasons.add(&why),
        }
    }
    sleep_unless_cancelled(&ctx, settle).await;
    let rss_released = server.rss_kib()?;

    let mut report = Report::new("idle");
    report.row("peers", n);
    report.row("room_size", room_size);
    report.row("rooms", rooms);
    report.row("joined", joined);
    report.row("join_failed", errors.total());
    report.row("join_skipped", skipped);
    report.row("dropped_while_held", dropped_while_held);
    report.row("joins_per_sec", round2(per_sec(joined, join_elapsed)));
    report.latency("join_latency", latencies.percentiles(), false);
    report.row("server_rss_idle_kib", rss_before);
    report.row("server_rss_loaded_kib", rss_loaded);
    let per_peer = match (rss_before, rss_loaded) {
        #[allow(clippy::cast_precision_loss)]
        (Some(b), Some(a)) if joined > 0 => Some(round2((a as f64 - b as f64) / joined as f64)),
        _ => None,
    };
    report.row("server_rss_per_peer_kib", per_peer);
    report.row("server_rss_after_release_kib", rss_released);
    report.cpu("server", "join", cpu_before, cpu_after, joined);
    report.close_errors(&close_errors);

    if errors.total() > 0 || skipped > 0 {
        report.fail(format!(
            "{} of {n} peers failed to join ({} skipped after an earlier failure in their room): {}",
            errors.total() + skipped,
            skipped,
            errors.describe()
        ));
    }
    if dropped_while_held > 0 {
        report.fail(format!(
            "the server dropped {dropped_while_held} idle peers: {}",
            drop_reasons.describe()
        ));
    }
    Ok(report)
}

/// Joins one room's peers in order (the first creates the room) and starts holding each
/// until `release` fires; `dropped` counts the peers that the server drops meanwhile.
pub(super) async fn join_room(
    ctx: &Arc<Ctx>,
    room_no: usize,
    peers: usize,
    release: &CancellationToken,
    dropped: &Arc<AtomicU64>,
) -> RoomOutcome {
    let room = format!("{}-i{room_no}", ctx.prefix);
    let mut out = RoomOutcome {
        holders: Vec::with_capacity(peers),
        latencies: Latencies::with_capacity(peers),
        errors: ErrorSamples::default(),
        skipped: 0,
    };
    for i in 0..peers {
        let spec = PeerSpec {
            room: room.clone(),
            id: format!("{room}-{i}"),
            creates_room: i == 0,
        };
        match ctx.join(spec).await {
            Ok(joined) => {
                Counters::bump(&ctx.counters.joined);
                out.latencies.record(joined.latency);
                out.holders.push(tokio::spawn(hold(
                    ctx.clone(),
                    joined,
                    release.clone(),
                    dropped.clone(),
                )));
            }
            Err(e) => {
                Counters::bump(&ctx.counters.failed);
                out.errors.add(&format!("{e:#}"));
                out.skipped = (peers - i - 1) as u64;
                break;
            }
        }
    }
    out
}

/// Keeps one peer connected (reading, so pings get answered) until released.
async fn hold(
    ctx: Arc<Ctx>,
    joined: Joined,
    release: CancellationToken,
    dropped: Arc<AtomicU64>,
) -> HoldEnd {
    let Joined {
        mut ws,
        spec,
        self_id,
        ..
    } = joined;
    if let Some(why) = read_until(&mut ws, &release, &*ctx.dialect, |_| {}).await {
        dropped.fetch_add(1, Ordering::Relaxed);
        Counters::bump(&ctx.counters.done);
        return HoldEnd::Dropped(why);
    }
    HoldEnd::Released(leave_and_close(ws, &*ctx.dialect, &spec.room, &self_id, CLOSE_TIMEOUT).await)
}
