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
//!   No room may be created now: error `overloaded` or `creation_rate_limited`, close 1013.
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
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;
use switchboard_core::{
    CreateOptions, DialectTag, Envelope, Event, JoinMode, PeerId, RoomClosedReason, RoomId,
    SignalKind, Target,
};

use super::{
    Codec, Decoded, NULL, Observation, Out, close, push_json_str, raw_slice, signal_body, tags,
};
use crate::command::{
    Claim, Command, CommandError, Join, Leave, PeerChoice, Relay, Reply, Scope, truncate,
};
use crate::config::Config;
use crate::metrics::{Metrics, NtTypeLabel};

/// Longest accepted `peerId`, in characters.
pub const MAX_PEER_ID: usize = 128;
/// Longest accepted `room`, in characters.
pub const MAX_ROOM: usize = 128;

/// One rendezvous connection's codec.
#[derive(Debug)]
pub struct Rendezvous {
    room: RoomId,
    key_ok: bool,
    joined: bool,
    capacity: Option<usize>,
    ttl: Duration,
}

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "super::opt_str")]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "peerId", borrow, default)]
    peer_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "super::opt_str")]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The few fields of `data` read to classify a signal for other dialects.
#[derive(Deserialize, Default)]
struct DataShape<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "super::opt_str")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    candidate: Option<&'a RawValue>,
}

fn classify(data: &[u8]) -> SignalKind {
    // A browser's description begins with its type (`RTCSessionDescription.toJSON()` gives
    // `{"type":"offer","sdp":…}`): read it from the prefix instead of scanning the whole SDP
    // a second time (the frame was validated as JSON when it was decoded). This saved ~6 %
    // of the server's CPU per relayed offer (scripts/profile.sh). When a payload repeats
    // `type`, the first one decides; anything else takes the full parse.
    for (prefix, kind) in [
        (&br#"{"type":"offer""#[..], SignalKind::Offer),
        (br#"{"type":"answer""#, SignalKind::Answer),
    ] {
        if let Some(rest) = data.strip_prefix(prefix)
            && matches!(rest.first(), Some(b',' | b'}'))
        {
            return kind;
        }
    }
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

/// Whether `given` is `expected`, in time independent of where they differ.
pub fn key_matches(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

impl Rendezvous {
    /// A codec for `room`; `key` is the `?key=` the client gave, checked against
    /// `RENDEZVOUS_WS_KEY`.
    pub fn new(config: &Config, room: &str, key: Option<&str>) -> Self {
        let key_ok = match &config.rendezvous_ws_key {
            None => true,
            Some(expected) => key.is_some_and(|k| key_matches(k, expected)),
        };
        Self {
            room: RoomId::new(room),
            key_ok,
            joined: false,
            capacity: (config.rendezvous_max_peers != 0).then_some(config.rendezvous_max_peers),
            ttl: config.room_ttl.get(),
        }
    }

    fn join(&self, msg: &Inbound<'_>) -> Result<Command, CommandError> {
        let peer = match msg.peer_id {
            None => PeerChoice::Generated,
            Some(raw) if raw.get() == "null" => PeerChoice::Generated,
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(s) if s.is_empty() => PeerChoice::Generated,
                Ok(s) if s.chars().count() <= MAX_PEER_ID => PeerChoice::Named(PeerId::from(s)),
                _ => return Err(CommandError::InvalidPeerId),
            },
        };
        Ok(Command::Join(Join {
            room: Some(self.room.clone()),
            peer,
            claim: Claim::None,
            mode: JoinMode::CreateOrJoin,
            name: None,
            create: CreateOptions {
                capacity: self.capacity,
                empty_grace: Some(Duration::ZERO),
                inactivity_timeout: Some(self.ttl),
                ..CreateOptions::default()
            },
            scope: Scope::One,
            rejoin: false,
        }))
    }
}

impl Codec for Rendezvous {
    const NAME: &'static str = "rendezvous";
    const TAG: DialectTag = tags::RENDEZVOUS;

    fn open(&mut self) -> Result<Option<Command>, CommandError> {
        if self.key_ok {
            Ok(None)
        } else {
            Err(CommandError::InvalidKey)
        }
    }

    fn decode(&mut self, frame: &Bytes, _binary: bool) -> Decoded {
        let msg: Inbound<'_> = match serde_json::from_slice(frame) {
            Ok(m) => m,
            Err(_) if !self.joined => return Decoded::err("unknown", CommandError::JoinRequired),
            Err(_) => return Decoded::err("unknown", CommandError::BadJson),
        };
        let kind = msg.kind.as_deref().unwrap_or("");
        let label = kind_label(kind);
        if !self.joined {
            return Decoded {
                label,
                command: if kind == "join" {
                    self.join(&msg)
                } else {
                    Err(CommandError::JoinRequired)
                },
            };
        }
        let command = match kind {
            "signal" => {
                let payload = msg.data.map_or(NULL, |d| raw_slice(frame, d));
                Ok(Command::Relay(Relay {
                    room: None,
                    target: match msg.to.as_deref() {
                        Some(t) if !t.is_empty() => Target::Peer(PeerId::new(t)),
                        _ => Target::Room,
                    },
                    kind: classify(&payload),
                    payload,
                    claim: Claim::None,
                }))
            }
            "leave" => Ok(Command::Leave(Leave {
                room: None,
                claim: Claim::None,
                quiet: false,
            })),
            "join" => Err(CommandError::AlreadyJoined),
            "" if msg.kind.is_none() => Err(CommandError::MissingType),
            other => Err(CommandError::UnknownType(truncate(other).to_owned())),
        };
        Decoded { label, command }
    }

    fn encode_event(&mut self, env: &Envelope) -> Out {
        if let Event::RoomClosed { reason, .. } = &env.event {
            return Out::close(None, close::NORMAL, room_closed_reason(*reason));
        }
        Out::Frame(env.render(Self::TAG, render_event))
    }

    fn encode_reply(&mut self, reply: &Reply) -> Out {
        match reply {
            Reply::Joined { .. } => {
                self.joined = true;
                Out::None
            }
            Reply::Left { .. } => Out::close(None, close::NORMAL, "left"),
            _ => Out::None,
        }
    }

    fn encode_error(&mut self, e: &CommandError) -> Out {
        let message: Cow<'_, str> = match e {
            CommandError::PeerNotFound(p) => {
                format!("Peer {} is not in this room", truncate(p.as_str())).into()
            }
            CommandError::PeerIdTaken(_) => {
                "Another connection in this room already uses this peerId".into()
            }
            other => other.to_string().into(),
        };
        let frame = error_frame(e.code(), &message);
        let (code, reason) = match e {
            CommandError::InvalidKey => (close::POLICY, "invalid key"),
            CommandError::JoinRequired => (close::POLICY, "join required"),
            CommandError::RoomFull { .. } => (close::POLICY, "room full"),
            CommandError::PeerIdTaken(_) => (close::POLICY, "peer id taken"),
            CommandError::InvalidPeerId => (close::POLICY, "invalid peer id"),
            CommandError::TokenRequired
            | CommandError::RoomNotSecured
            | CommandError::UserMismatch
            | CommandError::RoomMismatch(_) => (close::POLICY, "unauthorized"),
            CommandError::Overloaded
            | CommandError::CreationRateLimited
            | CommandError::TooManyRooms(_)
            | CommandError::Unavailable(_)
                if !self.joined =>
            {
                (close::TRY_AGAIN_LATER, "try again later")
            }
            // The room was closed under the sender.
            CommandError::NotInRoom(_) => return Out::close(None, close::NORMAL, "room closed"),
            _ if !self.joined => (close::POLICY, "join required"),
            _ => return Out::Frame(frame),
        };
        Out::close(Some(frame), code, reason)
    }

    fn established(&self) -> bool {
        self.joined
    }

    fn needs_establishing(&self, _config: &Config) -> bool {
        true
    }

    fn ping_interval(&self, config: &Config) -> Duration {
        config.heartbeat.get()
    }

    fn observe(&self, metrics: &Metrics, what: Observation<'_>) {
        // Seed 004 documents its series for `/ws`: this form of it counts too.
        if let Observation::Applied { label, result, .. } = what {
            metrics
                .nt
                .ws_messages
                .get_or_create(&NtTypeLabel { r#type: label })
                .inc();
            if result.is_err() {
                metrics.nt.ws_errors.inc();
            }
        }
    }
}

/// The close reason of a connection whose room was closed.
pub fn room_closed_reason(reason: RoomClosedReason) -> &'static str {
    match reason {
        RoomClosedReason::Inactive => "room closed for inactivity",
        RoomClosedReason::Deleted => "room deleted",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Rendezvous {
        Rendezvous::new(&Config::default(), "r", None)
    }

    fn decode(c: &mut Rendezvous, s: &'static str) -> Decoded {
        c.decode(&Bytes::from_static(s.as_bytes()), false)
    }

    #[test]
    fn a_signal_is_classified_by_its_payload_type_with_or_without_the_prefix_shortcut() {
        use super::classify;
        let cases: [(&str, SignalKind); 8] = [
            (r#"{"type":"offer","sdp":"v=0\r\n"}"#, SignalKind::Offer),
            (r#"{"type":"answer"}"#, SignalKind::Answer),
            (r#"{"sdp":"v=0","type":"offer"}"#, SignalKind::Offer),
            (r#"{ "type" : "answer", "sdp": "" }"#, SignalKind::Answer),
            (r#"{"type":"offerx","sdp":""}"#, SignalKind::Generic),
            (
                r#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}"#,
                SignalKind::Candidate,
            ),
            (r#"{"type":"rollback"}"#, SignalKind::Generic),
            (r#""just text""#, SignalKind::Generic),
        ];
        for (data, kind) in cases {
            assert_eq!(classify(data.as_bytes()), kind, "{data}");
        }
    }

    #[test]
    fn the_first_message_must_be_a_valid_join() {
        let mut c = codec();
        assert_eq!(
            decode(&mut c, "{").command.unwrap_err(),
            CommandError::JoinRequired
        );
        assert_eq!(
            decode(&mut c, r#"{"type":"signal"}"#).command.unwrap_err(),
            CommandError::JoinRequired
        );
        assert_eq!(
            decode(&mut c, r#"{"type":"join","peerId":5}"#)
                .command
                .unwrap_err(),
            CommandError::InvalidPeerId
        );
        let Ok(Command::Join(j)) = decode(&mut c, r#"{"type":"join","peerId":"p"}"#).command else {
            panic!()
        };
        assert_eq!(j.peer, PeerChoice::Named("p".into()));
        assert_eq!(j.create.capacity, Some(2));
        let Ok(Command::Join(j)) = decode(&mut c, r#"{"type":"join"}"#).command else {
            panic!()
        };
        assert_eq!(j.peer, PeerChoice::Generated);
        // A refused join closes with the reason the seed's clients read.
        let out = c.encode_error(&CommandError::RoomFull { capacity: 2 });
        assert!(matches!(out, Out::Close { code: 1008, ref reason, .. } if reason == "room full"));
    }

    #[test]
    fn after_joining_signals_relay_data_as_sent() {
        let mut c = codec();
        let _ = c.encode_reply(&Reply::Joined {
            room: "r".into(),
            peer: "p".into(),
        });
        let Ok(Command::Relay(r)) = decode(
            &mut c,
            r#"{"type":"signal","to":"q","data":{"type":"offer","sdp":"x"}}"#,
        )
        .command
        else {
            panic!()
        };
        assert_eq!(r.target, Target::Peer("q".into()));
        assert_eq!(r.kind, SignalKind::Offer);
        assert_eq!(r.payload, r#"{"type":"offer","sdp":"x"}"#);
        assert_eq!(
            decode(&mut c, r#"{"type":"join"}"#).command.unwrap_err(),
            CommandError::AlreadyJoined
        );
        // Errors after the join keep the connection.
        let out = c.encode_error(&CommandError::PeerNotFound("q".into()));
        assert_eq!(
            out,
            Out::Frame(Bytes::from_static(
                br#"{"type":"error","code":"peer_not_found","message":"Peer q is not in this room"}"#
            ))
        );
        assert!(matches!(
            c.encode_reply(&Reply::Left {
                room: "r".into(),
                peer: "p".into()
            }),
            Out::Close { code: 1000, .. }
        ));
    }

    #[test]
    fn a_wrong_key_is_refused_on_open() {
        let config = Config {
            rendezvous_ws_key: Some("k".into()),
            ..Config::default()
        };
        assert_eq!(
            Rendezvous::new(&config, "r", Some("x")).open().unwrap_err(),
            CommandError::InvalidKey
        );
        assert!(Rendezvous::new(&config, "r", Some("k")).open().is_ok());
        assert!(key_matches("k", "k") && !key_matches("k", "kk"));
    }
}
