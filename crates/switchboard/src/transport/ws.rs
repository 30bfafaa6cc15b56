//! The WebSocket driver shared by every WebSocket dialect: it only moves bytes between a
//! socket and the connection's state machine ([`crate::connection::Connection`]).
//!
//! Admission ([`crate::admission`]) has run before the upgrade. After it, one task per
//! connection runs [`drive`], which waits on four things and hands each to the connection:
//!
//! - the outbox: up to [`WRITE_BATCH`] queued items rendered by the connection and written
//!   with one flush, under one deadline ([`write_batch`]);
//! - the socket: a message ([`Connection::message`], then the command applied and
//!   answered), a control frame, the client's close, or a socket error mapped to its close
//!   code ([`read_error`]);
//! - the ping interval ([`Connection::tick`]): liveness, then a ping;
//! - the first-step deadline.
//!
//! Reading and writing share one task on purpose: an idle connection then costs one task
//! and no lock between halves. A write that stalls is bounded by [`WRITE_TIMEOUT`], and by
//! a close request. Every way out ends the session, and with it the peer's rooms, so each
//! room hears `peer-left` exactly once, before the close frame goes out.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use rand::RngExt;
use switchboard_core::{ConnId, Outbound, OutboxReceiver, Received, outbox};
use tokio::time::{Instant, interval_at, sleep_until, timeout};

use crate::admission::ConnectionSlot;
use crate::command::{Applied, Identity, Session};
use crate::connection::{Connection, Read, Step};
use crate::dialect::{Codec, close};
use crate::metrics::DialectLabel;
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

/// Runs one connection to its end.
///
/// A plain function returning an `async move` block rather than an `async fn`: an `async fn`
/// stores its arguments twice in its future (once as captured, once as locals), which cost
/// every connection another ~500 bytes (the socket alone is 368). The block uses its captures
/// in place.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn drive<C: Codec>(
    app: AppState,
    mut socket: WebSocket,
    codec: C,
    slot: ConnectionSlot,
    identity: Option<Identity>,
) -> impl Future<Output = ()> + Send {
    // Everything the connection keeps is built here, outside the task's future, so that the
    // future holds each piece once (moving a captured value into a struct inside the block
    // would leave its bytes reserved twice).
    let conn = ConnId::next();
    let label = DialectLabel { dialect: C::NAME };
    app.metrics.connections.get_or_create(&label).inc();
    let active = app.metrics.connections_active.get_or_create(&label).clone();
    let (handle, outbox) = outbox(conn, C::TAG, app.outbox_bounds());
    // Shutdown closes the outbox (see `shutdown`): the task keeps no shutdown future.
    app.shutdown.watch(&handle);
    let session = Session::new(
        handle,
        slot.ip(),
        app.config.requires_token(C::NAME),
        identity,
    );
    let mut c = Connection::new(app, codec, session, outbox);
    // Counted open from here; built outside the task so that the task keeps one guard, not
    // the gauge and the guard.
    let open = super::Open::new(active);
    async move {
        let _open = open;
        tracing::debug!(conn = %conn, dialect = C::NAME, "connection open");
        let mut ping = {
            let every = c.ping_interval();
            let jitter = rand::rng().random_range(0..=every.as_millis() as u64 / 2);
            interval_at(
                Instant::now() + every / 2 + Duration::from_millis(jitter),
                every,
            )
        };
        // Boxed, and only when there is a deadline: a `Sleep` is ~100 bytes an idle peer would
        // otherwise carry for its whole life.
        let mut deadline = c.needs_establishing().then(|| {
            Box::pin(sleep_until(
                Instant::now() + c.app().config.auth_timeout.get(),
            ))
        });
        let mut step = Box::pin(c.open()).await;
        while let Step::Continue = step {
            let establishing = deadline.is_some() && !c.established();
            step = tokio::select! {
                biased;
                received = c.outbox.recv() => match received {
                    Received::Item(item) => Box::pin(write_batch(&mut c, &mut socket, item)).await,
                    Received::Closed(reason) => c.closed(reason),
                },
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(t))) => receive(&mut c, Bytes::from(t), false).await,
                    Some(Ok(Message::Binary(b))) => receive(&mut c, b, true).await,
                    Some(Ok(Message::Ping(_))) => {
                        c.control();
                        Step::Continue
                    }
                    Some(Ok(Message::Pong(echo))) => {
                        match ping_rtt(&echo) {
                            Some(rtt) => c.pong(rtt),
                            None => c.control(),
                        }
                        Step::Continue
                    }
                    Some(Ok(Message::Close(_))) => Step::ClientClosed,
                    Some(Err(e)) => read_error(&c, e),
                    None => Step::Gone,
                },
                _ = ping.tick() => match c.tick() {
                    Step::Continue => Box::pin(send_ping(&mut socket)).await,
                    close => close,
                },
                () = async { deadline.as_mut().expect("guarded by the branch condition").await }, if establishing => {
                    c.establish_timed_out()
                }
            };
        }
        let end = match step {
            Step::Close(code, reason) => Some((code, reason)),
            Step::ClientClosed => {
                // tungstenite has queued the closing handshake's reply; send it.
                let _ = Box::pin(timeout(Duration::from_secs(1), socket.flush())).await;
                None
            }
            Step::Continue | Step::Gone => None,
        };
        let last = c.leave();
        if let Some((code, reason)) = end {
            Box::pin(close_with(&mut socket, conn, last, code, reason)).await;
        }
        // The connection's slot (per-IP and total counts) is released last.
        drop(slot);
        tracing::debug!(conn = %conn, "connection closed");
    }
}

/// A message: decoded by the connection, its command applied (awaited only when it waits on
/// the membership service, boxed), the answer queued.
async fn receive<C: Codec>(c: &mut Connection<C>, data: Bytes, binary: bool) -> Step {
    let (command, label, len) = match c.message(&data, binary) {
        Read::Done(step) => return step,
        Read::Apply {
            command,
            label,
            len,
        } => (command, label, len),
    };
    let result = match c.apply(command) {
        Applied::Done(r) => r,
        Applied::Later(pending) => pending.await,
    };
    c.applied(label, len, &result)
}

/// What a socket error means: a limit the client broke (told with its close code, as RFC
/// 6455 asks), or a connection that is gone.
fn read_error<C: Codec>(c: &Connection<C>, e: axum::Error) -> Step {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let metrics = &c.app().metrics;
    let e = e.into_inner();
    match e.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => {
            metrics.limit("frame_size");
            Step::close(close::TOO_BIG, "message too big")
        }
        Some(WsError::Io(io)) if crate::tcp::watch::is_unfinished_message(io) => {
            metrics.limit("message_timeout");
            Step::close(close::POLICY, "message not finished in time")
        }
        Some(WsError::Io(io)) if crate::tcp::watch::is_over_budget(io) => {
            metrics.limit("unfinished_bytes");
            Step::close(close::POLICY, "too much unfinished data from this address")
        }
        Some(WsError::Protocol(p)) => {
            metrics.error("protocol_error");
            // A close reason is at most 123 bytes.
            let mut reason = format!("protocol error: {p}");
            reason.truncate(reason.floor_char_boundary(120));
            Step::close(close::PROTOCOL_ERROR, reason)
        }
        Some(WsError::Utf8(_)) => {
            metrics.error("invalid_utf8");
            Step::close(close::INVALID_DATA, "text message is not UTF-8")
        }
        _ => Step::Gone,
    }
}

/// Renders up to a batch of queued items, then writes them with one flush under one
/// deadline (a timer per batch, not per frame). The batch is heap-allocated per batch so
/// that an idle peer's task stays small.
async fn write_batch<C: Codec>(
    c: &mut Connection<C>,
    socket: &mut WebSocket,
    first: Outbound,
) -> Step {
    let mut frames: Vec<Message> = Vec::new();
    let mut end = Step::Continue;
    let mut next = Some(first);
    while let Some(item) = next.take() {
        let out = c.render(item);
        let close = out.each(|f| {
            c.wrote(f.len());
            frames.push(to_text(f));
        });
        if let Some((code, reason)) = close {
            end = Step::Close(code, reason);
            break;
        }
        if frames.len() < WRITE_BATCH {
            next = c.outbox.try_recv();
        }
    }
    if frames.is_empty() {
        return end;
    }
    let written = interruptible(&mut c.outbox, write_all(socket, &mut frames)).await;
    if written.map_or(true, |r| r.is_err()) {
        return c.write_failed();
    }
    end
}

/// Sends a ping (the peer was heard from recently enough).
async fn send_ping(socket: &mut WebSocket) -> Step {
    match timeout(WRITE_TIMEOUT, socket.send(Message::Ping(ping_payload()))).await {
        Ok(Ok(())) => Step::Continue,
        _ => Step::Gone,
    }
}

/// Writes the replies still queued, then the close frame.
async fn close_with(
    socket: &mut WebSocket,
    conn: ConnId,
    last: Vec<Bytes>,
    code: u16,
    reason: Cow<'static, str>,
) {
    for f in last {
        let _ = timeout(Duration::from_secs(1), socket.feed(to_text(f))).await;
    }
    tracing::debug!(conn = %conn, code, %reason, "closing connection");
    send_close(socket, code, reason).await;
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
