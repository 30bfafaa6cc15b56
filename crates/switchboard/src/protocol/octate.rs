//! The OctateCode dialect (seeds 000–002): JSON text frames
//! `{type, roomId, userId, data?, targetUserId?, token?, timestamp?}`.
//!
//! Client messages: `auth`, `create-room`, `join-room`, `leave-room`, `sdp-offer`,
//! `sdp-answer`, `ice-candidate`, `presence`, `cursor-update`, `heartbeat` (`ping` is an
//! alias). Server frames: `auth`, `room-created`, `room-joined`, `peer-joined`, `peer-left`,
//! the relayed signal types, `heartbeat`, `room-closed` and `error`. Every frame carries
//! `timestamp` (Unix ms). `docs/PROTOCOL.md` has the full table.
//!
//! Departures from the original server, on purpose: signals go to `targetUserId` or
//! `data.peer` when given (else to every *other* member), never back to the sender; the
//! relayed `data` is the sender's `data` byte for byte (no `data.offer.offer` nesting); the
//! relayed `userId` is the authenticated one, and a frame claiming another is refused.

use std::borrow::Cow;
use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use switchboard_core::{
    CreateOptions, DialectTag, Envelope, Event, JoinError, JoinMode, JoinOptions, MemberSummary,
    Membership, PeerId, RelayError, RoomClosedReason, RoomId, RoomSnapshot, SignalKind, Target,
    unix_millis,
};

use super::{Context, Flow, Session, body_key, push_json_str, raw_slice, signal_body, tags};
use crate::auth::TokenError;
use crate::state::AppState;

/// One OctateCode connection.
#[derive(Debug, Default)]
pub struct OctateSession {
    user: Option<PeerId>,
    /// The room the token (or, without a token, the `auth` message) admits to.
    auth_room: Option<RoomId>,
    /// Whether `auth_room` came from a verified token (then it binds room operations).
    token_bound: bool,
    membership: Option<Membership>,
}

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "roomId", borrow, default)]
    room_id: Option<Cow<'a, str>>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(rename = "targetUserId", borrow, default)]
    target: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The few `data` fields the server reads; everything else in `data` is relayed untouched.
#[derive(Deserialize, Default)]
struct DataFields<'a> {
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(rename = "roomId", borrow, default)]
    room_id: Option<Cow<'a, str>>,
    #[serde(rename = "userName", borrow, default)]
    user_name: Option<Cow<'a, str>>,
    #[serde(rename = "roomName", borrow, default)]
    room_name: Option<Cow<'a, str>>,
    #[serde(rename = "fileId", borrow, default)]
    file_id: Option<Cow<'a, str>>,
}

/// `data.peer`, reading `data` only up to that key. Signals carry the SDP or candidate
/// next to `peer`; a full second pass over it cost about 5% of the server's CPU per relayed
/// offer (perf, 20 pairs × 8 in flight), and clients put `peer` first (seed 002's
/// `{peer, offer}`).
fn data_peer(data: Option<&RawValue>) -> Option<Cow<'_, str>> {
    struct PeerVisitor<'a, 'b>(&'b mut Option<Cow<'a, str>>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for PeerVisitor<'a, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == "peer" {
                    *self.0 = map.next_value::<Option<Cow<'de, str>>>()?;
                    // Stop here: the caller keeps what was found and ignores the error the
                    // unfinished object produces.
                    return Err(serde::de::Error::custom("found"));
                }
                map.next_value::<serde::de::IgnoredAny>()?;
            }
            Ok(())
        }
    }
    let raw = data?.get();
    let mut peer = None;
    let mut de = serde_json::Deserializer::from_str(raw);
    let _ = serde::Deserializer::deserialize_map(&mut de, PeerVisitor(&mut peer));
    peer
}

fn data_fields<'a>(data: Option<&'a RawValue>) -> DataFields<'a> {
    // `data` that is not an object (or has odd field types) simply carries no routing fields.
    data.and_then(|d| serde_json::from_str(d.get()).ok())
        .unwrap_or_default()
}

/// The message types this dialect knows, as metric labels.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        "auth" => "auth",
        "create-room" => "create-room",
        "join-room" => "join-room",
        "leave-room" => "leave-room",
        "sdp-offer" => "sdp-offer",
        "sdp-answer" => "sdp-answer",
        "ice-candidate" => "ice-candidate",
        "presence" => "presence",
        "cursor-update" => "cursor-update",
        "heartbeat" | "ping" => "heartbeat",
        _ => "unknown",
    }
}

fn signal_kind(kind: &str) -> Option<SignalKind> {
    Some(match kind {
        "sdp-offer" => SignalKind::Offer,
        "sdp-answer" => SignalKind::Answer,
        "ice-candidate" => SignalKind::Candidate,
        "presence" => SignalKind::Presence,
        "cursor-update" => SignalKind::Cursor,
        _ => return None,
    })
}

fn signal_type(kind: &SignalKind) -> &str {
    match kind {
        SignalKind::Offer => "sdp-offer",
        SignalKind::Answer => "sdp-answer",
        SignalKind::Candidate => "ice-candidate",
        SignalKind::Presence => "presence",
        SignalKind::Cursor => "cursor-update",
        SignalKind::Generic => "signal",
        SignalKind::Publish => "publish",
        SignalKind::Other(name) => name,
    }
}

/// Why a message was refused, with its machine-readable code and human text.
struct Refusal {
    code: &'static str,
    message: Cow<'static, str>,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<JoinError> for Refusal {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::RoomNotFound(_) => {
                Self::new("room_not_found", "Room not found or join failed")
            }
            JoinError::RoomExists(_) => {
                Self::new("room_exists", "Failed to create room: room already exists")
            }
            JoinError::RoomFull { capacity, .. } => {
                Self::new("room_full", format!("Room is full ({capacity} peers)"))
            }
            JoinError::TooManyRooms(n) => {
                Self::new("too_many_rooms", format!("Room limit reached ({n} rooms)"))
            }
            JoinError::PeerIdTaken { peer, .. } => Self::new(
                "duplicate_peer",
                format!("User {peer} is already in this room on another connection"),
            ),
            JoinError::NotAdmitting => {
                Self::new("overloaded", "Server is not accepting new rooms right now")
            }
            JoinError::CreationRateLimited => Self::new(
                "creation_rate_limited",
                "Too many rooms created from this address; try again later",
            ),
        }
    }
}

impl OctateSession {
    /// A fresh, unauthenticated session.
    pub fn new() -> Self {
        Self::default()
    }

    fn handle(&mut self, cx: &Context<'_>, frame: &Bytes) -> Result<(), Refusal> {
        let text = std::str::from_utf8(frame)
            .map_err(|_| Refusal::new("bad_json", "Invalid message format"))?;
        let msg: Inbound<'_> = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) if e.is_data() => {
                return Err(Refusal::new(
                    "bad_message",
                    "Invalid message format: expected a JSON object with a string \"type\"",
                ));
            }
            Err(_) => return Err(Refusal::new("bad_json", "Invalid message format")),
        };
        let Some(kind) = msg.kind.as_deref() else {
            return Err(Refusal::new("missing_type", "Missing message type"));
        };
        cx.app
            .metrics
            .message(OctateSession::NAME, kind_label(kind));
        match kind {
            "auth" => self.auth(cx, &msg),
            "create-room" => self.join(cx, &msg, JoinMode::Create),
            "join-room" => self.join(cx, &msg, JoinMode::Existing),
            "leave-room" => self.leave(cx, &msg),
            "heartbeat" | "ping" => self.heartbeat(cx),
            other => match signal_kind(other) {
                Some(sk) => self.relay(cx, &msg, frame, sk),
                None => Err(Refusal::new(
                    "unknown_type",
                    format!("Unknown message type: {}", truncate(other)),
                )),
            },
        }
    }

    fn auth(&mut self, cx: &Context<'_>, msg: &Inbound<'_>) -> Result<(), Refusal> {
        let data = data_fields(msg.data);
        let user = msg
            .user_id
            .as_deref()
            .or(data.user_id.as_deref())
            .filter(|s| !s.is_empty());
        let room = msg
            .room_id
            .as_deref()
            .or(data.room_id.as_deref())
            .filter(|s| !s.is_empty());
        let (Some(user), Some(room)) = (user, room) else {
            return Err(Refusal::new("missing_fields", "Missing userId or roomId"));
        };
        let token = msg
            .token
            .as_deref()
            .or(data.token.as_deref())
            .filter(|s| !s.is_empty());
        let bound = match token {
            Some(t) => {
                cx.app.auth.verify_for(t, user, room)?;
                true
            }
            None if cx.app.config.is_production() => {
                return Err(Refusal::new(
                    "missing_token",
                    "Missing auth token. Request token from /api/auth/token endpoint first.",
                ));
            }
            None => false,
        };
        // Re-authenticating replaces the identity: leave any room joined under the old one.
        self.membership = None;
        self.user = Some(PeerId::new(user));
        self.auth_room = Some(RoomId::new(room));
        self.token_bound = bound;
        let mut buf = frame_head("auth", room, user);
        buf.extend_from_slice(
            br#","data":{"status":"authenticated","message":"User properly connected to authorized room","iceServers":"#,
        );
        let ice = crate::turn::ice_servers(&cx.app.config, Some(user));
        buf.extend_from_slice(&serde_json::to_vec(&ice).expect("ice servers serialise"));
        buf.push(b'}');
        cx.reply(frame_tail(buf));
        Ok(())
    }

    fn require_user(&self) -> Result<&PeerId, Refusal> {
        self.user
            .as_ref()
            .ok_or_else(|| Refusal::new("not_authenticated", "Not authenticated"))
    }

    fn check_sender(&self, msg: &Inbound<'_>) -> Result<PeerId, Refusal> {
        let user = self.require_user()?;
        if let Some(claimed) = msg.user_id.as_deref()
            && !claimed.is_empty()
            && claimed != user.as_str()
        {
            return Err(Refusal::new(
                "user_mismatch",
                "User ID mismatch: userId must be the authenticated user",
            ));
        }
        Ok(user.clone())
    }

    fn join(&mut self, cx: &Context<'_>, msg: &Inbound<'_>, mode: JoinMode) -> Result<(), Refusal> {
        let user = self.check_sender(msg)?;
        let auth_room = self
            .auth_room
            .clone()
            .expect("authenticated sessions have an auth room");
        let room = match msg.room_id.as_deref().filter(|r| !r.is_empty()) {
            Some(r) if self.token_bound && r != auth_room.as_str() => {
                return Err(Refusal::new(
                    "room_mismatch",
                    format!("Not authorized for this room. Token is for room {auth_room}"),
                ));
            }
            Some(r) => RoomId::new(r),
            None => auth_room,
        };
        if self.membership.as_ref().is_some_and(|m| m.room() != &room) {
            // One room per connection: joining another leaves the current one.
            self.membership = None;
        }
        let data = data_fields(msg.data);
        let name: Option<Arc<str>> = data.user_name.as_deref().map(Arc::from);
        let mut attributes = Vec::new();
        if let Some(f) = data.file_id.as_deref() {
            attributes.push((Arc::from("fileId"), Arc::from(f)));
        }
        let opts = JoinOptions {
            mode,
            name,
            create: CreateOptions {
                name: data.room_name.as_deref().map(Arc::from),
                attributes,
                creator: Some(cx.client),
                ..CreateOptions::default()
            },
        };
        match cx.app.registry.join(room, user, cx.handle.clone(), opts) {
            Ok(m) => {
                self.auth_room = Some(m.room().clone());
                self.membership = Some(m);
                Ok(())
            }
            Err(e) => {
                match &e {
                    JoinError::RoomFull { .. } => cx.app.metrics.limit("room_full"),
                    JoinError::TooManyRooms(_) => cx.app.metrics.limit("rooms"),
                    JoinError::CreationRateLimited => cx.app.metrics.limit("room_creations"),
                    JoinError::NotAdmitting => cx.app.metrics.limit("memory"),
                    _ => {}
                }
                Err(e.into())
            }
        }
    }

    fn leave(&mut self, cx: &Context<'_>, msg: &Inbound<'_>) -> Result<(), Refusal> {
        let user = self.check_sender(msg)?;
        let Some(m) = self.membership.take() else {
            return Err(Refusal::new("not_in_room", "Not in a room"));
        };
        let room = m.room().clone();
        drop(m);
        // The leaver hears its own `peer-left` as the acknowledgement, as the original did.
        cx.reply(frame_tail(frame_head(
            "peer-left",
            room.as_str(),
            user.as_str(),
        )));
        Ok(())
    }

    fn heartbeat(&mut self, cx: &Context<'_>) -> Result<(), Refusal> {
        let user = self.require_user()?.clone();
        if let Some(m) = &self.membership {
            cx.app.registry.touch(m);
        }
        let room = self.auth_room.as_ref().map_or("", RoomId::as_str);
        cx.reply(frame_tail(frame_head("heartbeat", room, user.as_str())));
        Ok(())
    }

    fn relay(
        &mut self,
        cx: &Context<'_>,
        msg: &Inbound<'_>,
        frame: &Bytes,
        kind: SignalKind,
    ) -> Result<(), Refusal> {
        self.check_sender(msg)?;
        let Some(m) = &self.membership else {
            return Err(Refusal::new(
                "not_in_room",
                "Not in a room: create-room or join-room first",
            ));
        };
        if let Some(r) = msg.room_id.as_deref()
            && !r.is_empty()
            && r != m.room().as_str()
        {
            return Err(Refusal::new(
                "not_in_room",
                format!("Not in room {}", truncate(r)),
            ));
        }
        let target = match msg.target.as_deref() {
            Some(t) if !t.is_empty() => Target::Peer(PeerId::new(t)),
            _ => match data_peer(msg.data) {
                Some(p) if !p.is_empty() => Target::Peer(PeerId::new(&p)),
                _ => Target::Room,
            },
        };
        let payload = msg
            .data
            .map_or_else(|| Bytes::from_static(b"null"), |d| raw_slice(frame, d));
        match cx
            .app
            .registry
            .relay(m, target, kind, payload, tags::OCTATE)
        {
            Ok(_) => Ok(()),
            Err(RelayError::NotInRoom(room)) => {
                self.membership = None;
                Err(Refusal::new("not_in_room", format!("Not in room {room}")))
            }
            Err(RelayError::PeerNotFound(p)) => Err(Refusal::new(
                "peer_not_found",
                format!("Peer {} not found in room", truncate(p.as_str())),
            )),
            Err(RelayError::Undelivered(peers)) => {
                let names: Vec<_> = peers.iter().map(PeerId::as_str).collect();
                Err(Refusal::new(
                    "undelivered",
                    format!("Signal not delivered to: {}", names.join(", ")),
                ))
            }
        }
    }
}

impl Session for OctateSession {
    const NAME: &'static str = "octate";
    const TAG: DialectTag = tags::OCTATE;

    fn on_text(&mut self, cx: &Context<'_>, text: Bytes) -> Flow {
        if let Err(r) = self.handle(cx, &text) {
            cx.app.metrics.error(r.code);
            cx.reply(self.error_frame(r.code, &r.message));
        }
        Flow::Continue
    }

    fn render(&mut self, env: &Envelope) -> Option<Bytes> {
        if let Event::RoomClosed { room, .. } = &env.event
            && self.membership.as_ref().is_some_and(|m| m.room() == room)
        {
            self.membership = None;
        }
        Some(env.render(Self::TAG, render_event))
    }

    fn error_frame(&self, code: &'static str, message: &str) -> Bytes {
        error_frame(
            self.auth_room.as_ref().map_or("", RoomId::as_str),
            self.user.as_ref().map_or("", PeerId::as_str),
            code,
            message,
        )
    }

    fn is_established(&self) -> bool {
        self.user.is_some()
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `{"type":T,"roomId":R,"userId":U` — the common head of every server frame.
fn frame_head(kind: &str, room: &str, user: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(160);
    buf.extend_from_slice(br#"{"type":"#);
    push_json_str(&mut buf, kind);
    buf.extend_from_slice(br#","roomId":"#);
    push_json_str(&mut buf, room);
    buf.extend_from_slice(br#","userId":"#);
    push_json_str(&mut buf, user);
    buf
}

/// Appends `,"timestamp":N}` and freezes the frame.
fn frame_tail(mut buf: Vec<u8>) -> Bytes {
    buf.extend_from_slice(br#","timestamp":"#);
    // Formatting into the frame avoids a String per rendered frame.
    let _ = write!(buf, "{}", unix_millis());
    buf.push(b'}');
    Bytes::from(buf)
}

/// `{"type":"error","roomId":R,"userId":U,"data":{"error":M,"code":C},"timestamp":N}`
pub fn error_frame(room: &str, user: &str, code: &str, message: &str) -> Bytes {
    let mut buf = frame_head("error", room, user);
    buf.extend_from_slice(br#","data":{"error":"#);
    push_json_str(&mut buf, message);
    buf.extend_from_slice(br#","code":"#);
    push_json_str(&mut buf, code);
    buf.push(b'}');
    frame_tail(buf)
}

/// The room metadata object, as the OctateCode API and join replies show it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomMetadata<'a> {
    room_id: &'a str,
    room_name: &'a str,
    host_id: &'a str,
    host_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_id: Option<&'a str>,
    peer_count: usize,
    state: &'static str,
    created_at: u64,
    last_activity: u64,
    peers: Vec<PeerInfo<'a>>,
}

/// A member as the OctateCode API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo<'a> {
    user_id: &'a str,
    user_name: &'a str,
    is_host: bool,
    connected_at: u64,
    last_heartbeat: u64,
}

impl<'a> PeerInfo<'a> {
    /// Borrows a member summary.
    pub fn from_member(m: &'a MemberSummary) -> Self {
        Self {
            user_id: m.id.as_str(),
            user_name: m.name.as_deref().unwrap_or(m.id.as_str()),
            is_host: m.is_host,
            connected_at: m.joined_at_ms,
            last_heartbeat: m.last_heartbeat_ms,
        }
    }
}

impl<'a> RoomMetadata<'a> {
    /// Borrows a room snapshot.
    pub fn from_snapshot(r: &'a RoomSnapshot) -> Self {
        let host_id = r.host.as_ref().map_or("", PeerId::as_str);
        Self {
            room_id: r.id.as_str(),
            room_name: &r.name,
            host_id,
            host_name: r.host_name.as_deref().unwrap_or(host_id),
            file_id: r
                .attributes
                .iter()
                .find(|(k, _)| &**k == "fileId")
                .map(|(_, v)| &**v),
            peer_count: r.members.len(),
            state: if r.members.is_empty() {
                "idle"
            } else {
                "active"
            },
            created_at: r.created_at_ms,
            last_activity: r.last_activity_ms,
            peers: r.members.iter().map(PeerInfo::from_member).collect(),
        }
    }
}

/// Renders a core event as an OctateCode frame.
pub fn render_event(event: &Event) -> Bytes {
    match event {
        Event::Joined { room, me, created } => {
            let kind = if *created {
                "room-created"
            } else {
                "room-joined"
            };
            let mut buf = frame_head(kind, room.id.as_str(), me.as_str());
            buf.extend_from_slice(br#","data":{"room":"#);
            serde_json::to_writer(&mut buf, &RoomMetadata::from_snapshot(room))
                .expect("room metadata serialises");
            buf.push(b'}');
            frame_tail(buf)
        }
        Event::PeerJoined { room, peer } => {
            let mut buf = frame_head("peer-joined", room.as_str(), peer.id.as_str());
            buf.extend_from_slice(br#","data":{"peer":{"userId":"#);
            push_json_str(&mut buf, peer.id.as_str());
            buf.extend_from_slice(br#","userName":"#);
            push_json_str(&mut buf, peer.name.as_deref().unwrap_or(peer.id.as_str()));
            buf.extend_from_slice(br#","isHost":"#);
            buf.extend_from_slice(if peer.is_host { b"true" } else { b"false" });
            buf.extend_from_slice(b"}}");
            frame_tail(buf)
        }
        Event::PeerLeft { room, peer } => {
            frame_tail(frame_head("peer-left", room.as_str(), peer.as_str()))
        }
        Event::Signal(s) => {
            let mut buf = frame_head(signal_type(&s.kind), s.room.as_str(), s.from.as_str());
            buf.reserve(s.payload.len() + 64);
            buf.extend_from_slice(br#","data":"#);
            if s.origin == tags::OCTATE {
                buf.extend_from_slice(&s.payload);
            } else {
                let body = signal_body(s);
                match body_key(&s.kind) {
                    Some(key) => {
                        buf.push(b'{');
                        push_json_str(&mut buf, key);
                        buf.push(b':');
                        buf.extend_from_slice(&body);
                        buf.push(b'}');
                    }
                    None => buf.extend_from_slice(&body),
                }
            }
            if let Some(to) = &s.to {
                buf.extend_from_slice(br#","targetUserId":"#);
                push_json_str(&mut buf, to.as_str());
            }
            frame_tail(buf)
        }
        Event::RoomClosed { room, reason } => {
            let mut buf = frame_head("room-closed", room.as_str(), "");
            buf.extend_from_slice(match reason {
                RoomClosedReason::Inactive => br#","data":{"reason":"inactive"}"#.as_slice(),
                RoomClosedReason::Deleted => br#","data":{"reason":"deleted"}"#.as_slice(),
            });
            frame_tail(buf)
        }
    }
}

/// Used by the HTTP layer to decide whether auth applies (kept here so the rule lives with
/// the dialect).
pub fn token_required(app: &AppState) -> bool {
    app.config.is_production()
}
