//! The WebSocket connection driver shared by every WebSocket dialect.
//!
//! Admission ([`crate::admission`]) has run before the upgrade. After it one task per connection runs [`drive`]: it reads
//! frames, enforces the frame-size and message-rate limits, hands text to the session,
//! drains the connection's bounded outbox to the socket (a batch at a time, one flush per
//! batch), pings on an interval (first ping jittered) and closes a peer that went silent.
//! Reading and writing share one task on purpose: an idle connection then costs one task
//! and no lock between halves. A write that stalls is bounded by [`WRITE_TIMEOUT`].
//!
//! Every way out of [`drive`] drops the session, and with it the peer's room membership, so
//! the room hears `peer-left` exactly once.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use rand::Rng;
use switchboard_core::{CloseReason, ConnId, Outbound, OutboxReceiver, Received, outbox};
use tokio::time::{Instant, interval_at, sleep_until, timeout};

use crate::admission::ConnectionSlot;
use crate::metrics::DialectLabel;
use crate::protocol::{Context, Flow, Session};
use crate::rate::{MessageLimit, Verdict};
use crate::state::AppState;

/// How long one batch of writes may take before the peer is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the client's half of the closing handshake.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Frames written per flush at most.
const WRITE_BATCH: usize = 64;

/// WebSocket close codes used across dialects (RFC 6455 §7.4.1).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Server going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Policy violation (auth, limits, protocol misuse).
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL: u16 = 1011;
    /// Try again later (overloaded).
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Upgrades an admitted request and runs `session` on the socket as a tracked task.
pub fn upgrade<S: Session>(
    app: AppState,
    ws: WebSocketUpgrade,
    slot: ConnectionSlot,
    session: S,
) -> Response {
    let hard_cap = app.config.hard_frame_cap();
    let tracker = app.shutdown.tracker().clone();
    let ws = ws
        .max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        .read_buffer_size(app.config.ws_read_buffer.get())
        .write_buffer_size(app.config.ws_write_buffer.get());
    // axum keeps this closure inside the connection's task for the task's whole life (even
    // after calling it), so it carries one pointer to the session rather than the session:
    // 128 bytes less per connection (see BENCHMARKS.md, idle memory).
    let parts = Box::new((app, session, slot));
    ws.on_upgrade(move |socket| {
        let (app, session, slot) = *parts;
        tracker.track_future(drive(app, socket, session, slot))
    })
}

/// Bounds a write by [`WRITE_TIMEOUT`], by a close request and by shutdown: a peer whose
/// socket is full must still be closable at once (as a slow consumer) rather than after the
/// timeout.
async fn interruptible<E>(
    app: &AppState,
    outbox: &mut OutboxReceiver,
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Result<Result<(), E>, ()> {
    tokio::select! {
        r = timeout(WRITE_TIMEOUT, write) => r.map_err(|_| ()),
        _ = outbox.closed() => Err(()),
        () = app.shutdown.token().cancelled() => Err(()),
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

fn close_for(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::Shutdown => close::GOING_AWAY,
        CloseReason::SlowConsumer => close::POLICY,
        CloseReason::HeartbeatTimeout => close::GOING_AWAY,
        CloseReason::RoomDeleted | CloseReason::RoomInactive => close::NORMAL,
    }
}

/// Runs one connection to its end.
///
/// A plain function returning an `async move` block rather than an `async fn`: an `async fn`
/// stores its arguments twice in its future (once as captured, once as locals), which cost
/// every connection another ~500 bytes (the socket alone is 368). The block uses its captures
/// in place.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn drive<S: Session>(
    app: AppState,
    mut socket: WebSocket,
    mut session: S,
    slot: ConnectionSlot,
) -> impl Future<Output = ()> + Send {
    async move {
        let conn = ConnId::next();
        let label = DialectLabel { dialect: S::NAME };
        app.metrics.connections.get_or_create(&label).inc();
        let active = app.metrics.connections_active.get_or_create(&label).clone();
        active.inc();
        let (handle, mut outbox_rx) = outbox(conn, S::TAG, app.config.outbox_capacity);
        tracing::debug!(%conn, dialect = S::NAME, "connection open");

        let cfg = &app.config;
        let ping_every = session.ping_interval(&app);
        let jitter = rand::rng().random_range(0..=ping_every.as_millis() as u64 / 2);
        let mut ping = interval_at(
            Instant::now() + ping_every / 2 + Duration::from_millis(jitter),
            ping_every,
        );
        // Liveness is judged per ping interval: a frame only sets `seen` (no clock read per
        // message); each tick turns `seen` into a timestamp.
        let mut last_seen = Instant::now();
        let mut seen = false;
        let deadline = session
            .needs_establishing(&app)
            .then(|| Instant::now() + cfg.auth_timeout.get());
        let mut rate = MessageLimit::new(cfg.max_messages_per_second);
        let bytes_in = app
            .metrics
            .bytes
            .get_or_create(&crate::metrics::DirectionLabels { direction: "in" })
            .clone();
        let bytes_out = app
            .metrics
            .bytes
            .get_or_create(&crate::metrics::DirectionLabels { direction: "out" })
            .clone();

        let client = slot.ip();
        let mut opened = Some(session.on_open(&Context {
            app: &app,
            handle: &handle,
            client,
        }));
        // Futures that live for the whole connection are pinned once: re-creating the close
        // future every iteration would register and deregister a waiter (two mutex operations)
        // per message.
        let shutdown = app.shutdown.token().cancelled();
        tokio::pin!(shutdown);
        // Boxed, and only when there is a deadline: a `Sleep` is ~100 bytes an idle peer would
        // otherwise carry for its whole life.
        let mut auth_deadline = deadline.map(|d| Box::pin(sleep_until(d)));
        let end: Option<(u16, Cow<'static, str>)> = loop {
            if let Some(Flow::Close(code, reason)) = opened.take() {
                break Some((code, reason));
            }
            let cx = Context {
                app: &app,
                handle: &handle,
                client,
            };
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    break Some((close_for(CloseReason::Shutdown), CloseReason::Shutdown.as_str().into()));
                }
                received = outbox_rx.recv() => {
                    let item = match received {
                        Received::Item(item) => item,
                        Received::Closed(reason) => {
                            if reason == CloseReason::SlowConsumer {
                                app.metrics.slow_consumers.inc();
                            }
                            break Some((close_for(reason), reason.as_str().into()));
                        }
                    };
                    // Render up to a batch of queued frames, then write them with one flush under
                    // one deadline (a timer per batch, not per frame). The batch and its write
                    // future are heap-allocated per batch so that an idle peer's task stays small.
                    let mut frames: Vec<Message> = Vec::new();
                    let mut next = Some(item);
                    while let Some(item) = next.take() {
                        let frame = match item {
                            Outbound::Frame(b) => Some(*b),
                            Outbound::Event(env) => {
                                let f = session.render(&env);
                                if f.is_some() {
                                    app.metrics.relay_latency.observe(env.queued_at.elapsed().as_secs_f64());
                                }
                                f
                            }
                        };
                        if let Some(frame) = frame {
                            bytes_out.inc_by(frame.len() as u64);
                            frames.push(to_text(frame));
                        }
                        if frames.len() < WRITE_BATCH {
                            next = outbox_rx.try_recv();
                        }
                    }
                    if frames.is_empty() {
                        continue;
                    }
                    let written = Box::pin(interruptible(&app, &mut outbox_rx, write_all(&mut socket, &mut frames))).await;
                    if written.map_or(true, |r| r.is_err()) {
                        if handle.close_reason() == Some(CloseReason::SlowConsumer) {
                            app.metrics.slow_consumers.inc();
                        }
                        break None;
                    }
                }
                msg = socket.recv() => {
                    let msg = match msg {
                        None => break None,
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            let too_big = matches!(
                                &e.into_inner().downcast_ref::<tokio_tungstenite::tungstenite::Error>(),
                                Some(tokio_tungstenite::tungstenite::Error::Capacity(_))
                            );
                            if too_big {
                                app.metrics.limit("frame_size");
                                break Some((close::TOO_BIG, "message too big".into()));
                            }
                            break None;
                        }
                    };
                    seen = true;
                    let (text, data) = match msg {
                        Message::Text(t) => (true, Bytes::from(t)),
                        Message::Binary(b) => (false, b),
                        Message::Ping(_) => continue,
                        Message::Pong(echo) => {
                            if let Some(rtt) = ping_rtt(&echo) {
                                app.metrics.ws_rtt.observe(rtt);
                                session.observe_rtt(&app, rtt);
                            }
                            continue;
                        }
                        Message::Close(_) => {
                            // tungstenite has queued the closing handshake's reply; send it.
                            let _ = Box::pin(timeout(Duration::from_secs(1), socket.flush())).await;
                            break None;
                        }
                    };
                    bytes_in.inc_by(data.len() as u64);
                    if data.len() > cfg.max_frame_bytes.get() {
                        app.metrics.limit("frame_size");
                        app.metrics.error("frame_too_large");
                        let msg = format!("Message of {} bytes exceeds the {} byte limit", data.len(), cfg.max_frame_bytes);
                        cx.reply(session.error_frame("frame_too_large", &msg));
                        continue;
                    }
                    match rate.check() {
                        Verdict::Allow => {}
                        Verdict::Refuse => {
                            app.metrics.limit("rate");
                            app.metrics.error("rate_limited");
                            cx.reply(session.error_frame("rate_limited", "Too many messages; slow down"));
                            continue;
                        }
                        Verdict::Close => {
                            app.metrics.limit("rate");
                            break Some((close::POLICY, "rate limit exceeded".into()));
                        }
                    }
                    let flow = if text { session.on_text(&cx, data) } else { session.on_binary(&cx, data) };
                    if let Flow::Close(code, reason) = flow {
                        break Some((code, reason));
                    }
                }
                _ = ping.tick() => {
                    if std::mem::take(&mut seen) {
                        last_seen = Instant::now();
                    }
                    if last_seen.elapsed() > cfg.peer_heartbeat_timeout.get() {
                        app.metrics.error("heartbeat_timeout");
                        break Some((close::GOING_AWAY, CloseReason::HeartbeatTimeout.as_str().into()));
                    }
                    if Box::pin(timeout(WRITE_TIMEOUT, socket.send(Message::Ping(ping_payload())))).await.map_or(true, |r| r.is_err()) {
                        break None;
                    }
                }
                () = async { auth_deadline.as_mut().expect("guarded by the branch condition").await }, if auth_deadline.is_some() && !session.is_established() => {
                    app.metrics.error("auth_timeout");
                    break Some((close::POLICY, "authentication timeout".into()));
                }
            }
        };
        // Leave rooms before the close frame goes out, so that the others hear `peer-left` even
        // if this client never reads it.
        drop(session);
        if let Some((code, reason)) = end {
            // Deliver what is already queued for this peer (a final error reply) before closing.
            while let Some(Outbound::Frame(b)) = outbox_rx.try_recv() {
                let _ = Box::pin(timeout(Duration::from_secs(1), socket.feed(to_text(*b)))).await;
            }
            tracing::debug!(%conn, code, %reason, "closing connection");
            Box::pin(send_close(&mut socket, code, reason)).await;
        }
        active.dec();
        // The connection's slot (per-IP and total counts) is released last.
        drop(slot);
        tracing::debug!(%conn, "connection closed");
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
