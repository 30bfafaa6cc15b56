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
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SendError, SocketError, SocketIo};
use switchboard_core::{CloseReason, ConnId, Outbound, OutboxReceiver, Received, outbox};
use tokio::sync::{Notify, mpsc};

use crate::admission::ConnectionSlot;
use crate::client_ip;
use crate::command::{CommandError, Identity, Session, TokenCheck, TokenRefusal, check_token};
use crate::dialect::socketio::{self as codec, EVENTS, Emit, NAME, TAG};
use crate::metrics::DialectLabel;
use crate::rate::{MessageLimit, Verdict};
use crate::state::AppState;
use crate::tcp::watch::ConnectionKill;

/// Events received but not yet handled, per socket. The socket's task handles them in
/// microseconds; a client that gets this far ahead is flooding and is disconnected.
const INBOUND_CAPACITY: usize = 1024;
/// Packets Engine.IO queues for one socket's transport (socketioxide's default is 128): with
/// relayed messages at most `MAX_FRAME_BYTES`, about 1 MiB for a reader that stopped reading,
/// on top of its outbox. A polling client takes at most this many per poll (1,000 events
/// arrive in ~250 ms on loopback, against ~70 ms with 128).
const ENGINE_QUEUE: usize = 16;
/// How long a dismissed socket's last packets get before its transport is closed.
const DISMISS_GRACE: Duration = Duration::from_millis(200);
/// How soon a socket whose Engine.IO channel was full is tried again.
const EMIT_RETRY: Duration = Duration::from_millis(2);

/// Every argument of an event, however many the client sent, as the raw JSON it came as
/// (the codec parses what it reads; a relayed body is never built into a tree). Public so
/// that the fuzz target (`fuzz/fuzz_targets/socketio.rs`) decodes arguments exactly as the
/// handlers do.
pub struct Args(pub Vec<Box<RawValue>>);

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
                while let Some(x) = seq.next_element::<Box<RawValue>>()? {
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
    /// An event, all its arguments, and the bytes they count for.
    Event(&'static str, Vec<Box<RawValue>>, usize),
    /// An event that arrived while too many bytes waited: answered with an error.
    Refused(&'static str),
    /// The socket disconnected: handle what came before, then stop.
    Disconnected,
}

/// Told by the connect handler once socketioxide has marked the socket connected.
#[derive(Clone)]
struct Connected(Arc<Notify>);

/// How long a socket admitted by the middleware may take to be marked connected; one whose
/// CONNECT packet could not be sent never is.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// The Socket.io layer (Engine.IO v4 at `/socket.io/`) with its handlers.
pub fn layer(app: AppState) -> SocketIoLayer {
    // The same bounds as the other dialects' WebSockets: no message (or polling body)
    // larger than the hard frame cap is buffered, the read buffer is WS_READ_BUFFER, and
    // Engine.IO's own queue of packets waiting for the socket stays short (the peer's outbox
    // is the queue that is bounded and watched for slow consumers).
    let hard_cap = app.config.hard_frame_cap();
    let (layer, io) = SocketIo::builder()
        .max_payload(hard_cap as u64)
        .ws_max_message_size(hard_cap)
        .ws_max_frame_size(hard_cap)
        .ws_read_buffer_size(app.config.ws_read_buffer.get())
        .max_buffer_size(ENGINE_QUEUE)
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        // An Engine.IO session that does not connect to the namespace in time is closed
        // (socketioxide's default is 45 s).
        .connect_timeout(app.config.auth_timeout.get())
        .build_layer();
    // Everything a socket needs is set up in a connect *middleware*: socketioxide awaits
    // middlewares before it sends the CONNECT packet, but spawns the connect handler after
    // sending it, so event handlers registered there can miss a client's first event (a
    // `join-room` emitted from its `connect` callback, the usual pattern). A refusal from
    // the middleware reaches the client as `connect_error {message}`.
    let setup = move |s: SocketRef, auth: TryData<Value>| {
        let app = app.clone();
        async move { on_connect(&app, s, auth.0.as_ref().ok()) }
    };
    // socketioxide sends CONNECT before it marks the socket connected, and a socket not yet
    // marked connected cannot emit: a client quick enough to send an event in between
    // would have its reply fail. The socket's task therefore waits for the connect
    // handler, which runs once the socket is marked connected.
    let connected = async |s: SocketRef| {
        if let Some(Connected(signal)) = s.extensions.get::<Connected>() {
            signal.notify_one();
        }
    };
    io.ns("/", connected.with(setup));
    layer
}

/// Admits a socket and wires it to the command layer, or says why not. The handshake's
/// `auth: {token}` authenticates the socket (required when `REQUIRE_TOKEN` names
/// `socketio`), checked by the command layer's [`check_token`]: it may then join the
/// token's room only, as the token's user.
fn on_connect(app: &AppState, s: SocketRef, auth: Option<&Value>) -> Result<(), String> {
    let parts = s.req_parts();
    let client = client_ip::from_parts(&parts.extensions);
    let token = auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    let check = TokenCheck {
        token,
        required: app.config.requires_token(NAME),
        user: None,
        room: None,
    };
    let claims = check_token(&app.auth, client.0, check).map_err(|e| match e {
        TokenRefusal::Missing => {
            app.metrics.error("token_required");
            "This server requires a token: connect with auth: {token}".to_owned()
        }
        TokenRefusal::Refused(e) => {
            app.metrics.error(e.code());
            e.to_string()
        }
    })?;
    let identity = claims.map(Identity::from);
    let slot = app
        .admission
        .admit(&parts.headers, client.0)
        .map_err(|r| r.message().to_owned())?;
    let (handle, rx) = outbox(ConnId::next(), TAG, app.outbox_bounds());
    let session = Session::new(
        handle.clone(),
        client.0,
        app.config.requires_token(NAME),
        identity,
    );
    let (tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
    let queued = Arc::new(QueuedBytes::new(app.config.outbox_max_bytes.get()));
    for event in EVENTS {
        let (tx, app, queued) = (tx.clone(), app.clone(), queued.clone());
        s.on(event, move |s: SocketRef, args: TryData<Args>| {
            let args = args.0.map(|a| a.0).unwrap_or_default();
            let item = match queued.take(args_size(&args)) {
                Some(size) => Inbound::Event(event, args, size),
                // Socket.io gives no way to make a client wait, so the bytes waiting to be
                // handled are bounded as outgoing ones are, and an event past the bound
                // gets an error in its turn instead of being queued.
                None => Inbound::Refused(event),
            };
            if tx.try_send(item).is_err() {
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
    let connected = Arc::new(Notify::new());
    s.extensions.insert(Connected(connected.clone()));
    let tracker = app.shutdown.tracker().clone();
    tokio::spawn(tracker.track_future(run(
        app.clone(),
        session,
        s,
        Inbox {
            events: inbound,
            queued,
            connected,
        },
        rx,
        slot,
    )));
    Ok(())
}

/// What the socket's handlers share with its task.
struct Inbox {
    /// Events in arrival order.
    events: mpsc::Receiver<Inbound>,
    /// The bytes those events hold.
    queued: Arc<QueuedBytes>,
    /// Told once socketioxide has marked the socket connected.
    connected: Arc<Notify>,
}

/// One socket's task: handles its events in arrival order and emits what arrives in its
/// outbox, until the socket or the server goes.
async fn run(
    app: AppState,
    mut session: Session,
    s: SocketRef,
    inbox: Inbox,
    mut rx: OutboxReceiver,
    slot: ConnectionSlot,
) {
    let _slot = slot;
    let Inbox {
        events: mut inbound,
        queued,
        connected,
    } = inbox;
    if tokio::time::timeout(CONNECT_DEADLINE, connected.notified())
        .await
        .is_err()
    {
        session.leave_all();
        return;
    }
    let label = DialectLabel { dialect: NAME };
    app.metrics.connections.get_or_create(&label).inc();
    let _open = super::Open::new(app.metrics.connections_active.get_or_create(&label).clone());
    let mut rate = MessageLimit::new(app.config.max_messages_per_second);
    let mut out = Emitter::new(s.clone());
    let shutdown = app.shutdown.token().cancelled();
    tokio::pin!(shutdown);
    // In production a socket must join a room within AUTH_TIMEOUT, as the WebSocket
    // dialects must authenticate or speak.
    let mut join_deadline = app
        .config
        .is_production()
        .then(|| Box::pin(tokio::time::sleep(app.config.auth_timeout.get())));
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                session.handle().close(CloseReason::Shutdown);
                break;
            }
            () = async { join_deadline.as_mut().expect("guarded").await }, if join_deadline.is_some() => {
                if !session.in_a_room() {
                    app.metrics.error("auth_timeout");
                    out.push(("error".into(), json!({ "message": "No room joined in time" }).into()));
                    out.flush();
                    let _ = s.clone().disconnect();
                    session.handle().close(CloseReason::Shutdown);
                    break;
                }
                join_deadline = None;
            }
            msg = inbound.recv() => match msg {
                Some(Inbound::Event(event, args, size)) => {
                    let go_on = on_event(&app, &mut session, &mut out, &mut rate, event, &args).await;
                    drop(args);
                    queued.give_back(size);
                    if !go_on {
                        break;
                    }
                }
                Some(Inbound::Refused(event)) => {
                    app.metrics.message(NAME, event);
                    refuse(&app, &mut out, &CommandError::RateLimited);
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
                Received::Item(Outbound::Undelivered(e)) => {
                    refuse(&app, &mut out, &CommandError::from(*e));
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
    // Whether the server ended the session (anything but the client's own disconnect).
    let dismissed = s.connected() || session.handle().is_closing();
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
    if dismissed {
        close_transport(&s).await;
    }
}

/// Closes a dismissed socket's WebSocket transport, once its last packets (the `error` and
/// the namespace disconnect) have had a moment to go out: socketioxide leaves the Engine.IO
/// session open after a namespace disconnect, and a client that ignores the disconnect
/// would otherwise keep its connection for as long as it answers pings. (A polling session
/// holds no connection between requests and ends at its ping timeout.)
async fn close_transport(s: &SocketRef) {
    if s.transport_type() != socketioxide::TransportType::Websocket {
        return;
    }
    let Some(ConnectionKill(kill)) = s.req_parts().extensions.get::<ConnectionKill>().cloned()
    else {
        return;
    };
    tokio::time::sleep(DISMISS_GRACE).await;
    kill.kill();
}

/// One event from the client: rate limit, decode, apply, answer. False when the socket is
/// to be disconnected.
async fn on_event(
    app: &AppState,
    session: &mut Session,
    out: &mut Emitter,
    rate: &mut MessageLimit,
    event: &'static str,
    args: &[Box<RawValue>],
) -> bool {
    match rate.check() {
        Verdict::Allow => {}
        Verdict::Refuse => {
            refuse(app, out, &CommandError::RateLimited);
            return true;
        }
        Verdict::Close => {
            app.metrics.limit("rate");
            session.leave_all();
            let _ = out.s.clone().disconnect();
            session.handle().close(CloseReason::Shutdown);
            return false;
        }
    }
    app.metrics.message(NAME, event);
    #[cfg(debug_assertions)]
    assert!(
        args.first()
            .and_then(|a| serde_json::from_str::<&str>(a.get()).ok())
            .map(str::as_bytes)
            != Some(super::TEST_PANIC),
        "a test asked this socket's task to panic"
    );
    let result = match codec::decode(event, args) {
        Ok(cmd) => session.apply(&app.commands, cmd).outcome().await,
        Err(e) => Err(e),
    };
    match &result {
        Ok(reply) => {
            if let Some(e) = codec::encode_reply(reply) {
                out.push(e);
            }
        }
        Err(e) => refuse(app, out, e),
    }
    true
}

/// Counts a refusal and answers it with Socket.io's `error` event.
fn refuse(app: &AppState, out: &mut Emitter, e: &CommandError) {
    app.commands.count(e);
    out.push(codec::encode_error(e));
}

/// Bytes of events received and not yet handled, one socket's, against its bound.
struct QueuedBytes {
    max: usize,
    now: std::sync::atomic::AtomicUsize,
}

impl QueuedBytes {
    fn new(max: usize) -> Self {
        Self {
            max,
            now: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Counts `size` more bytes waiting, unless that passes the bound (an event of any
    /// size is taken when nothing waits).
    fn take(&self, size: usize) -> Option<usize> {
        use std::sync::atomic::Ordering;
        self.now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now == 0 || now + size <= self.max).then_some(now + size)
            })
            .ok()
            .map(|_| size)
    }

    fn give_back(&self, size: usize) {
        self.now
            .fetch_sub(size, std::sync::atomic::Ordering::AcqRel);
    }
}

/// How many bytes `args` hold: their JSON text.
fn args_size(args: &[Box<RawValue>]) -> usize {
    args.iter().map(|a| a.get().len()).sum()
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
