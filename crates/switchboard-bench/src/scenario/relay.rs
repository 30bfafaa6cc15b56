//! `relay`: P pairs, each sending M ~600-byte messages from one peer to the other.
//!
//! Each pair has its own room: the receiver joins (creating it), then the sender. Once every
//! pair is joined, the measured phase starts: each sender sends `0..M` with its sequence
//! number and a send timestamp, keeping at most `--inflight` K messages undelivered (the
//! receiver hands a credit back per message it receives; K = 1 measures latency without
//! queueing). With `--rate R` the senders also keep to a fixed schedule of R messages per
//! second in total (half the measured maximum gives the half-load latency). Receivers check
//! sequence numbers (reordered, duplicated, unexpected) and record latency = receive time −
//! send time on the same monotonic clock.
//!
//! The phase ends when every receiver has all M messages, or `--drain-timeout` after the
//! last send (or after a sender stalls for that long without credit); whatever is missing
//! then is lost (messages never sent, in a run cut short, are not). The server's CPU time is read at both ends of the phase.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Progress, per_sec, pick};
use crate::client::{Counters, Ctx, Joined, leave_and_close, text_of};
use crate::dialect::{Incoming, PeerSpec, Probe};
use crate::net::Ws;
use crate::procfs::{self, Server};
use crate::report::{Report, round2};
use crate::stats::{ErrorSamples, Latencies, SeqTotals, SeqTracker, now_us};

/// Pairs being set up at once.
const SETUP_CONCURRENCY: usize = 32;
/// Per-peer bound on leaving and closing at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Sender/receiver pairs, one room each [default: 10; --quick: 4].
    #[arg(long)]
    pub pairs: Option<usize>,
    /// Messages each sender sends [default: 1000; --quick: 100].
    #[arg(long)]
    pub messages: Option<u64>,
    /// Messages in flight per pair at most; 1 gives the light-load latency [default: 1;
    /// --quick: 4].
    #[arg(long)]
    pub inflight: Option<usize>,
    /// Seconds to wait for missing messages after the last send, and the longest a sender
    /// waits for credit before giving up [default: 5; --quick: 2].
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    /// Offered load in messages per second over all pairs, spread evenly; each sender sends
    /// on a fixed schedule (still bounded by `--inflight`). 0: as fast as credit allows.
    /// Used for the latency at half of the maximum throughput.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

/// What a receiver saw.
pub(super) struct RxResult {
    pub tracker: SeqTracker,
    pub latencies: Latencies,
    pub errors: ErrorSamples,
    /// When the last expected message arrived (None if some never did).
    pub completed_at: Option<Instant>,
    ws: Ws,
}

/// What a sender did.
pub(super) struct TxResult {
    pub sent: u64,
    pub stalled: bool,
    pub error: Option<String>,
    sink: SplitSink<Ws, Message>,
}

pub async fn run(ctx: Arc<Ctx>, server: Server, args: &RelayArgs, quick: bool) -> Result<Report> {
    let pairs = pick(args.pairs, quick, 4, 10);
    let messages = pick(args.messages, quick, 100, 1000);
    let inflight = pick(args.inflight, quick, 4, 1);
    let drain = Duration::from_secs_f64(pick(args.drain_timeout, quick, 2.0, 5.0).max(0.0));
    anyhow::ensure!(
        pairs > 0 && messages > 0,
        "--pairs and --messages must be at least 1"
    );
    anyhow::ensure!(inflight > 0, "--inflight must be at least 1");
    anyhow::ensure!(
        args.rate.is_finite() && args.rate >= 0.0,
        "--rate must be a number of messages per second, 0 or more"
    );
    // Time between two sends of one sender; None: unpaced.
    let pace = (args.rate > 0.0).then(|| Duration::from_secs_f64(pairs as f64 / args.rate));
    let total = pairs as u64 * messages;

    let _progress = {
        let mut last = (0, Duration::ZERO);
        Progress::start(&ctx, "relay", move |c, elapsed| {
            let received = Counters::get(&c.received);
            let rate = per_sec(received - last.0, elapsed - last.1);
            last = (received, elapsed);
            format!(
                "pairs joined {}/{pairs}, sent {}/{total}, received {received}, {rate:.0} msg/s",
                Counters::get(&c.joined) / 2,
                Counters::get(&c.sent),
            )
        })
    };

    // Setup: join every pair before anything is measured.
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let setups: Vec<_> = (0..pairs)
        .map(|i| {
            let (ctx, gate) = (ctx.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore never closed");
                join_pair(&ctx, i).await
            })
        })
        .collect();
    let mut ready = Vec::with_capacity(pairs);
    let mut setup_errors = ErrorSamples::default();
    for s in setups {
        match s.await? {
            Ok(pair) => ready.push(pair),
            Err(e) => setup_errors.add(&format!("{e:#}")),
        }
    }

    // Measured phase.
    let stop = ctx.cancel.child_token();
    let cpu_before = server.cpu_time()?;
    let own_before = procfs::own_cpu_time().ok();
    let steal_before = procfs::steal_time().ok();
    let start = Instant::now();
    let mut running: Vec<Running> = ready
        .into_iter()
        .map(|(rx, tx)| {
            let load = Load {
                messages,
                inflight,
                pace,
                start,
                latency_every: 1,
            };
            Running::start(&ctx, rx, tx, load, drain, &stop)
        })
        .collect();
    // Senders finish first (all sent, stalled, or cancelled); then receivers get `drain`
    // more to collect the rest.
    let mut tx_results = Vec::with_capacity(running.len());
    for r in &mut running {
        tx_results.push((&mut r.sender).await?);
    }
    let drain_timer = {
        let stop = stop.clone();
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
    let cpu_after = server.cpu_time()?;
    let own_after = procfs::own_cpu_time().ok();
    let steal_after = procfs::steal_time().ok();
    stop.cancel();

    let mut totals = SeqTotals::default();
    let mut latencies = Latencies::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut rx_errors = ErrorSamples::default();
    let mut end = start;
    for (r, t) in rx_results.iter_mut().zip(&tx_results) {
        totals.add(r.tracker.totals(t.sent));
        latencies.merge(std::mem::take(&mut r.latencies));
        rx_errors.merge(&r.errors);
        end = end.max(r.completed_at.unwrap_or_else(Instant::now));
    }
    let elapsed = end - start;
    let sent: u64 = tx_results.iter().map(|t| t.sent).sum();
    let stalled = tx_results.iter().filter(|t| t.stalled).count();
    let mut tx_errors = ErrorSamples::default();
    for e in tx_results.iter().filter_map(|t| t.error.as_deref()) {
        tx_errors.add(e);
    }

    let (tx_server_errors, close_errors) =
        close_pairs(&ctx, running, tx_results, rx_results).await?;

    let delivered = totals.received;
    let mut report = Report::new("relay");
    report.row("pairs", pairs);
    report.row("messages_per_pair", messages);
    report.row("inflight", inflight);
    report.row("offered_rate", args.rate);
    report.row("pairs_failed_setup", setup_errors.total());
    report.row("sent", sent);
    report.row("unsent", total - sent);
    report.row("delivered", delivered);
    report.row("lost", totals.lost);
    report.row("reordered", totals.reordered);
    report.row("duplicated", totals.duplicated);
    report.row("unexpected", totals.unexpected);
    report.row("elapsed_s", round2(elapsed.as_secs_f64()));
    report.row("msgs_per_sec", round2(per_sec(delivered, elapsed)));
    report.latency("latency", latencies.percentiles(), true);
    report.cpu("server", "msg", cpu_before, cpu_after, delivered);
    report.cpu("bench", "msg", own_before, own_after, delivered);
    if let (Some(b), Some(a)) = (steal_before, steal_after) {
        report.row(
            "host_steal_ms",
            u64::try_from(a.saturating_sub(b).as_millis()).unwrap_or(u64::MAX),
        );
    }
    report.close_errors(&close_errors);

    if setup_errors.total() > 0 {
        report.fail(format!(
            "{} of {pairs} pairs failed to join: {}",
            setup_errors.total(),
            setup_errors.describe()
        ));
    }
    if ctx.cancel.is_cancelled() {
        // Receivers stopped at once, so up to K messages per pair were still in flight;
        // the cut-short run fails anyway, so only order errors are worth a line.
        if totals.reordered + totals.duplicated + totals.unexpected > 0 {
            report.fail(format!(
                "delivery errors: {} reordered, {} duplicated, {} unexpected ({} in flight \
                 when the run was cut short)",
                totals.reordered, totals.duplicated, totals.unexpected, totals.lost
            ));
        }
    } else if !totals.is_clean() {
        report.fail(format!(
            "delivery errors: {} lost, {} reordered, {} duplicated, {} unexpected",
            totals.lost, totals.reordered, totals.duplicated, totals.unexpected
        ));
    }
    if stalled > 0 {
        report.fail(format!(
            "{stalled} senders stalled: no credit back within {drain:?}"
        ));
    }
    if tx_errors.total() > 0 {
        report.fail(format!("send errors: {}", tx_errors.describe()));
    }
    if tx_server_errors.total() > 0 {
        report.fail(format!(
            "the server sent {} error frames to senders: {}",
            tx_server_errors.total(),
            tx_server_errors.describe()
        ));
    }
    if rx_errors.total() > 0 {
        report.fail(format!("receive errors: {}", rx_errors.describe()));
    }
    Ok(report)
}

/// Teardown: every pair leaves and closes, concurrently. Returns the error frames the
/// server sent to senders during the run, and the closes that did not finish cleanly.
pub(super) async fn close_pairs(
    ctx: &Arc<Ctx>,
    running: Vec<Running>,
    tx_results: Vec<TxResult>,
    rx_results: Vec<RxResult>,
) -> Result<(ErrorSamples, ErrorSamples)> {
    let mut closes = Vec::with_capacity(running.len());
    let mut tx_server_errors = ErrorSamples::default();
    for ((r, tx), rx) in running.into_iter().zip(tx_results).zip(rx_results) {
        let (stream, errors) = r.drainer.await?;
        tx_server_errors.merge(&errors);
        let dialect = ctx.dialect.clone();
        closes.push(tokio::spawn(async move {
            let tx_ws = tx
                .sink
                .reunite(stream)
                .expect("the sink and stream of one socket");
            let (a, b) = tokio::join!(
                leave_and_close(rx.ws, &*dialect, &r.room, &r.rx_id, CLOSE_TIMEOUT),
                leave_and_close(tx_ws, &*dialect, &r.room, &r.tx_id, CLOSE_TIMEOUT),
            );
            [a, b]
        }));
    }
    let mut close_errors = ErrorSamples::default();
    for c in closes {
        for e in c.await?.into_iter().filter_map(Result::err) {
            close_errors.add(&format!("{e:#}"));
        }
    }
    Ok((tx_server_errors, close_errors))
}

/// What each sender offers.
#[derive(Clone, Copy)]
pub(super) struct Load {
    pub messages: u64,
    pub inflight: usize,
    /// Interval between sends, counted from `start`; None: send as credit allows.
    pub pace: Option<Duration>,
    pub start: Instant,
    /// Record the latency of every n-th message only (1: all), so that a long run keeps
    /// a bounded number of samples.
    pub latency_every: u64,
}

/// One pair's tasks during the measured phase.
pub(super) struct Running {
    room: String,
    rx_id: String,
    tx_id: String,
    pub sender: JoinHandle<TxResult>,
    /// Reads what the server sends the sender.
    drainer: JoinHandle<(SplitStream<Ws>, ErrorSamples)>,
    pub receiver: JoinHandle<RxResult>,
}

impl Running {
    pub(super) fn start(
        ctx: &Arc<Ctx>,
        rx: Joined,
        tx: Joined,
        load: Load,
        stall_timeout: Duration,
        stop: &CancellationToken,
    ) -> Self {
        let window = Arc::new(Semaphore::new(load.inflight));
        let (sink, stream) = tx.ws.split();
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let route = Route {
            room: tx.spec.room.clone(),
            from: tx.self_id.clone(),
            to: rx.self_id.clone(),
        };
        Self {
            room: tx.spec.room,
            rx_id: rx.self_id.clone(),
            tx_id: tx.self_id,
            receiver: tokio::spawn(receive(
                ctx.clone(),
                rx.ws,
                rx.self_id,
                load,
                window.clone(),
                stop.clone(),
            )),
            sender: tokio::spawn(send(
                ctx.clone(),
                sink,
                replies,
                route,
                load,
                window,
                stall_timeout,
                stop.clone(),
            )),
            drainer: tokio::spawn(drain_echoes(ctx.clone(), stream, replies_tx, stop.clone())),
        }
    }
}

/// Joins pair `i`: the receiver first (it creates the room), then the sender.
pub(super) async fn join_pair(ctx: &Ctx, i: usize) -> Result<(Joined, Joined)> {
    let room = format!("{}-r{i}", ctx.prefix);
    let rx = ctx
        .join(PeerSpec {
            room: room.clone(),
            id: format!("{room}-rx"),
            creates_room: true,
        })
        .await
        .map_err(|e| e.context("receiver"))?;
    Counters::bump(&ctx.counters.joined);
    let tx = ctx
        .join_second(PeerSpec {
            room: room.clone(),
            id: format!("{room}-tx"),
            creates_room: false,
        })
        .await
        .map_err(|e| e.context("sender"))?;
    Counters::bump(&ctx.counters.joined);
    Ok((rx, tx))
}

/// Where a sender's messages go.
struct Route {
    room: String,
    from: String,
    to: String,
}

/// Sends the pair's messages; also sends the replies the drainer hands over (pongs) before
/// the next message, so they wait at most one pacing interval or credit wait.
#[allow(clippy::too_many_arguments)]
async fn send(
    ctx: Arc<Ctx>,
    mut sink: SplitSink<Ws, Message>,
    mut replies: mpsc::UnboundedReceiver<String>,
    route: Route,
    load: Load,
    window: Arc<Semaphore>,
    stall_timeout: Duration,
    stop: CancellationToken,
) -> TxResult {
    let messages = load.messages;
    let result = |sent, stalled, error, sink| TxResult {
        sent,
        stalled,
        error,
        sink,
    };
    for seq in 0..messages {
        if let Some(pace) = load.pace {
            // A fixed schedule, not "pace after the last send": a late send does not push
            // the later ones back (timer granularity is ~1 ms, so sends come in small bursts).
            let due = load.start + pace.mul_f64(seq as f64);
            tokio::select! {
                () = stop.cancelled() => return result(seq, false, None, sink),
                () = tokio::time::sleep_until(due) => {}
            }
        }
        let credit = tokio::select! {
            () = stop.cancelled() => return result(seq, false, None, sink),
            c = tokio::time::timeout(stall_timeout, window.acquire()) => c,
        };
        match credit {
            Ok(permit) => permit.expect("window never closed").forget(),
            Err(_) => return result(seq, true, None, sink),
        }
        while let Ok(reply) = replies.try_recv() {
            if let Err(e) = sink.send(Message::text(reply)).await {
                return result(seq, false, Some(e.to_string()), sink);
            }
        }
        let probe = Probe {
            seq,
            ts_us: now_us(),
        };
        let frame = ctx
            .dialect
            .relay(&route.room, &route.from, &route.to, probe);
        if let Err(e) = sink.send(Message::text(frame)).await {
            return result(seq, false, Some(e.to_string()), sink);
        }
        Counters::bump(&ctx.counters.sent);
    }
    result(messages, false, None, sink)
}

/// Reads and discards what the server sends a sender (echoes, announcements), so that its
/// outbox never fills and pings are answered: WebSocket pings by the socket itself, the
/// dialect's ([`crate::dialect::Dialect::reply`]) through `replies` to the sender, which owns
/// the sink. Returns the stream for the close.
async fn drain_echoes(
    ctx: Arc<Ctx>,
    mut stream: SplitStream<Ws>,
    replies: mpsc::UnboundedSender<String>,
    stop: CancellationToken,
) -> (SplitStream<Ws>, ErrorSamples) {
    let mut errors = ErrorSamples::default();
    // Bounded by `stop`, which the run's cancellation (duration limit) always fires.
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            msg = stream.next() => msg,
        };
        let why = match msg {
            Some(Ok(Message::Close(frame))) => format!("closed by server: {frame:?}"),
            Some(Ok(msg)) => {
                let Some(text) = text_of(&msg) else { continue };
                if let Some(reply) = ctx.dialect.reply(text) {
                    // Gone only once the sender is done; the close follows shortly.
                    let _ = replies.send(reply);
                } else if let Incoming::Error(e) = ctx.dialect.parse(text) {
                    // Error frames (e.g. a rate limit) explain losses, so keep them.
                    errors.add(&e);
                }
                continue;
            }
            Some(Err(e)) => e.to_string(),
            None => "connection ended".to_owned(),
        };
        errors.add(&format!("sender connection: {why}"));
        break;
    }
    (stream, errors)
}

async fn receive(
    ctx: Arc<Ctx>,
    mut ws: Ws,
    me: String,
    load: Load,
    window: Arc<Semaphore>,
    stop: CancellationToken,
) -> RxResult {
    let every = load.latency_every.max(1);
    let mut tracker = SeqTracker::new(load.messages);
    let mut latencies =
        Latencies::with_capacity(usize::try_from(load.messages / every + 1).unwrap_or(0));
    let mut errors = ErrorSamples::default();
    let mut completed_at = None;
    while !tracker.is_complete() {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            msg = ws.next() => msg,
        };
        let msg = match msg {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                errors.add(&format!("receiver connection failed: {e}"));
                break;
            }
            None => {
                errors.add("receiver connection closed by the server");
                break;
            }
        };
        let Some(text) = text_of(&msg) else { continue };
        if let Some(reply) = ctx.dialect.reply(text) {
            if let Err(e) = ws.send(Message::text(reply)).await {
                errors.add(&format!("receiver connection failed: {e}"));
                break;
            }
            continue;
        }
        match ctx.dialect.parse(text) {
            Incoming::Relay { from, seq, ts_us } if from != me => {
                let verdict = tracker.observe(seq);
                if matches!(
                    verdict,
                    crate::stats::SeqVerdict::InOrder | crate::stats::SeqVerdict::Reordered
                ) {
                    if seq % every == 0 {
                        latencies.record_us(now_us().saturating_sub(ts_us));
                    }
                    window.add_permits(1);
                    Counters::bump(&ctx.counters.received);
                }
                if tracker.is_complete() {
                    completed_at = Some(Instant::now());
                }
            }
            Incoming::Error(e) => errors.add(&format!("server error: {e}")),
            _ => {}
        }
    }
    RxResult {
        tracker,
        latencies,
        errors,
        completed_at,
        ws,
    }
}
