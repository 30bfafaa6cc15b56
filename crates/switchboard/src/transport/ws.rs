//! The WebSocket connection driver shared by every WebSocket dialect.
//!
//! Admission ([`crate::admission`]) has run before the upgrade. After it, one task per
//! connection runs [`drive`], which loops over four steps, each a method of [`Connection`]:
//!
//! - [`read`](Connection::read): one message from the socket → size and rate limits →
//!   the codec decodes it → the command layer applies it → the codec renders the reply or
//!   refusal into the connection's own outbox (behind the events already queued there);
//! - [`write_batch`](Connection::write_batch): up to [`WRITE_BATCH`] queued events and
//!   replies rendered by the codec and written with one flush, under one deadline;
//! - [`tick`](Connection::tick): the ping interval: liveness and the next ping;
//! - the authentication deadline and shutdown.
//!
//! Reading and writing share one task on purpose: an idle connection then costs one task
//! and no lock between halves. A write that stalls is bounded by [`WRITE_TIMEOUT`], and by
//! a close request. Every way out drops the session, and with it the peer's rooms, so each
//! room hears `peer-left` exactly once, before the close frame goes out.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use rand::RngExt;
use switchboard_core::{CloseReason, ConnId, Outbound, OutboxReceiver, Received, outbox};
use tokio::time::{Instant, interval_at, sleep_until, timeout};

use crate::admission::ConnectionSlot;
use crate::command::{Applied, Command, CommandError, Identity, Reply, Session};
use crate::dialect::{Codec, Observation, Out, close, nt::OPEN};
use crate::metrics::DialectLabel;
use crate::rate::{MessageLimit, Verdict};
use crate::state::AppState;

/// How long one batch of writes may take before the peer is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the client's half of the closing handshake.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Frames written per flush at most.
pub const WRITE_BATCH: usize = 64;

/// Upgrades an admitted request and runs `codec`'s dialect on the socket as a tracked task;
/// `identity` is who the request's token (if any) authenticated.
pub fn upgrade<C: Codec>(
    app: AppState,
    ws: WebSocketUpgrade,
    slot: ConnectionSlot,
    codec: C,
    identity: Option<Identity>,
) -> Response {
    let hard_cap = app.config.hard_frame_cap();
    let tracker = app.shutdown.tracker().clone();
    let ws = ws
        .max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        .read_buffer_size(app.config.ws_read_buffer.get())
        .write_buffer_size(app.config.ws_write_buffer.get());
    // axum keeps this closure inside the connection's task for the task's whole life (even
    // after calling it), so it carries one pointer to the codec rather than the codec: less
    // memory per connection (see BENCHMARKS.md, idle memory).
    let parts = Box::new((app, codec, slot, identity));
    ws.on_upgrade(move |socket| {
        let (app, codec, slot, identity) = *parts;
        tracker.track_future(drive(app, socket, codec, slot, identity))
    })
}

/// What a step decided.
enum Step {
    /// Keep going.
    Continue,
    /// Close with this code and reason.
    Close(u16, Cow<'static, str>),
    /// The socket is gone (or failed): stop without a close frame.
    Gone,
    /// The client sent its close frame: answer it, then stop.
    ClientClosed,
}

impl Step {
    fn close(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Close(code, reason.into())
    }
}

/// One connection: its socket, its codec, its session in the command layer, its outbox.
struct Connection<C> {
    app: AppState,
    socket: WebSocket,
    codec: C,
    session: Session,
    outbox: OutboxReceiver,
    rate: MessageLimit,
    conn: ConnId,
    /// Liveness is judged per ping interval: a frame only sets `seen` (no clock read per
    /// message); each tick turns `seen` into a timestamp.
    seen: bool,
    last_seen: Instant,
}

/// Runs one connection to its end.
///
/// A plain function returning an `async move` block rather than an `async fn`: an `async fn`
/// stores its arguments twice in its future (once as captured, once as locals), which cost
/// every connection another ~500 bytes (the socket alone is 368). The block uses its captures
/// in place.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn drive<C: Codec>(
    app: AppState,
    socket: WebSocket,
    codec: C,
    slot: ConnectionSlot,
    identity: Option<Identity>,
) -> impl Future<Output = ()> + Send {
    // Everything the connection keeps is built here, outside the task's future, so that the
    // future holds each piece once (moving a captured socket into a struct inside the block
    // would leave its 368 bytes reserved twice).
    let conn = ConnId::next();
    let label = DialectLabel { dialect: C::NAME };
    app.metrics.connections.get_or_create(&label).inc();
    let active = app.metrics.connections_active.get_or_create(&label).clone();
    let (handle, outbox) = outbox(conn, C::TAG, app.outbox_bounds());
    // Shutdown closes the outbox (see `shutdown`): the task keeps no shutdown future.
    app.shutdown.watch(&handle);
    let mut c = Connection {
        session: Session::new(
            handle,
            slot.ip(),
            app.config.requires_token(C::NAME),
            identity,
        ),
        rate: MessageLimit::new(app.config.max_messages_per_second),
        app,
        socket,
        codec,
        outbox,
        conn,
        seen: false,
        last_seen: Instant::now(),
    };
    // Counted open from here; built outside the task so that the task keeps one guard, not
    // the gauge and the guard.
    let open = super::Open::new(active);
    async move {
        let _open = open;
        tracing::debug!(conn = %c.conn, dialect = C::NAME, "connection open");
        let mut ping = {
            let every = c.codec.ping_interval(&c.app.config);
            let jitter = rand::rng().random_range(0..=every.as_millis() as u64 / 2);
            interval_at(
                Instant::now() + every / 2 + Duration::from_millis(jitter),
                every,
            )
        };
        // Boxed, and only when there is a deadline: a `Sleep` is ~100 bytes an idle peer would
        // otherwise carry for its whole life.
        let mut deadline = c.codec.needs_establishing(&c.app.config).then(|| {
            Box::pin(sleep_until(
                Instant::now() + c.app.config.auth_timeout.get(),
            ))
        });
        let mut step = Box::pin(c.open()).await;
        while let Step::Continue = step {
            step = tokio::select! {
                biased;
                received = c.outbox.recv() => match received {
                    Received::Item(item) => Box::pin(c.write_batch(item)).await,
                    Received::Closed(reason) => {
                        if reason == CloseReason::SlowConsumer {
                            c.app.metrics.slow_consumers.inc();
                        }
                        Step::close(close_for(reason), reason.as_str())
                    }
                },
                msg = c.socket.recv() => 'read: {
                    let (command, label, len) = match c.read(msg) {
                        Read::Done(step) => break 'read step,
                        Read::Apply { command, label, len } => (command, label, len),
                    };
                    // On one node every message's command is done at once; only what waits
                    // on the membership service is awaited, boxed, so that the connection's
                    // future carries no command state while it is idle.
                    let result = match c.session.apply(&c.app.commands, command) {
                        Applied::Done(r) => r,
                        Applied::Later(pending) => pending.await,
                    };
                    c.applied(label, len, &result)
                },
                _ = ping.tick() => Box::pin(c.tick()).await,
                () = async { deadline.as_mut().expect("guarded by the branch condition").await }, if deadline.is_some() && !c.codec.established() => {
                    c.app.metrics.error("auth_timeout");
                    Step::close(close::POLICY, c.codec.establish_timeout_reason())
                }
            };
        }
        let end = match step {
            Step::Close(code, reason) => Some((code, reason)),
            Step::ClientClosed => {
                // tungstenite has queued the closing handshake's reply; send it.
                let _ = Box::pin(timeout(Duration::from_secs(1), c.socket.flush())).await;
                None
            }
            Step::Continue | Step::Gone => None,
        };
        Box::pin(c.finish(end)).await;
        // The connection's slot (per-IP and total counts) is released last.
        drop(slot);
        tracing::debug!(conn = %c.conn, "connection closed");
    }
}

/// What [`Connection::read`] made of a message. A value that is matched at once and never
/// kept: boxing the command to even out the variants would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Read {
    /// Handled (a control frame, a refusal).
    Done(Step),
    /// A command to apply, then finish with [`Connection::applied`].
    Apply {
        command: Command,
        label: &'static str,
        len: usize,
    },
}

impl<C: Codec> Connection<C> {
    /// What the dialect does on connect (nt joins its room; rendezvous checks its key).
    async fn open(&mut self) -> Step {
        let result = match self.codec.open() {
            Ok(None) => return Step::Continue,
            Ok(Some(cmd)) => self.session.apply(&self.app.commands, cmd).outcome().await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.app.commands.count(e);
        }
        self.codec.observe(
            &self.app.metrics,
            Observation::Applied {
                label: OPEN,
                len: 0,
                result: &result,
            },
        );
        self.answer(&result)
    }

    /// One message from the socket: control frames, limits, decoding.
    fn read(&mut self, msg: Option<Result<Message, axum::Error>>) -> Read {
        let msg = match msg {
            None => return Read::Done(Step::Gone),
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                let e = e.into_inner();
                let ws_error = e.downcast_ref::<tokio_tungstenite::tungstenite::Error>();
                if let Some(tokio_tungstenite::tungstenite::Error::Capacity(_)) = ws_error {
                    self.app.metrics.limit("frame_size");
                    return Read::Done(Step::close(close::TOO_BIG, "message too big"));
                }
                if let Some(tokio_tungstenite::tungstenite::Error::Io(io)) = ws_error
                    && crate::tcp::watch::is_unfinished_message(io)
                {
                    self.app.metrics.limit("message_timeout");
                    return Read::Done(Step::close(close::POLICY, "message not finished in time"));
                }
                // A client that breaks the protocol is told why, as RFC 6455 asks.
                if let Some(tokio_tungstenite::tungstenite::Error::Protocol(p)) = ws_error {
                    self.app.metrics.error("protocol_error");
                    // A close reason is at most 123 bytes.
                    let mut reason = format!("protocol error: {p}");
                    reason.truncate(reason.floor_char_boundary(120));
                    return Read::Done(Step::close(close::PROTOCOL_ERROR, reason));
                }
                if let Some(tokio_tungstenite::tungstenite::Error::Utf8(_)) = ws_error {
                    self.app.metrics.error("invalid_utf8");
                    return Read::Done(Step::close(
                        close::INVALID_DATA,
                        "text message is not UTF-8",
                    ));
                }
                return Read::Done(Step::Gone);
            }
        };
        self.seen = true;
        let (binary, data) = match msg {
            Message::Text(t) => (false, Bytes::from(t)),
            Message::Binary(b) => (true, b),
            Message::Ping(_) => return Read::Done(Step::Continue),
            Message::Pong(echo) => {
                if let Some(rtt) = ping_rtt(&echo) {
                    self.app.metrics.ws_rtt.observe(rtt);
                    self.codec.observe(&self.app.metrics, Observation::Rtt(rtt));
                }
                return Read::Done(Step::Continue);
            }
            Message::Close(_) => return Read::Done(Step::ClientClosed),
        };
        #[cfg(debug_assertions)]
        assert!(
            data != super::TEST_PANIC,
            "a test asked this connection's task to panic"
        );
        self.app.metrics.bytes_in.inc_by(data.len() as u64);
        self.codec
            .observe(&self.app.metrics, Observation::FrameIn(data.len()));
        let max = self.app.config.max_frame_bytes.get();
        let refusal = if data.len() > max {
            Some(CommandError::FrameTooLarge {
                len: data.len(),
                max,
            })
        } else {
            match self.rate.check() {
                Verdict::Allow => None,
                Verdict::Refuse => Some(CommandError::RateLimited),
                Verdict::Close => {
                    self.app.metrics.limit("rate");
                    return Read::Done(Step::close(close::POLICY, "rate limit exceeded"));
                }
            }
        };
        if let Some(e) = refusal {
            self.app.commands.count(&e);
            return Read::Done(self.answer(&Err(e)));
        }
        let decoded = self.codec.decode(&data, binary);
        let (label, len) = (decoded.label, data.len());
        self.app.metrics.message(C::NAME, label);
        match decoded.command {
            Ok(command) => Read::Apply {
                command,
                label,
                len,
            },
            Err(e) => Read::Done(self.applied(label, len, &Err(e))),
        }
    }

    /// A message's command is done: count, observe, answer.
    fn applied(
        &mut self,
        label: &'static str,
        len: usize,
        result: &Result<Reply, CommandError>,
    ) -> Step {
        if let Err(e) = result {
            self.app.commands.count(e);
        }
        self.codec.observe(
            &self.app.metrics,
            Observation::Applied { label, len, result },
        );
        self.answer(result)
    }

    /// Renders a command's reply or refusal into the connection's own outbox, so that it
    /// goes out in order with the events queued before it.
    fn answer(&mut self, result: &Result<Reply, CommandError>) -> Step {
        let out = match result {
            Ok(reply) => self.codec.encode_reply(reply),
            Err(e) => self.codec.encode_error(e),
        };
        match out {
            Out::None => Step::Continue,
            Out::Frame(f) => self.queue(f),
            Out::Frames(frames) => {
                for f in frames {
                    if let Step::Close(code, reason) = self.queue(f) {
                        return Step::Close(code, reason);
                    }
                }
                Step::Continue
            }
            Out::Close {
                frame,
                code,
                reason,
            } => {
                if let Some(f) = frame {
                    self.queue(f);
                }
                Step::Close(code, reason)
            }
        }
    }

    fn queue(&mut self, frame: Bytes) -> Step {
        let handle = self.session.handle();
        if handle
            .try_deliver(Outbound::Frame(Box::new(frame)))
            .is_err()
        {
            // Our own outbox is full: we are the slow consumer.
            handle.close(CloseReason::SlowConsumer);
        }
        Step::Continue
    }

    /// Renders up to a batch of queued items, then writes them with one flush under one
    /// deadline (a timer per batch, not per frame). The batch is heap-allocated per batch so
    /// that an idle peer's task stays small.
    async fn write_batch(&mut self, first: Outbound) -> Step {
        let mut frames: Vec<Message> = Vec::new();
        let mut end = Step::Continue;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            let out = match item {
                Outbound::Frame(b) => Out::Frame(*b),
                Outbound::Event(env) => {
                    self.session.observe(&env.event);
                    let out = self.codec.encode_event(&env);
                    if out != Out::None {
                        self.app
                            .metrics
                            .relay_latency
                            .observe(env.queued_at.elapsed().as_secs_f64());
                    }
                    out
                }
                Outbound::Undelivered(e) => {
                    let e = CommandError::from(*e);
                    self.app.commands.count(&e);
                    self.codec.encode_error(&e)
                }
            };
            match out {
                Out::None => {}
                Out::Frame(f) => self.push_frame(&mut frames, f),
                Out::Frames(fs) => fs.into_iter().for_each(|f| self.push_frame(&mut frames, f)),
                Out::Close {
                    frame,
                    code,
                    reason,
                } => {
                    if let Some(f) = frame {
                        self.push_frame(&mut frames, f);
                    }
                    end = Step::Close(code, reason);
                    break;
                }
            }
            if frames.len() < WRITE_BATCH {
                next = self.outbox.try_recv();
            }
        }
        if frames.is_empty() {
            return end;
        }
        let written =
            interruptible(&mut self.outbox, write_all(&mut self.socket, &mut frames)).await;
        if written.map_or(true, |r| r.is_err()) {
            if self.session.handle().close_reason() == Some(CloseReason::SlowConsumer) {
                self.app.metrics.slow_consumers.inc();
            }
            return Step::Gone;
        }
        end
    }

    fn push_frame(&self, frames: &mut Vec<Message>, f: Bytes) {
        self.app.metrics.bytes_out.inc_by(f.len() as u64);
        self.codec
            .observe(&self.app.metrics, Observation::FrameOut(f.len()));
        frames.push(to_text(f));
    }

    /// The ping interval: a peer silent for longer than `PEER_HEARTBEAT_TIMEOUT` is gone;
    /// otherwise it gets a ping.
    async fn tick(&mut self) -> Step {
        if std::mem::take(&mut self.seen) {
            self.last_seen = Instant::now();
        }
        if self.last_seen.elapsed() > self.app.config.peer_heartbeat_timeout.get() {
            self.app.metrics.error("heartbeat_timeout");
            return Step::close(close::GOING_AWAY, CloseReason::HeartbeatTimeout.as_str());
        }
        match timeout(
            WRITE_TIMEOUT,
            self.socket.send(Message::Ping(ping_payload())),
        )
        .await
        {
            Ok(Ok(())) => Step::Continue,
            _ => Step::Gone,
        }
    }

    /// Leaves every room, then closes: the others hear `peer-left` even if this client
    /// never reads its close frame. What is already queued for the peer (a final error reply)
    /// goes out before the close frame.
    async fn finish(&mut self, end: Option<(u16, Cow<'static, str>)>) {
        self.session.leave_all();
        if let Some((code, reason)) = end {
            while let Some(Outbound::Frame(b)) = self.outbox.try_recv() {
                let _ = timeout(Duration::from_secs(1), self.socket.feed(to_text(*b))).await;
            }
            tracing::debug!(conn = %self.conn, code, %reason, "closing connection");
            send_close(&mut self.socket, code, reason).await;
        }
    }
}

/// Bounds a write by [`WRITE_TIMEOUT`] and by a close request (shutdown is one: it closes
/// every connection's outbox): a peer whose socket is full must still be closable at once
/// (as a slow consumer) rather than after the timeout. The write is polled first: only a
/// write that is actually stuck is abandoned. (Unbiased, a write that could finish at once
/// lost half the time to a close already requested, and its peer got no close frame: during
/// SIGTERM, the peers being written their room-mates' departures.)
async fn interruptible<E>(
    outbox: &mut OutboxReceiver,
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Result<Result<(), E>, ()> {
    tokio::select! {
        biased;
        r = timeout(WRITE_TIMEOUT, write) => r.map_err(|_| ()),
        _ = outbox.closed() => Err(()),
    }
}

/// Feeds every frame, then flushes once.
async fn write_all(socket: &mut WebSocket, frames: &mut Vec<Message>) -> Result<(), axum::Error> {
    for m in frames.drain(..) {
        socket.feed(m).await?;
    }
    socket.flush().await
}

fn to_text(b: Bytes) -> Message {
    match Utf8Bytes::try_from(b) {
        Ok(t) => Message::Text(t),
        Err(_) => Message::Text(Utf8Bytes::from_static("{\"type\":\"error\"}")),
    }
}

async fn send_close(socket: &mut WebSocket, code: u16, reason: Cow<'static, str>) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.into_owned()),
    };
    if timeout(
        Duration::from_secs(2),
        socket.send(Message::Close(Some(frame))),
    )
    .await
    .is_err()
    {
        return;
    }
    // Finish the closing handshake: read (and discard) until the client's Close, so that
    // data it sent before seeing ours does not sit unread when the socket is dropped — the
    // kernel would answer that with a reset, and the client would lose our close frame.
    let _ = timeout(CLOSE_LINGER, async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A ping carries the time it was sent, in Unix nanoseconds as decimal digits (as
/// nt-backend-wrtc's pings do), so that the pong that echoes it gives the round trip.
fn ping_payload() -> Bytes {
    Bytes::from(unix_nanos().to_string())
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The round trip in seconds of a pong echoing [`ping_payload`]; None for anything else
/// (an unsolicited pong, a forged or future timestamp, one older than a minute).
fn ping_rtt(echo: &[u8]) -> Option<f64> {
    let sent: u128 = std::str::from_utf8(echo).ok()?.parse().ok()?;
    let rtt = unix_nanos().checked_sub(sent)?;
    (rtt < 60_000_000_000).then(|| rtt as f64 / 1e9)
}

/// The close code for a reason the core gives.
pub fn close_for(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::Shutdown => close::GOING_AWAY,
        CloseReason::SlowConsumer => close::POLICY,
        CloseReason::HeartbeatTimeout | CloseReason::ClusterLost => close::GOING_AWAY,
        CloseReason::RoomDeleted | CloseReason::RoomInactive => close::NORMAL,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pong_echoing_our_ping_gives_the_round_trip() {
        let rtt = super::ping_rtt(&super::ping_payload()).expect("our own payload");
        assert!((0.0..1.0).contains(&rtt), "{rtt}");
        assert_eq!(super::ping_rtt(b""), None);
        assert_eq!(super::ping_rtt(b"not a number"), None);
        assert_eq!(super::ping_rtt(b"1"), None, "older than a minute");
        let future = (super::unix_nanos() + 10_000_000_000).to_string();
        assert_eq!(super::ping_rtt(future.as_bytes()), None);
    }
}
