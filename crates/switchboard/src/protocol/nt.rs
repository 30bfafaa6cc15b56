//! The nt-backend-wrtc dialect as deployed (HEAD `630a079`, the one NoisyTransfer clients
//! speak): `GET /ws?appID=<uuid>&side=A|B[&sid=]` on the HTTP port, plus
//! `POST /rendezvous/code` and `POST /rendezvous/redeem`.
//!
//! - The connection joins room `<appID>` (canonical lower-case hyphenated UUID) as peer `A`
//!   or `B` as soon as it opens. When a join leaves the room with two members, both get
//!   `{"type":"room_full"}\n` (again on every reconnect). A side already held gets close
//!   1008 `side A busy`; the holder is kept.
//! - `offer`, `answer`, `ice`, `sender_ready` (type matched case-insensitively; text or
//!   binary frames) go to the other members as the original bytes, always as text frames.
//!   With nobody to take them they are dropped silently, as the original does, and counted
//!   in `nt_signal_dropped_total{type}`.
//! - Mailbox: `{"type":"send","to":"A"|"B","payload":…}` (`to` case-insensitive; any other
//!   `to` is dropped) appends to the recipient side's queue with `seq` 0, 1, 2, … and is
//!   delivered at once as `{"payload":…,"seq":N,"type":"send"}\n` when that side is
//!   connected. `{"type":"hello","deliveredUpTo":N}` means "I have every item with
//!   `seq < N`" (N is the count of items received, i.e. the next `seq` expected): those are
//!   dropped and every item with `seq >= N` is re-sent in order. A missing `deliveredUpTo`
//!   is 0, so a bare hello replays everything. (The original drops `seq <= N`, which loses
//!   item 0 on any hello.) A queue keeps at most [`MAILBOX_MAX`] items, the oldest going
//!   first. The mailbox is deleted when the room's last connection leaves.
//! - `telemetry` only counts: `{"event":"ice-connected","mode"?}` once per room in
//!   `nt_session_established_total{mode}` (plus `nt_session_time_to_first_flow_seconds`,
//!   from both sides present), `{"event":"ice-failed","reason"?}` in
//!   `nt_session_failed_total{reason}`. Everything else, malformed JSON included, is ignored. The
//!   server never sends errors, `peer-joined` or `peer-left` in this dialect.
//! - Signals from other dialects in the same room arrive as `{"type":"offer","sdp":…}`,
//!   `{"type":"answer","sdp":…}` and `{"type":"ice","cand":…}`; other kinds are not shown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::WebSocketUpgrade;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::Rng;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::{
    CreateOptions, DialectTag, Envelope, Event, JoinError, JoinMode, JoinOptions, Membership,
    PeerHandle, PeerId, RoomId, SignalKind, Target,
};

use super::{Context, Flow, Session, push_json_str, raw_slice, signal_body, tags};
use crate::client_ip::ClientIp;
use crate::http::error::plain_text as text;
use crate::metrics::{NtBytesLabels, NtModeLabel, NtReasonLabel, NtTypeLabel};
use crate::state::AppState;
use crate::transport::ws::close;

/// Items one side's mailbox keeps at most.
pub const MAILBOX_MAX: usize = 256;
/// Live rendezvous codes at most (4 digits).
const CODE_SPACE: u32 = 10_000;

const ROOM_FULL: &[u8] = b"{\"type\":\"room_full\"}\n";

/// A side of an nt room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `A`.
    A,
    /// `B`.
    B,
}

impl Side {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "A" => Some(Self::A),
            "B" => Some(Self::B),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }
}

#[derive(Debug, Default)]
struct SideBox {
    next_seq: u64,
    items: VecDeque<(u64, Bytes)>,
}

/// A room's nt state outside the registry: its mailbox, and its session telemetry.
#[derive(Debug, Default)]
struct Mailbox {
    sides: [SideBox; 2],
    /// When the room first held both sides.
    paired_at: Option<std::time::Instant>,
    /// Whether an `ice-connected` has been counted for this room.
    established: bool,
}

#[derive(Deserialize)]
struct Telemetry<'a> {
    #[serde(borrow, default)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    mode: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Debug)]
struct Code {
    app_id: uuid::Uuid,
    expires: SystemTime,
}

/// The nt dialect's state outside the registry: mailboxes per room and live rendezvous
/// codes. Lock order: a store lock before the registry's, never the other way.
#[derive(Debug, Default)]
pub struct NtStore {
    mailboxes: Mutex<HashMap<RoomId, Mailbox>>,
    codes: Mutex<HashMap<u32, Code>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NtStore {
    /// Rooms with a mailbox now (for tests and diagnostics).
    pub fn mailbox_rooms(&self) -> usize {
        lock(&self.mailboxes).len()
    }

    /// Live rendezvous codes now.
    pub fn live_codes(&self) -> usize {
        let now = SystemTime::now();
        lock(&self.codes)
            .values()
            .filter(|c| c.expires > now)
            .count()
    }
}

/// One nt connection.
#[derive(Debug)]
pub struct NtSession {
    app: AppState,
    room: RoomId,
    side: Side,
    membership: Option<Membership>,
    /// Members of the room as this connection last heard.
    members: usize,
    /// This connection's handle, to close it when its room is closed.
    handle: Option<PeerHandle>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct Send<'a> {
    #[serde(borrow, default)]
    to: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Hello {
    #[serde(rename = "deliveredUpTo", default)]
    delivered_up_to: Option<u64>,
}

/// The message types of the fixed metrics table.
fn type_label(kind: &str) -> &'static str {
    match kind {
        "offer" => "offer",
        "answer" => "answer",
        "ice" => "ice",
        "sender_ready" => "sender_ready",
        "hello" => "hello",
        "send" => "send",
        "telemetry" => "telemetry",
        "delivered" => "delivered",
        _ => "unknown",
    }
}

impl NtSession {
    fn new(app: AppState, room: RoomId, side: Side) -> Self {
        Self {
            app,
            room,
            side,
            membership: None,
            members: 0,
            handle: None,
        }
    }

    fn handle(&mut self, cx: &Context<'_>, frame: &Bytes) {
        let nt = &cx.app.metrics.nt;
        nt.frame_in(frame.len());
        let Ok(head) = serde_json::from_slice::<Head<'_>>(frame) else {
            nt.ws_errors.inc();
            nt.ws_messages
                .get_or_create(&NtTypeLabel { r#type: "unknown" })
                .inc();
            return;
        };
        let lower = head.kind.to_ascii_lowercase();
        let label = type_label(&lower);
        nt.ws_messages
            .get_or_create(&NtTypeLabel { r#type: label })
            .inc();
        match label {
            "offer" | "answer" | "ice" | "sender_ready" => self.relay(cx, label, frame),
            "send" => self.send(cx, frame),
            "hello" => self.hello(cx, frame),
            "telemetry" => self.telemetry(cx, frame),
            // `delivered` and the rest are ignored.
            _ => {}
        }
    }

    fn relay(&mut self, cx: &Context<'_>, label: &'static str, frame: &Bytes) {
        let nt = &cx.app.metrics.nt;
        nt.signal_messages
            .get_or_create(&NtTypeLabel { r#type: label })
            .inc();
        let len = frame.len() as u64;
        nt.signal_bytes
            .get_or_create(&NtBytesLabels {
                dir: "in",
                r#type: label,
            })
            .inc_by(len);
        let Some(m) = &self.membership else { return };
        let kind = match label {
            "offer" => SignalKind::Offer,
            "answer" => SignalKind::Answer,
            "ice" => SignalKind::Candidate,
            _ => SignalKind::Other(Arc::from(label)),
        };
        let delivered = match cx
            .app
            .registry
            .relay(m, Target::Room, kind, frame.clone(), tags::NT)
        {
            Ok(d) => d.delivered,
            Err(_) => 0,
        };
        if delivered == 0 {
            nt.signal_dropped
                .get_or_create(&NtTypeLabel { r#type: label })
                .inc();
        } else {
            nt.signal_bytes
                .get_or_create(&NtBytesLabels {
                    dir: "out",
                    r#type: label,
                })
                .inc_by(len * delivered as u64);
        }
    }

    fn send(&mut self, cx: &Context<'_>, frame: &Bytes) {
        let Ok(msg) = serde_json::from_slice::<Send<'_>>(frame) else {
            return;
        };
        let Some(to) = msg
            .to
            .as_deref()
            .and_then(|t| Side::parse(&t.to_ascii_uppercase()))
        else {
            return;
        };
        let Some(m) = &self.membership else { return };
        let nt = &cx.app.metrics.nt;
        nt.signal_messages
            .get_or_create(&NtTypeLabel { r#type: "send" })
            .inc();
        nt.signal_bytes
            .get_or_create(&NtBytesLabels {
                dir: "in",
                r#type: "send",
            })
            .inc_by(frame.len() as u64);
        let payload = msg
            .payload
            .map_or_else(|| Bytes::from_static(b"null"), |p| raw_slice(frame, p));
        let mut boxes = lock(&cx.app.nt.mailboxes);
        let side = &mut boxes.entry(self.room.clone()).or_default().sides[to.index()];
        let seq = side.next_seq;
        side.next_seq += 1;
        let out = deliver_frame(&payload, seq);
        side.items.push_back((seq, out.clone()));
        if side.items.len() > MAILBOX_MAX {
            side.items.pop_front();
        }
        // Delivered at once when the recipient side is connected; kept for `hello` either way.
        if let Ok(d) = cx.app.registry.relay(
            m,
            Target::Peer(PeerId::new(to.as_str())),
            SignalKind::Other(Arc::from("send")),
            out.clone(),
            tags::NT,
        ) {
            nt.signal_bytes
                .get_or_create(&NtBytesLabels {
                    dir: "out",
                    r#type: "send",
                })
                .inc_by(out.len() as u64 * d.delivered as u64);
        }
    }

    /// `{"event":"ice-connected","mode"?}` counts the room as established once, with the
    /// time since both sides were first present; `{"event":"ice-failed","reason"?}` counts a
    /// failure. Anything else is ignored. No reply either way.
    fn telemetry(&mut self, cx: &Context<'_>, frame: &Bytes) {
        let Ok(t) = serde_json::from_slice::<Telemetry<'_>>(frame) else {
            return;
        };
        let nt = &cx.app.metrics.nt;
        let event = t.event.as_deref().unwrap_or("");
        if event.eq_ignore_ascii_case("ice-connected") {
            let mut rooms = lock(&cx.app.nt.mailboxes);
            let room = rooms.entry(self.room.clone()).or_default();
            if std::mem::replace(&mut room.established, true) {
                return;
            }
            let mode = nt
                .modes
                .value(t.mode.as_deref().unwrap_or(""), "unspecified");
            nt.session_established
                .get_or_create(&NtModeLabel { mode })
                .inc();
            if let Some(at) = room.paired_at {
                nt.session_time_to_first_flow
                    .observe(at.elapsed().as_secs_f64());
            }
        } else if event.eq_ignore_ascii_case("ice-failed") {
            let reason = nt
                .reasons
                .value(t.reason.as_deref().unwrap_or(""), "ice-failed");
            nt.session_failed
                .get_or_create(&NtReasonLabel { reason })
                .inc();
        }
    }

    /// Notes when the room first holds both sides (for time to first flow).
    fn paired(&self) {
        lock(&self.app.nt.mailboxes)
            .entry(self.room.clone())
            .or_default()
            .paired_at
            .get_or_insert_with(std::time::Instant::now);
    }

    fn hello(&mut self, cx: &Context<'_>, frame: &Bytes) {
        let Ok(msg) = serde_json::from_slice::<Hello>(frame) else {
            return;
        };
        // deliveredUpTo = N: the client holds every item with seq < N.
        let upto = msg.delivered_up_to.unwrap_or(0);
        let mut boxes = lock(&cx.app.nt.mailboxes);
        let Some(mb) = boxes.get_mut(&self.room) else {
            return;
        };
        let side = &mut mb.sides[self.side.index()];
        while side.items.front().is_some_and(|(seq, _)| *seq < upto) {
            side.items.pop_front();
        }
        for (_, f) in &side.items {
            cx.app.metrics.nt.frame_out(f.len());
            cx.reply(f.clone());
        }
    }
}

/// `{"payload":P,"seq":N,"type":"send"}\n`
fn deliver_frame(payload: &[u8], seq: u64) -> Bytes {
    let mut buf = Vec::with_capacity(payload.len() + 40);
    buf.extend_from_slice(br#"{"payload":"#);
    buf.extend_from_slice(payload);
    buf.extend_from_slice(br#","seq":"#);
    buf.extend_from_slice(seq.to_string().as_bytes());
    buf.extend_from_slice(b",\"type\":\"send\"}\n");
    Bytes::from(buf)
}

impl Session for NtSession {
    const NAME: &'static str = "nt";
    const TAG: DialectTag = tags::NT;

    fn on_open(&mut self, cx: &Context<'_>) -> Flow {
        self.handle = Some(cx.handle.clone());
        let opts = JoinOptions {
            mode: JoinMode::CreateOrJoin,
            name: None,
            create: CreateOptions {
                capacity: Some(2),
                empty_grace: Some(Duration::ZERO),
                creator: Some(cx.client),
                ..CreateOptions::default()
            },
        };
        match cx.app.registry.join(
            self.room.clone(),
            PeerId::new(self.side.as_str()),
            cx.handle.clone(),
            opts,
        ) {
            Ok(m) => {
                self.membership = Some(m);
                Flow::Continue
            }
            Err(JoinError::PeerIdTaken { .. }) => {
                cx.app.metrics.nt.ws_errors.inc();
                cx.app.metrics.error("side_busy");
                let reason = match self.side {
                    Side::A => "side A busy",
                    Side::B => "side B busy",
                };
                Flow::Close(close::POLICY, reason.into())
            }
            Err(JoinError::RoomFull { .. }) => {
                cx.app.metrics.nt.ws_errors.inc();
                cx.app.metrics.limit("room_full");
                Flow::Close(close::POLICY, "room full".into())
            }
            Err(e) => {
                cx.app.metrics.nt.ws_errors.inc();
                cx.app.metrics.limit(match e {
                    JoinError::CreationRateLimited => "room_creations",
                    JoinError::NotAdmitting => "memory",
                    _ => "rooms",
                });
                Flow::Close(close::TRY_AGAIN_LATER, "try again later".into())
            }
        }
    }

    fn on_text(&mut self, cx: &Context<'_>, text: Bytes) -> Flow {
        self.handle(cx, &text);
        Flow::Continue
    }

    fn on_binary(&mut self, cx: &Context<'_>, data: Bytes) -> Flow {
        self.handle(cx, &data);
        Flow::Continue
    }

    fn render(&mut self, env: &Envelope) -> Option<Bytes> {
        let frame = match &env.event {
            Event::Joined { room, .. } => {
                self.members = room.members.len();
                (self.members == 2).then(|| {
                    self.paired();
                    Bytes::from_static(ROOM_FULL)
                })
            }
            Event::PeerJoined { .. } => {
                self.members += 1;
                (self.members == 2).then(|| {
                    self.paired();
                    Bytes::from_static(ROOM_FULL)
                })
            }
            Event::PeerLeft { .. } => {
                self.members = self.members.saturating_sub(1);
                None
            }
            Event::RoomClosed { room, reason } => {
                if self.membership.as_ref().is_some_and(|m| m.room() == room) {
                    self.membership = None;
                    if let Some(h) = &self.handle {
                        h.close(super::rendezvous::close_reason(*reason));
                    }
                }
                None
            }
            Event::Signal(s) if s.origin == tags::NT => Some(s.payload.clone()),
            Event::Signal(s) => {
                let (kind, key): (&[u8], &[u8]) = match s.kind {
                    SignalKind::Offer => (b"offer", b"sdp"),
                    SignalKind::Answer => (b"answer", b"sdp"),
                    SignalKind::Candidate => (b"ice", b"cand"),
                    _ => return None,
                };
                let body = signal_body(s);
                let mut buf = Vec::with_capacity(body.len() + 32);
                buf.extend_from_slice(b"{\"type\":\"");
                buf.extend_from_slice(kind);
                buf.extend_from_slice(b"\",\"");
                buf.extend_from_slice(key);
                buf.extend_from_slice(b"\":");
                buf.extend_from_slice(&body);
                buf.push(b'}');
                Some(Bytes::from(buf))
            }
        }?;
        self.app.metrics.nt.frame_out(frame.len());
        Some(frame)
    }

    fn error_frame(&self, _code: &'static str, _message: &str) -> Bytes {
        // nt clients parse no error frames; the driver's limit replies get an empty object.
        Bytes::from_static(b"{\"type\":\"error\"}\n")
    }

    fn is_established(&self) -> bool {
        true
    }

    fn observe_rtt(&self, app: &AppState, seconds: f64) {
        app.metrics.nt.ws_rtt.observe(seconds);
    }

    fn needs_establishing(&self, _app: &AppState) -> bool {
        false
    }
}

impl Drop for NtSession {
    fn drop(&mut self) {
        // Leave first, then delete the mailbox if that left the room with nobody.
        drop(self.membership.take());
        let mut boxes = lock(&self.app.nt.mailboxes);
        if boxes.contains_key(&self.room)
            && self
                .app
                .registry
                .room(&self.room)
                .is_none_or(|r| r.members.is_empty())
        {
            boxes.remove(&self.room);
        }
    }
}

/// `GET /ws?appID=…&side=…`: the checks in the original's order, then the upgrade.
pub fn upgrade_request(
    app: AppState,
    client: ClientIp,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    ws: Option<WebSocketUpgrade>,
) -> Response {
    let Some(app_id) = params
        .get("appID")
        .and_then(|a| uuid::Uuid::parse_str(a).ok())
    else {
        return text(StatusCode::BAD_REQUEST, "invalid appID\n");
    };
    let Some(side) = params.get("side").and_then(|s| Side::parse(s)) else {
        return text(StatusCode::BAD_REQUEST, "invalid side\n");
    };
    let Some(ws) = ws else {
        return text(StatusCode::BAD_REQUEST, "Bad Request\n");
    };
    let slot = match crate::admission::admit_connection(&app, headers, client.0) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    app.metrics.nt.ws_connections.inc();
    let room = RoomId::new(app_id.hyphenated().to_string().as_str());
    let session = NtSession::new(app.clone(), room, side);
    crate::transport::ws::upgrade(app, ws, slot, session)
}

/// RFC 3339 UTC with nanoseconds, trailing zeros trimmed (Go's `RFC3339Nano`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

fn json_ok(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `POST /rendezvous/code`: a fresh 4-digit code for a fresh appID, live for `ROOM_TTL`.
pub async fn code(
    axum::extract::State(app): axum::extract::State<AppState>,
    method: Method,
) -> Response {
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let now = SystemTime::now();
    let expires = now + app.config.room_ttl.get();
    let app_id = uuid::Uuid::new_v4();
    let code = {
        let mut codes = lock(&app.nt.codes);
        codes.retain(|_, c| c.expires > now);
        if codes.len() >= CODE_SPACE as usize {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "code-space exhausted\n");
        }
        let mut rng = rand::rng();
        let mut n = rng.random_range(0..CODE_SPACE);
        while codes.contains_key(&n) {
            n = (n + 1) % CODE_SPACE;
        }
        codes.insert(n, Code { app_id, expires });
        n
    };
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(br#"{"appID":"#);
    push_json_str(&mut buf, &app_id.hyphenated().to_string());
    buf.extend_from_slice(br#","code":""#);
    buf.extend_from_slice(format!("{code:04}").as_bytes());
    buf.extend_from_slice(br#"","expiresAt":"#);
    push_json_str(&mut buf, &rfc3339(expires));
    buf.extend_from_slice(b"}\n");
    json_ok(buf)
}

#[derive(Deserialize)]
struct Redeem {
    code: String,
}

/// `POST /rendezvous/redeem` `{"code":"NNNN"}`: the code's appID, once.
pub async fn redeem(
    axum::extract::State(app): axum::extract::State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad content-type\n");
    }
    let code = match serde_json::from_slice::<Redeem>(&body) {
        Ok(r) if (4..=8).contains(&r.code.len()) && r.code.bytes().all(|b| b.is_ascii_digit()) => {
            r.code
        }
        _ => return text(StatusCode::BAD_REQUEST, "bad request\n"),
    };
    // Codes are issued as 4 digits; a longer string names no live code.
    let Some(n) = code.parse::<u32>().ok().filter(|_| code.len() == 4) else {
        return text(StatusCode::GONE, "gone\n");
    };
    let now = SystemTime::now();
    let found = lock(&app.nt.codes).remove(&n).filter(|c| c.expires > now);
    let Some(c) = found else {
        return text(StatusCode::GONE, "gone\n");
    };
    let mut buf = Vec::with_capacity(96);
    buf.extend_from_slice(br#"{"appID":"#);
    push_json_str(&mut buf, &c.app_id.hyphenated().to_string());
    buf.extend_from_slice(br#","expiresAt":"#);
    push_json_str(&mut buf, &rfc3339(c.expires));
    buf.extend_from_slice(b"}\n");
    json_ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_like_go() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 251_574_990);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.25157499Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            deliver_frame(b"{}", 3),
            "{\"payload\":{},\"seq\":3,\"type\":\"send\"}\n"
        );
    }
}
