//! The rendezvous dialect, as the nt-backend-wrtc seed README (seed 004) documents it:
//! `GET /ws?room=<CODE>[&key=<SECRET>]` on the HTTP port, JSON text frames.
//!
//! Client messages: `{"type":"join","peerId"?}` (must come first), `{"type":"signal",
//! "to"?,"data"}` and `{"type":"leave"}`. Server frames: `ready`, `peer-joined`,
//! `peer-left`, `signal` and `error` (`{"type":"error","code","message"}`).
//!
//! What the seed leaves open, pinned down here (docs/PROTOCOL.md has the table):
//! - A missing or wrong `key` while `RENDEZVOUS_WS_KEY` is set: the upgrade succeeds, then
//!   the server sends error `invalid_key` and closes with 1008 `invalid key`.
//! - The first message must be a valid `join`; anything else (including malformed JSON)
//!   gets error `join_required` and close 1008 `join required`. No `join` within
//!   `AUTH_TIMEOUT` (10 s): close 1008 `authentication timeout`.
//! - A full room (`RENDEZVOUS_MAX_PEERS`, 2): error `room_full`, close 1008 `room full`.
//!   A `peerId` already in the room: error `peer_id_taken`, close 1008 `peer id taken`.
//!   A `peerId` that is not a string of 1–128 characters: error `invalid_peer_id`, close 1008.
//! - Without `peerId` the server picks `selfId`: a UUID v4 in simple form (32 hex digits).
//! - `ready.peers` lists the members already there (not the joiner); `peer-joined` goes to
//!   the others only.
//! - `signal` without `to` goes to every other member; `data` is relayed byte for byte
//!   (`null` when absent). A `to` naming nobody in the room: error `peer_not_found`, the
//!   connection stays open.
//! - Malformed JSON (`bad_json`), a missing `type` (`missing_type`), an unknown `type`
//!   (`unknown_type`), a second `join` (`already_joined`): error frame, connection stays.
//! - `leave`: the others get `peer-left`, the leaver gets close 1000 `left`.
//! - A room with no join, leave or signal for `ROOM_TTL` (10 min) is closed, occupied or
//!   not; its members get close 1000 `room closed for inactivity`. An empty room is removed
//!   at once.
//! - Rooms share the namespace with the other dialects: a rendezvous peer in room `x` sees
//!   OctateCode peers of room `x` and the other way round.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::{
    CloseReason, CreateOptions, DialectTag, Envelope, Event, JoinError, JoinMode, JoinOptions,
    Membership, PeerHandle, PeerId, RelayError, RoomClosedReason, RoomId, SignalKind, Target,
};

use super::{Context, Flow, Session, push_json_str, raw_slice, signal_body, tags};
use crate::client_ip::ClientIp;
use crate::http::error::plain_text as text;
use crate::state::AppState;
use crate::transport::ws::close;

/// Longest accepted `peerId`, in characters.
const MAX_PEER_ID: usize = 128;
/// Longest accepted `room`, in characters.
const MAX_ROOM: usize = 128;

/// One rendezvous connection.
#[derive(Debug)]
pub struct RendezvousSession {
    room: RoomId,
    key_ok: bool,
    joined: bool,
    membership: Option<Membership>,
    /// This connection's handle, to close it when its room is closed.
    handle: Option<PeerHandle>,
}

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "peerId", borrow, default)]
    peer_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The few fields of `data` read to classify a signal for other dialects.
#[derive(Deserialize, Default)]
struct DataShape<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    candidate: Option<&'a RawValue>,
}

fn classify(data: &[u8]) -> SignalKind {
    let shape: DataShape<'_> = serde_json::from_slice(data).unwrap_or_default();
    match shape.kind.as_deref() {
        Some("offer") => SignalKind::Offer,
        Some("answer") => SignalKind::Answer,
        _ if shape.candidate.is_some() => SignalKind::Candidate,
        _ => SignalKind::Generic,
    }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "join" => "join",
        "signal" => "signal",
        "leave" => "leave",
        _ => "unknown",
    }
}

/// Whether `given` equals `expected`, in time independent of where they differ.
fn key_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl RendezvousSession {
    /// A session for `room`; `key` is the `?key=` the client gave.
    pub fn new(app: &AppState, room: &str, key: Option<&str>) -> Self {
        let key_ok = match &app.config.rendezvous_ws_key {
            None => true,
            Some(expected) => key.is_some_and(|k| key_matches(k, expected)),
        };
        Self {
            room: RoomId::new(room),
            key_ok,
            joined: false,
            membership: None,
            handle: None,
        }
    }

    fn refuse(
        &self,
        cx: &Context<'_>,
        code: &'static str,
        message: &str,
        reason: &'static str,
    ) -> Flow {
        self.error(cx, code, message);
        Flow::Close(close::POLICY, Cow::Borrowed(reason))
    }

    /// An error reply; counted in `switchboard_errors_total` and, as seed 004 documents for
    /// `/ws`, in `nt_ws_errors_total`.
    fn error(&self, cx: &Context<'_>, code: &'static str, message: &str) -> Flow {
        cx.app.metrics.error(code);
        cx.app.metrics.nt.ws_errors.inc();
        cx.reply(self.error_frame(code, message));
        Flow::Continue
    }

    fn join(&mut self, cx: &Context<'_>, msg: &Inbound<'_>) -> Flow {
        let peer = match msg.peer_id {
            None => uuid::Uuid::new_v4().simple().to_string(),
            Some(raw) if raw.get() == "null" => uuid::Uuid::new_v4().simple().to_string(),
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(s) if s.is_empty() => uuid::Uuid::new_v4().simple().to_string(),
                Ok(s) if s.chars().count() <= MAX_PEER_ID => s,
                _ => {
                    return self.refuse(
                        cx,
                        "invalid_peer_id",
                        "peerId must be a string of 1 to 128 characters",
                        "invalid peer id",
                    );
                }
            },
        };
        let cfg = &cx.app.config;
        let opts = JoinOptions {
            mode: JoinMode::CreateOrJoin,
            name: None,
            create: CreateOptions {
                capacity: (cfg.rendezvous_max_peers != 0).then_some(cfg.rendezvous_max_peers),
                empty_grace: Some(Duration::ZERO),
                inactivity_timeout: Some(cfg.room_ttl.get()),
                creator: Some(cx.client),
                ..CreateOptions::default()
            },
        };
        match cx.app.registry.join(
            self.room.clone(),
            PeerId::new(&peer),
            cx.handle.clone(),
            opts,
        ) {
            Ok(m) => {
                self.membership = Some(m);
                self.joined = true;
                Flow::Continue
            }
            Err(JoinError::RoomFull { capacity, .. }) => {
                cx.app.metrics.limit("room_full");
                self.refuse(
                    cx,
                    "room_full",
                    &format!("Room is full ({capacity} peers)"),
                    "room full",
                )
            }
            Err(JoinError::PeerIdTaken { .. }) => self.refuse(
                cx,
                "peer_id_taken",
                "Another connection in this room already uses this peerId",
                "peer id taken",
            ),
            Err(JoinError::CreationRateLimited) => {
                cx.app.metrics.limit("room_creations");
                cx.app.metrics.nt.ws_errors.inc();
                cx.app.metrics.error("creation_rate_limited");
                cx.reply(self.error_frame(
                    "creation_rate_limited",
                    "Too many rooms created from this address; try again later",
                ));
                Flow::Close(close::TRY_AGAIN_LATER, "try again later".into())
            }
            Err(e) => {
                match e {
                    JoinError::TooManyRooms(_) => cx.app.metrics.limit("rooms"),
                    JoinError::NotAdmitting => cx.app.metrics.limit("memory"),
                    _ => {}
                }
                cx.app.metrics.nt.ws_errors.inc();
                cx.app.metrics.error("overloaded");
                cx.reply(self.error_frame("overloaded", &e.to_string()));
                Flow::Close(close::TRY_AGAIN_LATER, "try again later".into())
            }
        }
    }

    fn signal(&mut self, cx: &Context<'_>, msg: &Inbound<'_>, frame: &Bytes) -> Flow {
        let Some(m) = &self.membership else {
            return self.refuse(cx, "not_in_room", "Not in a room", "not in room");
        };
        let target = match msg.to.as_deref() {
            Some(t) if !t.is_empty() => Target::Peer(PeerId::new(t)),
            _ => Target::Room,
        };
        let payload = msg
            .data
            .map_or_else(|| Bytes::from_static(b"null"), |d| raw_slice(frame, d));
        let kind = classify(&payload);
        match cx
            .app
            .registry
            .relay(m, target, kind, payload, tags::RENDEZVOUS)
        {
            Ok(_) | Err(RelayError::Undelivered(_)) => Flow::Continue,
            Err(RelayError::PeerNotFound(p)) => {
                let shown: String = p.as_str().chars().take(64).collect();
                self.error(
                    cx,
                    "peer_not_found",
                    &format!("Peer {shown} is not in this room"),
                )
            }
            Err(RelayError::NotInRoom(_)) => {
                self.membership = None;
                Flow::Close(close::NORMAL, "room closed".into())
            }
        }
    }
}

impl Session for RendezvousSession {
    const NAME: &'static str = "rendezvous";
    const TAG: DialectTag = tags::RENDEZVOUS;

    fn on_open(&mut self, cx: &Context<'_>) -> Flow {
        self.handle = Some(cx.handle.clone());
        if self.key_ok {
            Flow::Continue
        } else {
            self.refuse(cx, "invalid_key", "Missing or wrong key", "invalid key")
        }
    }

    fn on_text(&mut self, cx: &Context<'_>, text: Bytes) -> Flow {
        let msg: Inbound<'_> = match serde_json::from_slice(&text) {
            Ok(m) => m,
            Err(_) if !self.joined => {
                return self.refuse(
                    cx,
                    "join_required",
                    "The first message must be join",
                    "join required",
                );
            }
            Err(_) => return self.error(cx, "bad_json", "Invalid JSON message"),
        };
        let kind = msg.kind.as_deref().unwrap_or("");
        let label = kind_label(kind);
        cx.app.metrics.message(Self::NAME, label);
        cx.app
            .metrics
            .nt
            .ws_messages
            .get_or_create(&crate::metrics::NtTypeLabel { r#type: label })
            .inc();
        if !self.joined {
            return if kind == "join" {
                self.join(cx, &msg)
            } else {
                self.refuse(
                    cx,
                    "join_required",
                    "The first message must be join",
                    "join required",
                )
            };
        }
        match kind {
            "signal" => self.signal(cx, &msg, &text),
            "leave" => {
                self.membership = None;
                Flow::Close(close::NORMAL, "left".into())
            }
            "join" => self.error(cx, "already_joined", "Already joined"),
            "" if msg.kind.is_none() => self.error(cx, "missing_type", "Missing message type"),
            other => {
                let shown: String = other.chars().take(64).collect();
                self.error(
                    cx,
                    "unknown_type",
                    &format!("Unknown message type: {shown}"),
                )
            }
        }
    }

    fn render(&mut self, env: &Envelope) -> Option<Bytes> {
        if let Event::RoomClosed { room, reason } = &env.event {
            if self.membership.as_ref().is_some_and(|m| m.room() == room) {
                self.membership = None;
                if let Some(h) = &self.handle {
                    h.close(close_reason(*reason));
                }
            }
            return None;
        }
        Some(env.render(Self::TAG, render_event))
    }

    fn error_frame(&self, code: &'static str, message: &str) -> Bytes {
        error_frame(code, message)
    }

    fn is_established(&self) -> bool {
        self.joined
    }

    fn ping_interval(&self, app: &AppState) -> Duration {
        app.config.heartbeat.get()
    }

    fn needs_establishing(&self, _app: &AppState) -> bool {
        true
    }
}

/// How a connection closes when the core closes its room.
pub fn close_reason(reason: RoomClosedReason) -> CloseReason {
    match reason {
        RoomClosedReason::Inactive => CloseReason::RoomInactive,
        RoomClosedReason::Deleted => CloseReason::RoomDeleted,
    }
}

/// `{"type":"error","code":C,"message":M}`
pub fn error_frame(code: &str, message: &str) -> Bytes {
    let mut buf = Vec::with_capacity(64 + message.len());
    buf.extend_from_slice(br#"{"type":"error","code":"#);
    push_json_str(&mut buf, code);
    buf.extend_from_slice(br#","message":"#);
    push_json_str(&mut buf, message);
    buf.push(b'}');
    Bytes::from(buf)
}

fn peer_frame(kind: &str, peer: &str) -> Bytes {
    let mut buf = Vec::with_capacity(48 + peer.len());
    buf.extend_from_slice(br#"{"type":"#);
    push_json_str(&mut buf, kind);
    buf.extend_from_slice(br#","peerId":"#);
    push_json_str(&mut buf, peer);
    buf.push(b'}');
    Bytes::from(buf)
}

/// Renders a core event as a rendezvous frame.
pub fn render_event(event: &Event) -> Bytes {
    match event {
        Event::Joined { room, me, .. } => {
            let mut buf = Vec::with_capacity(64 + 32 * room.members.len());
            buf.extend_from_slice(br#"{"type":"ready","selfId":"#);
            push_json_str(&mut buf, me.as_str());
            buf.extend_from_slice(br#","peers":["#);
            let mut first = true;
            for m in room.members.iter().filter(|m| &m.id != me) {
                if !first {
                    buf.push(b',');
                }
                first = false;
                buf.extend_from_slice(br#"{"peerId":"#);
                push_json_str(&mut buf, m.id.as_str());
                buf.push(b'}');
            }
            buf.extend_from_slice(b"]}");
            Bytes::from(buf)
        }
        Event::PeerJoined { peer, .. } => peer_frame("peer-joined", peer.id.as_str()),
        Event::PeerLeft { peer, .. } => peer_frame("peer-left", peer.as_str()),
        Event::Signal(s) => {
            let body = if s.origin == tags::RENDEZVOUS {
                Cow::Borrowed(&s.payload[..])
            } else {
                signal_body(s)
            };
            let mut buf = Vec::with_capacity(48 + body.len());
            buf.extend_from_slice(br#"{"type":"signal","from":"#);
            push_json_str(&mut buf, s.from.as_str());
            buf.extend_from_slice(br#","data":"#);
            buf.extend_from_slice(&body);
            buf.push(b'}');
            Bytes::from(buf)
        }
        Event::RoomClosed { .. } => Bytes::from_static(br#"{"type":"room-closed"}"#),
    }
}

/// `GET /ws`: routes on the query (`room=` → rendezvous, `appID=` → nt, neither → 400
/// `missing room or appID`), then checks and upgrades. Every upgrade of either form counts
/// in `nt_ws_connections_total`, as seed 004 documents the series for `/ws`.
pub fn upgrade_request(
    app: AppState,
    client: ClientIp,
    headers: &HeaderMap,
    uri: &Uri,
    ws: Option<WebSocketUpgrade>,
) -> Response {
    let Ok(Query(params)) = Query::<HashMap<String, String>>::try_from_uri(uri) else {
        return text(StatusCode::BAD_REQUEST, "bad query\n");
    };
    let Some(room) = params.get("room") else {
        if params.contains_key("appID") {
            return super::nt::upgrade_request(app, client, headers, &params, ws);
        }
        return text(StatusCode::BAD_REQUEST, "missing room or appID\n");
    };
    if room.is_empty() || room.chars().count() > MAX_ROOM {
        return text(StatusCode::BAD_REQUEST, "invalid room\n");
    }
    let Some(ws) = ws else {
        return StatusCode::UPGRADE_REQUIRED.into_response();
    };
    let slot = match crate::admission::admit_connection(&app, headers, client.0) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    app.metrics.nt.ws_connections.inc();
    let session = RendezvousSession::new(&app, room, params.get("key").map(String::as_str));
    crate::transport::ws::upgrade(app, ws, slot, session)
}
