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
    CreateOptions, DialectTag, Envelope, Event, JoinMode, MemberSummary, PeerId, RoomClosedReason,
    RoomId, RoomSnapshot, SignalKind, Target, unix_millis,
};

use super::{
    Codec, Decoded, NULL, Out, body_key, kind_name, push_json_str, raw_slice, signal_body, tags,
};
use crate::command::{
    Claim, Command, CommandError, Join, Leave, PeerChoice, Relay, Reply, Scope, truncate,
};

/// One OctateCode connection's codec: it remembers who the connection authenticated as,
/// for the `roomId` and `userId` of its error frames, and the token its URL carried
/// (`?token=`), which an `auth` without a token of its own uses.
#[derive(Debug, Default)]
pub struct Octate {
    user: Option<PeerId>,
    room: Option<RoomId>,
    url_token: Option<String>,
}

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "super::opt_str")]
    kind: Option<Cow<'a, str>>,
    #[serde(
        rename = "roomId",
        borrow,
        default,
        deserialize_with = "super::opt_str"
    )]
    room_id: Option<Cow<'a, str>>,
    #[serde(
        rename = "userId",
        borrow,
        default,
        deserialize_with = "super::opt_str"
    )]
    user_id: Option<Cow<'a, str>>,
    #[serde(
        rename = "targetUserId",
        borrow,
        default,
        deserialize_with = "super::opt_str"
    )]
    target: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "super::opt_str")]
    token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The few `data` fields the server reads; everything else in `data` is relayed untouched.
#[derive(Deserialize, Default)]
struct DataFields<'a> {
    #[serde(borrow, default, deserialize_with = "super::opt_str")]
    token: Option<Cow<'a, str>>,
    #[serde(
        rename = "userId",
        borrow,
        default,
        deserialize_with = "super::opt_str"
    )]
    user_id: Option<Cow<'a, str>>,
    #[serde(
        rename = "roomId",
        borrow,
        default,
        deserialize_with = "super::opt_str"
    )]
    room_id: Option<Cow<'a, str>>,
    #[serde(
        rename = "userName",
        borrow,
        default,
        deserialize_with = "super::opt_str"
    )]
    user_name: Option<Cow<'a, str>>,
    #[serde(
        rename = "roomName",
        borrow,
        default,
        deserialize_with = "super::opt_str"
    )]
    room_name: Option<Cow<'a, str>>,
    #[serde(
        rename = "fileId",
        borrow,
        default,
        deserialize_with = "super::opt_str"
    )]
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

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

impl Octate {
    /// A fresh, unauthenticated connection's codec.
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection whose URL carried `?token=`.
    pub fn with_url_token(token: Option<String>) -> Self {
        Self {
            url_token: token.filter(|t| !t.is_empty()),
            ..Self::default()
        }
    }

    fn command(
        &self,
        frame: &Bytes,
        kind: &str,
        msg: &Inbound<'_>,
    ) -> Result<Command, CommandError> {
        let claim = || Claim::Identity(msg.user_id.as_deref().map(str::to_owned));
        let room = || non_empty(msg.room_id.as_deref()).map(RoomId::new);
        Ok(match kind {
            "auth" => {
                let data = data_fields(msg.data);
                let pick = |top: &Option<Cow<'_, str>>, inner: &Option<Cow<'_, str>>| {
                    non_empty(top.as_deref())
                        .or(non_empty(inner.as_deref()))
                        .unwrap_or("")
                        .to_owned()
                };
                Command::Authenticate {
                    user: pick(&msg.user_id, &data.user_id),
                    room: pick(&msg.room_id, &data.room_id),
                    token: non_empty(msg.token.as_deref())
                        .or(non_empty(data.token.as_deref()))
                        .or(self.url_token.as_deref())
                        .map(str::to_owned),
                }
            }
            "create-room" | "join-room" => {
                let data = data_fields(msg.data);
                let mut attributes = Vec::new();
                if let Some(f) = data.file_id.as_deref() {
                    attributes.push((Arc::from("fileId"), Arc::from(f)));
                }
                Command::Join(Join {
                    room: room(),
                    peer: PeerChoice::Identity,
                    claim: claim(),
                    mode: if kind == "create-room" {
                        JoinMode::Create
                    } else {
                        JoinMode::Existing
                    },
                    name: data.user_name.as_deref().map(Arc::from),
                    create: CreateOptions {
                        name: data.room_name.as_deref().map(Arc::from),
                        attributes,
                        ..CreateOptions::default()
                    },
                    scope: Scope::One,
                    rejoin: true,
                })
            }
            "leave-room" => Command::Leave(Leave {
                room: None,
                claim: claim(),
                quiet: false,
            }),
            "heartbeat" | "ping" => Command::Heartbeat {
                claim: Claim::Identity(None),
            },
            other => {
                let Some(kind) = signal_kind(other) else {
                    return Err(CommandError::UnknownType(truncate(other).to_owned()));
                };
                let target = match non_empty(msg.target.as_deref()) {
                    Some(t) => Target::Peer(PeerId::new(t)),
                    None => match data_peer(msg.data) {
                        Some(p) if !p.is_empty() => Target::Peer(PeerId::new(&p)),
                        _ => Target::Room,
                    },
                };
                Command::Relay(Relay {
                    room: room(),
                    target,
                    kind,
                    payload: msg.data.map_or(NULL, |d| raw_slice(frame, d)),
                    claim: claim(),
                })
            }
        })
    }

    fn error(&self, code: &str, message: &str) -> Bytes {
        error_frame(
            self.room.as_ref().map_or("", RoomId::as_str),
            self.user.as_ref().map_or("", PeerId::as_str),
            code,
            message,
        )
    }
}

impl Codec for Octate {
    const NAME: &'static str = "octate";
    const TAG: DialectTag = tags::OCTATE;

    fn decode(&mut self, frame: &Bytes, binary: bool) -> Decoded {
        if binary {
            return Decoded::err("unknown", CommandError::BinaryUnsupported);
        }
        let Ok(text) = std::str::from_utf8(frame) else {
            return Decoded::err("unknown", CommandError::BadJson);
        };
        let msg: Inbound<'_> = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) if e.is_data() => return Decoded::err("unknown", CommandError::BadMessage),
            Err(_) => return Decoded::err("unknown", CommandError::BadJson),
        };
        let Some(kind) = msg.kind.as_deref() else {
            return Decoded::err("unknown", CommandError::MissingType);
        };
        Decoded {
            label: kind_label(kind),
            command: self.command(frame, kind, &msg),
        }
    }

    fn encode_event(&mut self, env: &Envelope) -> Out {
        Out::Frame(env.render(Self::TAG, render_event))
    }

    fn encode_reply(&mut self, reply: &Reply) -> Out {
        match reply {
            Reply::Authenticated {
                user,
                room,
                ice_servers,
            } => {
                self.user = Some(user.clone());
                self.room = Some(room.clone());
                let mut buf = frame_head("auth", room.as_str(), user.as_str());
                buf.extend_from_slice(
                    br#","data":{"status":"authenticated","message":"User properly connected to authorized room","iceServers":"#,
                );
                serde_json::to_writer(&mut buf, ice_servers).expect("ice servers serialise");
                buf.push(b'}');
                Out::Frame(frame_tail(buf))
            }
            Reply::Joined { room, .. } => {
                self.room = Some(room.clone());
                Out::None
            }
            // The leaver hears its own `peer-left` as the acknowledgement, as the original did.
            Reply::Left { room, peer } => Out::Frame(frame_tail(frame_head(
                "peer-left",
                room.as_str(),
                peer.as_str(),
            ))),
            Reply::Heartbeat { room, user } => Out::Frame(frame_tail(frame_head(
                "heartbeat",
                room.as_ref().map_or("", RoomId::as_str),
                user.as_ref().map_or("", PeerId::as_str),
            ))),
            Reply::None | Reply::Relayed { .. } | Reply::Mailbox(_) => Out::None,
        }
    }

    fn encode_error(&mut self, e: &CommandError) -> Out {
        // The original server's wording where it had one.
        let message: Cow<'_, str> = match e {
            CommandError::RoomNotFound(_) => "Room not found or join failed".into(),
            CommandError::RoomExists(_) => "Failed to create room: room already exists".into(),
            CommandError::NotInRoom(None) => "Not in a room: create-room or join-room first".into(),
            other => other.to_string().into(),
        };
        Out::Frame(self.error(e.code(), &message))
    }

    fn established(&self) -> bool {
        self.user.is_some()
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
            let mut buf = frame_head(&kind_name(&s.kind), s.room.as_str(), s.from.as_str());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Decoded {
        Octate::new().decode(&Bytes::copy_from_slice(s.as_bytes()), false)
    }

    #[test]
    fn a_targeted_offer_decodes_to_a_relay_of_data_as_sent() {
        let d = decode(
            r#"{"type":"sdp-offer","roomId":"r","userId":"a","data":{"peer":"b","offer":{"sdp":"v=0"}}}"#,
        );
        assert_eq!(d.label, "sdp-offer");
        let Ok(Command::Relay(r)) = d.command else {
            panic!("{d:?}")
        };
        assert_eq!(r.room, Some(RoomId::new("r")));
        assert_eq!(r.target, Target::Peer(PeerId::new("b")));
        assert_eq!(r.kind, SignalKind::Offer);
        assert_eq!(r.payload, r#"{"peer":"b","offer":{"sdp":"v=0"}}"#);
        assert_eq!(r.claim, Claim::Identity(Some("a".into())));
        // targetUserId wins over data.peer; no target is the room.
        let d = decode(r#"{"type":"ice-candidate","targetUserId":"c","data":{"peer":"b"}}"#);
        assert!(
            matches!(d.command, Ok(Command::Relay(Relay { target: Target::Peer(ref p), .. })) if p.as_str() == "c")
        );
        let d = decode(r#"{"type":"presence","data":{"x":1}}"#);
        assert!(matches!(
            d.command,
            Ok(Command::Relay(Relay {
                target: Target::Room,
                ..
            }))
        ));
    }

    #[test]
    fn auth_reads_the_token_at_the_top_or_in_data() {
        for s in [
            r#"{"type":"auth","userId":"u","roomId":"r","token":"t"}"#,
            r#"{"type":"auth","data":{"userId":"u","roomId":"r","token":"t"}}"#,
        ] {
            let Ok(Command::Authenticate { user, room, token }) = decode(s).command else {
                panic!("{s}")
            };
            assert_eq!(
                (user.as_str(), room.as_str(), token.as_deref()),
                ("u", "r", Some("t"))
            );
        }
    }

    #[test]
    fn malformed_frames_are_typed_refusals() {
        assert_eq!(decode("nope").command.unwrap_err(), CommandError::BadJson);
        assert_eq!(decode("42").command.unwrap_err(), CommandError::BadMessage);
        assert_eq!(decode("{}").command.unwrap_err(), CommandError::MissingType);
        assert_eq!(
            decode(r#"{"type":"teleport"}"#).command.unwrap_err(),
            CommandError::UnknownType("teleport".into())
        );
        let d = Octate::new().decode(&Bytes::from_static(b"{}"), true);
        assert_eq!(d.command.unwrap_err(), CommandError::BinaryUnsupported);
    }

    #[test]
    fn errors_render_with_the_authenticated_room_and_user() {
        let mut c = Octate::new();
        let _ = c.encode_reply(&Reply::Authenticated {
            user: "alice".into(),
            room: "r1".into(),
            ice_servers: serde_json::json!([]),
        });
        let Out::Frame(f) = c.encode_error(&CommandError::PeerIdTaken("bob".into())) else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(v["roomId"], "r1");
        assert_eq!(v["userId"], "alice");
        assert_eq!(v["data"]["code"], "peer_id_taken");
        assert_eq!(
            v["data"]["error"],
            "User bob is already in this room on another connection"
        );
    }

    #[test]
    fn a_relayed_signal_renders_exactly() {
        let env = Envelope::new(Event::Signal(switchboard_core::Signal {
            room: "r".into(),
            from: "a".into(),
            to: Some("b".into()),
            kind: SignalKind::Offer,
            payload: Bytes::from_static(br#"{"peer":"b","offer":1}"#),
            origin: tags::OCTATE,
            audience: 2,
        }));
        let Out::Frame(f) = Octate::new().encode_event(&env) else {
            panic!()
        };
        let text = std::str::from_utf8(&f).unwrap();
        let (head, ts) = text.rsplit_once(r#","timestamp":"#).unwrap();
        assert_eq!(
            head,
            r#"{"type":"sdp-offer","roomId":"r","userId":"a","data":{"peer":"b","offer":1},"targetUserId":"b""#
        );
        assert!(ts.trim_end_matches('}').parse::<u64>().is_ok());
    }
}
