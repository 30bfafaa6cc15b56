//! The soak's pieces: setting up idle peers, relay pairs and churners, sampling the
//! server, and judging flatness and settling.

use super::*;

/// CPU time between two readings, in milliseconds.
pub(super) fn cpu_ms(before: Option<Duration>, after: Option<Duration>) -> Option<f64> {
    before
        .zip(after)
        .map(|(b, a)| round2(a.saturating_sub(b).as_secs_f64() * 1e3))
}

/// The idle peers, joined and held.
pub(super) struct IdleSetup {
    pub(super) holders: Vec<JoinHandle<HoldEnd>>,
    pub(super) joined: u64,
    pub(super) errors: ErrorSamples,
    pub(super) skipped: u64,
}

/// Joins `n` idle peers in rooms of 2, held until `release` fires.
pub(super) async fn join_idle(
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
pub(super) async fn join_pairs(
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
pub(super) fn start_churners(
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
pub(super) struct Sample {
    pub(super) at: Duration,
    pub(super) rss_kib: u64,
    pub(super) fds: u64,
}

/// Reads the server's RSS and descriptors once a second until `stop` (at most one reading
/// per second of `duration`, plus one). Returns the readings and the error that ended them
/// early, if any. Without a server pid there is nothing to read.
pub(super) async fn sample_server(
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
pub(super) fn samples_csv(samples: &[Sample]) -> String {
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
pub(super) struct Flatness {
    pub(super) min_kib: u64,
    pub(super) max_kib: u64,
    pub(super) samples: usize,
}

impl Flatness {
    /// Over the samples taken at or after `warmup`; `None` when fewer than two.
    pub(super) fn of(samples: &[Sample], warmup: Duration) -> Option<Self> {
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
    pub(super) fn spread_pct(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let (min, max) = (self.min_kib.max(1) as f64, self.max_kib as f64);
        (max - min) / min * 100.0
    }
}

/// The server's descriptors after teardown, and how long it took them to come back.
pub(super) struct Settled {
    pub(super) fds: Option<u64>,
    pub(super) waited: Duration,
}

/// Polls the server's descriptor count until it is within `tolerance` of `before` (then
/// reads it once more after a short pause, for the figure) or `within` has passed.
pub(super) async fn settle_fds(
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
pub(super) struct LorisResult {
    pub(super) connects: u64,
    /// Connections the server closed (or reset).
    pub(super) closes: u64,
    /// Connections on which the server sent something (e.g. a 408) before closing.
    pub(super) answered: u64,
    /// Connections open longer than the deadline.
    pub(super) overdue: u64,
    pub(super) connect_errors: ErrorSamples,
    /// How long each connection the server closed had been open.
    pub(super) open_times: Latencies,
}

impl LorisResult {
    pub(super) fn merge(&mut self, o: LorisResult) {
        self.connects += o.connects;
        self.closes += o.closes;
        self.answered += o.answered;
        self.overdue += o.overdue;
        self.connect_errors.merge(&o.connect_errors);
        self.open_times.merge(o.open_times);
    }
}

/// What every slowloris socket shares.
pub(super) struct Loris {
    pub(super) target: Arc<Target>,
    pub(super) request: Vec<u8>,
    pub(super) interval: Duration,
    pub(super) deadline: Duration,
    /// Connections per socket at most (the count bound of its loop).
    pub(super) max_connects: u64,
    /// Steps (bytes sent or reads) per connection at most.
    pub(super) max_steps: u64,
    pub(super) stop: CancellationToken,
    pub(super) live: Arc<Live>,
}

/// A WebSocket upgrade request head that never ends: the blank line is never sent.
pub(super) fn loris_request(host: SocketAddr) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         User-Agent: switchboard-bench-slowloris\r\n"
    )
    .into_bytes()
}

/// Starts the slowloris sockets, their starts spread over the stagger.
pub(super) fn start_slowloris(
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
pub(super) async fn loris_socket(l: Arc<Loris>, delay: Duration) -> LorisResult {
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

pub(super) enum DribbleEnd {
    ClosedByServer,
    Stopped,
}

/// Sends the request one byte per interval (never its end) and reads whatever comes back,
/// until the server closes the connection or `stop` fires. Also returns whether the server
/// sent anything.
pub(super) async fn dribble(mut stream: TcpStream, l: &Loris) -> (DribbleEnd, bool) {
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
