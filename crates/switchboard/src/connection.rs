//! One connection's life without its socket: the state machine every WebSocket dialect runs,
//! which the WebSocket driver ([`crate::transport::ws`]) feeds and the fuzz targets drive
//! directly.
//!
//! A [`Connection`] is a [`Session`] (who the peer is, its seats in rooms, its outbox) with
//! the dialect's codec and the per-connection limits. It is told what happens — a message
//! arrived ([`Connection::message`]), a pong, the ping interval passed
//! ([`Connection::tick`]), an outbox item is to be written ([`Connection::render`]), the
//! outbox was closed ([`Connection::closed`]) — and answers with what to write and whether to
//! close ([`Step`], [`Out`]). It never touches a socket: the driver moves bytes.
//!
//! [`Connection::detach`] separates the session (with its outbox) from the socket it came
//! in on, and [`Detached::attach`] gives it a new one; today a detached session is not kept
//! (a connection that ends leaves its rooms), but nothing of it lives in the socket's task.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use switchboard_core::{CloseReason, ConnId, Outbound, OutboxReceiver};
use tokio::time::Instant;

use crate::command::{Applied, Command, CommandError, Reply, Session};
use crate::dialect::{Codec, Observation, Out, close, nt::OPEN};
use crate::rate::{MessageLimit, Verdict};
use crate::state::AppState;

/// What a connection does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
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
    /// Close with `code` and `reason`.
    pub fn close(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Close(code, reason.into())
    }
}

/// What [`Connection::message`] made of a message. A value that is matched at once and
/// never kept: boxing the command to even out the variants would cost an allocation per
/// message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Read {
    /// Handled (a refusal, or a limit that closes).
    Done(Step),
    /// A command to apply ([`Connection::apply`]), then finish with
    /// [`Connection::applied`].
    Apply {
        /// What the message asks.
        command: Command,
        /// Its type, for metrics.
        label: &'static str,
        /// Its size in bytes.
        len: usize,
    },
}

/// A connection: its session in the command layer, its codec, its outbox, its limits.
pub struct Connection<C> {
    app: AppState,
    codec: C,
    session: Session,
    /// The peer's outbox: what the driver writes. Public to the driver so that it can wait
    /// on it beside the socket.
    pub(crate) outbox: OutboxReceiver,
    rate: MessageLimit,
    /// Liveness is judged per ping interval: a frame only sets `seen` (no clock read per
    /// message); each tick turns `seen` into a timestamp.
    seen: bool,
    last_seen: Instant,
}

/// A session with no socket: its codec's state, its seats and its outbox, waiting for
/// [`Detached::attach`].
pub struct Detached<C>(Connection<C>);

impl<C> Detached<C> {
    /// The session, attached to a new socket: the driver writes what queued meanwhile.
    pub fn attach(self) -> Connection<C> {
        let mut c = self.0;
        c.seen = false;
        c.last_seen = Instant::now();
        c
    }
}

impl<C: Codec> Connection<C> {
    /// A connection for `session`, whose outbox is `outbox`.
    pub fn new(app: AppState, codec: C, session: Session, outbox: OutboxReceiver) -> Self {
        Self {
            rate: MessageLimit::new(app.config.max_messages_per_second),
            app,
            codec,
            session,
            outbox,
            seen: false,
            last_seen: Instant::now(),
        }
    }

    /// The connection id.
    pub fn conn(&self) -> ConnId {
        self.session.conn()
    }

    /// The server state it runs in.
    pub fn app(&self) -> &AppState {
        &self.app
    }

    /// Whether it has authenticated (or joined, where that is its dialect's first step).
    pub fn established(&self) -> bool {
        self.codec.established()
    }

    /// Whether its dialect has a deadline for that first step here.
    pub fn needs_establishing(&self) -> bool {
        self.codec.needs_establishing(&self.app.config)
    }

    /// Its dialect's ping interval.
    pub fn ping_interval(&self) -> Duration {
        self.codec.ping_interval(&self.app.config)
    }

    /// What the dialect does on connect (nt joins its room; rendezvous checks its key).
    pub async fn open(&mut self) -> Step {
        let result = match self.codec.open() {
            Ok(None) => return Step::Continue,
            Ok(Some(cmd)) => self.session.apply(&self.app.commands, cmd).outcome().await,
            Err(e) => Err(e),
        };
        self.applied(OPEN, 0, &result)
    }

    /// One message from the client (text or binary): size and rate limits, then decoding.
    pub fn message(&mut self, data: &Bytes, binary: bool) -> Read {
        self.seen = true;
        #[cfg(debug_assertions)]
        assert!(
            data != crate::transport::TEST_PANIC,
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
        let decoded = self.codec.decode(data, binary);
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

    /// A control frame from the client (a ping, a pong): it is alive.
    pub fn control(&mut self) {
        self.seen = true;
    }

    /// A pong echoing one of our pings: the round trip, for the metrics.
    pub fn pong(&mut self, rtt: f64) {
        self.seen = true;
        self.app.metrics.ws_rtt.observe(rtt);
        self.codec.observe(&self.app.metrics, Observation::Rtt(rtt));
    }

    /// Executes a decoded command. On one node every message's command is done at once;
    /// only what waits on the membership service comes back as a boxed future
    /// ([`Applied::Later`]), so that a connection's task carries no command state while it is
    /// idle.
    pub fn apply(&mut self, command: Command) -> Applied<'_> {
        self.session.apply(&self.app.commands, command)
    }

    /// A message's command is done: count, observe, answer.
    pub fn applied(
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
        match out.each(|f| self.queue(f)) {
            Some((code, reason)) => Step::Close(code, reason),
            None => Step::Continue,
        }
    }

    fn queue(&mut self, frame: Bytes) {
        let handle = self.session.handle();
        if handle
            .try_deliver(Outbound::Frame(Box::new(frame)))
            .is_err()
        {
            // Our own outbox is full: we are the slow consumer.
            handle.close(CloseReason::SlowConsumer);
        }
    }

    /// Renders one item of the outbox into what is written: an event in the dialect, a
    /// frame already rendered (a reply), a signal that turned out undeliverable as the
    /// dialect's error.
    pub fn render(&mut self, item: Outbound) -> Out {
        match item {
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
        }
    }

    /// The next outbox item already queued, if any (for a driver that does not wait: the
    /// fuzz targets).
    pub fn next_outbound(&mut self) -> Option<Outbound> {
        self.outbox.try_recv()
    }

    /// Counts a frame about to be written.
    pub fn wrote(&self, len: usize) {
        self.app.metrics.bytes_out.inc_by(len as u64);
        self.codec
            .observe(&self.app.metrics, Observation::FrameOut(len));
    }

    /// The outbox was closed (by the server: a slow consumer, a deleted room, shutdown).
    pub fn closed(&self, reason: CloseReason) -> Step {
        if reason == CloseReason::SlowConsumer {
            self.app.metrics.slow_consumers.inc();
        }
        Step::close(close_for(reason), reason.as_str())
    }

    /// A write failed or stalled: the peer is gone (counted as a slow consumer when its
    /// outbox was closed as one).
    pub fn write_failed(&self) -> Step {
        if self.session.handle().close_reason() == Some(CloseReason::SlowConsumer) {
            self.app.metrics.slow_consumers.inc();
        }
        Step::Gone
    }

    /// The ping interval passed: `Continue` (send a ping) while the peer was heard from
    /// within `PEER_HEARTBEAT_TIMEOUT`, a close otherwise.
    pub fn tick(&mut self) -> Step {
        if std::mem::take(&mut self.seen) {
            self.last_seen = Instant::now();
        }
        if self.last_seen.elapsed() > self.app.config.peer_heartbeat_timeout.get() {
            self.app.metrics.error("heartbeat_timeout");
            return Step::close(close::GOING_AWAY, CloseReason::HeartbeatTimeout.as_str());
        }
        Step::Continue
    }

    /// The first-step deadline passed without it.
    pub fn establish_timed_out(&self) -> Step {
        self.app.metrics.error("auth_timeout");
        Step::close(close::POLICY, self.codec.establish_timeout_reason())
    }

    /// Ends the session: it leaves every room (each hears it left), so the others learn of
    /// it even if the client never reads its close frame. Returns the replies still queued,
    /// to go out before the close frame.
    pub fn leave(&mut self) -> Vec<Bytes> {
        self.session.leave_all();
        let mut last = Vec::new();
        while let Some(Outbound::Frame(b)) = self.outbox.try_recv() {
            last.push(*b);
        }
        last
    }

    /// Separates the session from its socket, keeping its seats and outbox.
    pub fn detach(self) -> Detached<C> {
        Detached(self)
    }
}

/// The close code for a reason the core gives.
pub fn close_for(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::Shutdown => close::GOING_AWAY,
        CloseReason::SlowConsumer | CloseReason::Revoked => close::POLICY,
        CloseReason::HeartbeatTimeout | CloseReason::ClusterLost => close::GOING_AWAY,
        CloseReason::RoomDeleted | CloseReason::RoomInactive => close::NORMAL,
    }
}
