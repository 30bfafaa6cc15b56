//! The Socket.io transport: socketioxide serves Engine.IO v4 at `/socket.io/` (websocket
//! and polling) on the HTTP port and on `SOCKETIO_PORT`; this module wires each socket to
//! the command layer through the Socket.io codec ([`crate::dialect::socketio`]).
//!
//! socketioxide spawns every `async` event handler as its own task, so two events of one
//! socket would race on the multi-threaded runtime (a candidate could overtake the offer it
//! belongs to). The handlers registered here therefore do their work *synchronously*, in
//! the closure that socketioxide calls in arrival order, before it spawns the (empty)
//! future: they only push the event into the socket's queue. One task per socket ([`run`])
//! takes events from that queue strictly in order, applies them, and also drains the
//! socket's outbox into emitted events.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::{Value, json};
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SendError, SocketError, SocketIo};
use switchboard_core::{CloseReason, ConnId, Outbound, OutboxReceiver, Received, outbox};
use tokio::sync::mpsc;

use crate::admission::{ConnectionSlot, Refusal};
use crate::client_ip;
use crate::command::{self, CommandError, Session};
use crate::dialect::socketio::{self as codec, EVENTS, Emit, NAME, TAG};
use crate::metrics::DialectLabel;
use crate::rate::{MessageLimit, Verdict};
use crate::state::AppState;

/// Events received but not yet handled, per socket. The socket's task handles them in
/// microseconds; a client that gets this far ahead is flooding and is disconnected.
const INBOUND_CAPACITY: usize = 1024;
/// How soon a socket whose Engine.IO channel was full is tried again.
const EMIT_RETRY: Duration = Duration::from_millis(2);

/// Every argument of an event, however many the client sent. Public so that the fuzz
/// target (`fuzz/fuzz_targets/socketio.rs`) decodes arguments exactly as the handlers do.
pub struct Args(pub Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("event arguments")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<Value>()? {
                    v.push(x);
                }
                Ok(Args(v))
            }
        }
        // A tuple, so that socketioxide hands over every argument rather than the first.
        d.deserialize_tuple(usize::MAX, V)
    }
}

/// What the socket's handlers hand to its task, in arrival order.
enum Inbound {
    /// An event and all its arguments.
    Event(&'static str, Vec<Value>),
    /// The socket disconnected: handle what came before, then stop.
    Disconnected,
}

/// The Socket.io layer (Engine.IO v4 at `/socket.io/`) with its handlers.
pub fn layer(app: AppState) -> SocketIoLayer {
    let max_payload = (app.config.max_frame_bytes.get() as u64).max(64 << 10);
    let (layer, io) = SocketIo::builder()
        .max_payload(max_payload)
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .build_layer();
    // Everything a socket needs is set up in a connect *middleware*: socketioxide awaits
    // middlewares before it sends the CONNECT packet, but spawns the connect handler after
    // sending it, so event handlers registered there can miss a client's first event (a
    // `join-room` emitted from its `connect` callback, the usual pattern). A refusal from
    // the middleware reaches the client as `connect_error {message}`.
    let setup = move |s: SocketRef| {
        let app = app.clone();
        async move { on_connect(&app, s) }
    };
    io.ns("/", (async || {}).with(setup));
    layer
}

/// Admits a socket and wires it to the command layer, or says why not.
fn on_connect(app: &AppState, s: SocketRef) -> Result<(), &'static str> {
    let parts = s.req_parts();
    let client = client_ip::from_parts(&parts.extensions);
    let slot = app
        .admission
        .admit(&parts.headers, client.0)
        .map_err(Refusal::message)?;
    let (handle, rx) = outbox(ConnId::next(), TAG, app.config.outbox_capacity);
    let session = Session::new(handle.clone(), client.0);
    let (tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
    for event in EVENTS {
        let (tx, app) = (tx.clone(), app.clone());
        s.on(event, move |s: SocketRef, args: TryData<Args>| {
            let args = args.0.map(|a| a.0).unwrap_or_default();
            if tx.try_send(Inbound::Event(event, args)).is_err() {
                app.metrics.limit("inbound_queue");
                let _ = s.disconnect();
            }
            std::future::ready(())
        });
    }
    s.on_disconnect(move || {
        if tx.try_send(Inbound::Disconnected).is_err() {
            // The queue is full or gone: stop the task through the outbox instead.
            handle.close(CloseReason::Shutdown);
        }
        std::future::ready(())
    });
    let tracker = app.shutdown.tracker().clone();
    tokio::spawn(tracker.track_future(run(app.clone(), session, s, inbound, rx, slot)));
    Ok(())
}

/// One socket's task: handles its events in arrival order and emits what arrives in its
/// outbox, until the socket or the server goes.
async fn run(
    app: AppState,
    mut session: Session,
    s: SocketRef,
    mut inbound: mpsc::Receiver<Inbound>,
    mut rx: OutboxReceiver,
    slot: ConnectionSlot,
) {
    let _slot = slot;
    let label = DialectLabel { dialect: NAME };
    app.metrics.connections.get_or_create(&label).inc();
    let active = app.metrics.connections_active.get_or_create(&label).clone();
    active.inc();
    let mut rate = MessageLimit::new(app.config.max_messages_per_second);
    let mut out = Emitter::new(s.clone());
    let shutdown = app.shutdown.token().cancelled();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                session.handle().close(CloseReason::Shutdown);
                break;
            }
            msg = inbound.recv() => match msg {
                Some(Inbound::Event(event, args)) => {
                    if !on_event(&app, &mut session, &mut out, &mut rate, event, &args).await {
                        break;
                    }
                }
                Some(Inbound::Disconnected) | None => break,
            },
            received = rx.recv(), if !out.is_stalled() => match received {
                Received::Item(Outbound::Event(env)) => {
                    session.observe(&env.event);
                    let mut emits = Vec::new();
                    codec::encode_event(&env, &mut emits);
                    if !emits.is_empty() {
                        app.metrics.relay_latency.observe(env.queued_at.elapsed().as_secs_f64());
                    }
                    emits.into_iter().for_each(|e| out.push(e));
                }
                Received::Item(Outbound::Frame(_)) => {}
                Received::Closed(_) => break,
            },
            () = tokio::time::sleep(EMIT_RETRY), if out.is_stalled() => {
                out.flush();
                let too_long = out.stalled_since.is_some_and(|t| t.elapsed() > crate::transport::ws::WRITE_TIMEOUT);
                if too_long {
                    session.handle().close(CloseReason::SlowConsumer);
                }
                // The outbox filled up behind the stalled channel (or the timeout above).
                if session.handle().is_closing() {
                    break;
                }
            }
        }
    }
    session.leave_all();
    if s.connected() {
        let reason = session
            .handle()
            .close_reason()
            .unwrap_or(CloseReason::Shutdown);
        if reason == CloseReason::SlowConsumer {
            app.metrics.slow_consumers.inc();
        } else {
            let _ = s.emit("error", &json!({ "message": reason.as_str() }));
        }
        // `disconnect` needs room in the socket's channel; a stuck client gets a few tries,
        // then Engine.IO's ping timeout closes it.
        for _ in 0..20 {
            match s.clone().disconnect() {
                Err(SocketError::InternalChannelFull) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => break,
            }
        }
    }
    active.dec();
}

/// One event from the client: rate limit, decode, apply, answer. False when the socket is
/// to be disconnected.
async fn on_event(
    app: &AppState,
    session: &mut Session,
    out: &mut Emitter,
    rate: &mut MessageLimit,
    event: &'static str,
    args: &[Value],
) -> bool {
    match rate.check() {
        Verdict::Allow => {}
        Verdict::Refuse => {
            let e = CommandError::RateLimited;
            command::count(app, &e);
            out.push(codec::encode_error(&e));
            return true;
        }
        Verdict::Close => {
            app.metrics.limit("rate");
            session.leave_all();
            let _ = out.s.clone().disconnect();
            return false;
        }
    }
    app.metrics.message(NAME, event);
    let result = match codec::decode(event, args) {
        Ok(cmd) => session.apply(app, cmd).outcome().await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        command::count(app, e);
    }
    match &result {
        Ok(reply) => {
            if let Some(e) = codec::encode_reply(reply) {
                out.push(e);
            }
        }
        Err(e) => out.push(codec::encode_error(e)),
    }
    true
}

/// The socket's outgoing events, in order. Engine.IO's own per-socket channel is small and
/// offers no way to wait for room, only `try_send`; when it is full the events wait here
/// and the task retries shortly, taking nothing more from the peer's outbox meanwhile. The
/// outbox then fills like any other dialect's, and a peer that stays behind is closed as a
/// slow consumer: a burst is delivered late rather than lost.
struct Emitter {
    s: SocketRef,
    pending: VecDeque<Emit>,
    /// When the channel was first found full, while events wait.
    stalled_since: Option<tokio::time::Instant>,
}

impl Emitter {
    fn new(s: SocketRef) -> Self {
        Self {
            s,
            pending: VecDeque::new(),
            stalled_since: None,
        }
    }

    /// Queues an event behind the waiting ones and sends what the channel takes.
    fn push(&mut self, emit: Emit) {
        self.pending.push_back(emit);
        self.flush();
    }

    /// Sends waiting events until the channel is full.
    fn flush(&mut self) {
        while let Some((event, data)) = self.pending.front() {
            match self.s.emit(&**event, data) {
                Ok(()) => {}
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    self.stalled_since
                        .get_or_insert_with(tokio::time::Instant::now);
                    return;
                }
                Err(e) => {
                    // Only a socket that is already gone should get here; say so if not.
                    if self.s.connected() {
                        tracing::warn!(%event, error = %e, "socket.io emit to a connected socket failed");
                    }
                }
            }
            self.pending.pop_front();
        }
        self.stalled_since = None;
        if self.pending.capacity() > 16 {
            self.pending = VecDeque::new();
        }
    }

    fn is_stalled(&self) -> bool {
        self.stalled_since.is_some()
    }
}
