//! `churn`: C workers repeat connect → join → acknowledgement → leave → close, I times in
//! total.
//!
//! Rooms: by default each worker first joins one long-lived **anchor** peer that creates
//! the worker's room; every iteration then joins that existing room (OctateCode
//! `join-room`; rendezvous rooms of 2 = anchor + churner). Where the dialect announces
//! leaves, the worker waits until its anchor has been told the churner left before starting
//! the next iteration, so a room of capacity 2 is free again and every leave is checked to
//! be announced. With `--fresh-rooms` each iteration instead creates its own new room
//! (OctateCode `create-room`) and there are no anchors.
//!
//! Join latency runs from the start of the TCP connect to the join acknowledgement. Server
//! CPU per join covers the whole cycle (join, leave, close, and the announcements to the
//! anchor), divided by completed joins.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Progress, per_sec, pick};
use crate::client::{Counters, Ctx, Joined, leave_and_close, read_until};
use crate::dialect::{Incoming, PeerSpec};
use crate::net::Ws;
use crate::procfs::{self, Server};
use crate::report::{Report, round2};
use crate::stats::{ErrorSamples, Latencies};

/// Bound on one leave + close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a worker waits for its anchor to hear that the churner left.
const LEFT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct ChurnArgs {
    /// Concurrent workers [default: 8; --quick: 4].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Join/leave cycles in total [default: 2000; --quick: 100].
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Give every iteration its own new room instead of joining a worker's anchor room.
    #[arg(long)]
    pub fresh_rooms: bool,
}

#[derive(Default)]
pub(super) struct WorkerResult {
    pub latencies: Latencies,
    pub join_errors: ErrorSamples,
    pub close_errors: ErrorSamples,
    pub missing_left: ErrorSamples,
}

/// A worker's anchor: the room it holds and the ids it has been told left.
pub(super) struct Anchor {
    room: String,
    /// The room's name on the server (`room`, unless the server names rooms it makes).
    server_room: String,
    left: mpsc::UnboundedReceiver<String>,
    reader: JoinHandle<(Ws, Option<String>)>,
    self_id: String,
}

pub async fn run(ctx: Arc<Ctx>, server: Server, args: &ChurnArgs, quick: bool) -> Result<Report> {
    let workers = pick(args.concurrency, quick, 4, 8);
    let iterations = pick(args.iterations, quick, 100, 2000);
    anyhow::ensure!(workers > 0, "--concurrency must be at least 1");
    let anchored = !args.fresh_rooms;
    if anchored && ctx.dialect.room_capacity().is_some_and(|c| c < 2) {
        bail!("anchor rooms need a capacity of 2; use --fresh-rooms");
    }

    let _progress = {
        let mut last = (0, Duration::ZERO);
        Progress::start(&ctx, "churn", move |c, elapsed| {
            let done = Counters::get(&c.done);
            let rate = per_sec(done - last.0, elapsed - last.1);
            last = (done, elapsed);
            format!(
                "cycles {done}/{iterations}, failed joins {}, {rate:.0} joins/s",
                Counters::get(&c.failed)
            )
        })
    };

    // Anchors first, outside the measurement.
    let stop = ctx.cancel.child_token();
    let mut anchors = Vec::with_capacity(workers);
    let mut anchor_errors = ErrorSamples::default();
    if anchored {
        for w in 0..workers {
            match start_anchor(&ctx, w, &stop).await {
                Ok(a) => anchors.push(Some(a)),
                Err(e) => anchor_errors.add(&format!("{e:#}")),
            }
        }
        anyhow::ensure!(
            anchor_errors.total() == 0,
            "anchor peers failed to join: {}",
            anchor_errors.describe()
        );
    } else {
        anchors.resize_with(workers, || None);
    }

    let next = Arc::new(AtomicU64::new(0));
    let cpu_before = server.cpu_time()?;
    let own_before = procfs::own_cpu_time().ok();
    let start = Instant::now();
    let handles: Vec<_> = anchors
        .into_iter()
        .map(|anchor| {
            let (ctx, next) = (ctx.clone(), next.clone());
            tokio::spawn(async move {
                let mut anchor = anchor;
                let plan = Plan {
                    iterations,
                    pause: Duration::ZERO,
                };
                let r = worker(&ctx, &next, plan, &ctx.cancel, anchor.as_mut()).await;
                (r, anchor)
            })
        })
        .collect();
    let mut all = WorkerResult::default();
    let mut finished_anchors = Vec::new();
    for h in handles {
        let (r, anchor) = h.await?;
        all.latencies.merge(r.latencies);
        all.join_errors.merge(&r.join_errors);
        all.close_errors.merge(&r.close_errors);
        all.missing_left.merge(&r.missing_left);
        finished_anchors.extend(anchor);
    }
    let elapsed = start.elapsed();
    let cpu_after = server.cpu_time()?;
    let own_after = procfs::own_cpu_time().ok();

    // Anchors leave.
    stop.cancel();
    let anchor_drops = release_anchors(&ctx, finished_anchors, &mut all.close_errors).await?;

    let joins = all.latencies.len() as u64;
    let mut report = Report::new("churn");
    report.row("workers", workers);
    report.row("iterations", iterations);
    report.row("rooms", if anchored { "anchor" } else { "fresh" });
    report.row("joins", joins);
    report.row("join_failed", all.join_errors.total());
    report.row("elapsed_s", round2(elapsed.as_secs_f64()));
    report.row("joins_per_sec", round2(per_sec(joins, elapsed)));
    report.latency("join_latency", all.latencies.percentiles(), false);
    report.cpu("server", "join", cpu_before, cpu_after, joins);
    report.cpu("bench", "join", own_before, own_after, joins);
    report.close_errors(&all.close_errors);
    report.row("leave_not_announced", all.missing_left.total());

    if all.join_errors.total() > 0 {
        report.fail(format!(
            "{} joins failed: {}",
            all.join_errors.total(),
            all.join_errors.describe()
        ));
    }
    if joins + all.join_errors.total() < iterations && !ctx.cancel.is_cancelled() {
        report.fail(format!("only {joins} of {iterations} cycles ran"));
    }
    if all.missing_left.total() > 0 {
        report.fail(format!(
            "{} leaves were not announced to the anchor: {}",
            all.missing_left.total(),
            all.missing_left.describe()
        ));
    }
    if anchor_drops.total() > 0 {
        report.fail(format!(
            "anchors dropped by the server: {}",
            anchor_drops.describe()
        ));
    }
    Ok(report)
}

/// Joins worker `w`'s anchor, which creates the worker's room and reads its frames until
/// `stop` fires.
pub(super) async fn start_anchor(
    ctx: &Arc<Ctx>,
    w: usize,
    stop: &CancellationToken,
) -> Result<Anchor> {
    let room = format!("{}-c{w}", ctx.prefix);
    let Joined {
        ws, self_id, spec, ..
    } = ctx
        .join(PeerSpec {
            room: room.clone(),
            id: format!("{room}-anchor"),
            creates_room: true,
        })
        .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_anchor(ctx.clone(), ws, tx, stop.clone()));
    Ok(Anchor {
        room,
        server_room: spec.room,
        left: rx,
        reader,
        self_id,
    })
}

/// Once their `stop` has fired: every anchor leaves and closes (close failures go to
/// `close_errors`). Returns why the server dropped the anchors that it dropped.
pub(super) async fn release_anchors(
    ctx: &Ctx,
    anchors: Vec<Anchor>,
    close_errors: &mut ErrorSamples,
) -> Result<ErrorSamples> {
    let mut drops = ErrorSamples::default();
    for a in anchors {
        let (ws, dropped) = a.reader.await?;
        if let Some(why) = dropped {
            drops.add(&why);
        } else if let Err(e) =
            leave_and_close(ws, &*ctx.dialect, &a.server_room, &a.self_id, CLOSE_TIMEOUT).await
        {
            close_errors.add(&format!("anchor: {e:#}"));
        }
    }
    Ok(drops)
}

/// Reads the anchor's frames, forwarding the ids of peers that left; returns the socket and
/// why the server dropped it, if it did.
async fn read_anchor(
    ctx: Arc<Ctx>,
    mut ws: Ws,
    left: mpsc::UnboundedSender<String>,
    stop: CancellationToken,
) -> (Ws, Option<String>) {
    let dropped = read_until(&mut ws, &stop, &*ctx.dialect, |text| {
        if let Incoming::PeerLeft(id) = ctx.dialect.parse(text) {
            // The worker may have given up waiting; that is reported there.
            let _ = left.send(id);
        }
    })
    .await;
    (ws, dropped)
}

/// How much a worker churns.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// Cycles over all workers that share one counter, at most.
    pub iterations: u64,
    /// Pause after each cycle (zero: flat out).
    pub pause: Duration,
}

/// Runs cycles, taking their numbers from `next`, until `plan.iterations` are taken or
/// `stop` fires (a cycle in progress then finishes).
pub(super) async fn worker(
    ctx: &Ctx,
    next: &AtomicU64,
    plan: Plan,
    stop: &CancellationToken,
    mut anchor: Option<&mut Anchor>,
) -> WorkerResult {
    let mut out = WorkerResult::default();
    let wait_for_left = ctx.dialect.announces_leave();
    // Bounded by the shared iteration counter and by `stop` (a child of, or the run's
    // cancellation itself).
    while !stop.is_cancelled() {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let iterations = plan.iterations;
        if i >= iterations {
            break;
        }
        let spec = match &anchor {
            Some(a) => PeerSpec {
                room: a.room.clone(),
                id: format!("{}-{i}", a.room),
                creates_room: false,
            },
            None => {
                let room = format!("{}-f{i}", ctx.prefix);
                PeerSpec {
                    id: format!("{room}-0"),
                    room,
                    creates_room: true,
                }
            }
        };
        let joined = match ctx.join_second(spec).await {
            Ok(j) => j,
            Err(e) => {
                if !ctx.cancel.is_cancelled() {
                    Counters::bump(&ctx.counters.failed);
                    out.join_errors.add(&format!("{e:#}"));
                }
                continue;
            }
        };
        out.latencies.record(joined.latency);
        let Joined {
            ws, spec, self_id, ..
        } = joined;
        if let Err(e) =
            leave_and_close(ws, &*ctx.dialect, &spec.room, &self_id, CLOSE_TIMEOUT).await
        {
            out.close_errors.add(&format!("{e:#}"));
        }
        if let Some(a) = anchor.as_deref_mut().filter(|_| wait_for_left)
            && let Err(e) = await_left(a, &self_id).await
            && !ctx.cancel.is_cancelled()
        {
            out.missing_left.add(&format!("{e:#}"));
        }
        Counters::bump(&ctx.counters.done);
        if !plan.pause.is_zero() {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(plan.pause) => {}
            }
        }
    }
    out
}

/// Waits until the anchor has been told that `id` left (skipping older announcements).
async fn await_left(anchor: &mut Anchor, id: &str) -> Result<()> {
    let deadline = Instant::now() + LEFT_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, anchor.left.recv()).await {
            Ok(Some(left)) if left == id => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => bail!("anchor connection ended"),
            Err(_) => bail!("no peer-left within {LEFT_TIMEOUT:?}"),
        }
    }
}
