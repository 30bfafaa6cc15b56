//! The Socket.io dialect (seed 003, the Vibe signaling server): its events and their
//! payloads, as a codec. The transport (Engine.IO and Socket.io framing, via socketioxide)
//! is [`crate::transport::socketio`]; the Vibe REST API is [`crate::http::vibe`].
//!
//! Client events: `join-room`, `leave-room`, `offer`, `answer`, `ice-candidate`. Both the
//! seed's object payloads (`{roomId, userId}`) and the original's positional arguments
//! (`roomId, userId`) are accepted for `join-room` and `leave-room`. Server events:
//! `room-users` and `room-participants` `{participants, roomId}` (the joiner's view: every
//! member but itself), `user-joined {userId, roomId}`, `user-left {userId, roomId}`, the
//! relayed `offer`/`answer`/`ice-candidate` `{userId, targetUserId?, roomId,
//! offer|answer|candidate}` and `error {message}`.
//!
//! Departures from the original, on purpose: signals go to `targetId`/`targetUserId` when
//! given; a socket must have joined a room to signal in it; the relayed `userId` is the one
//! the sender joined with; a disconnect leaves every room (the others hear `user-left`) and
//! a room left empty by a Socket.io peer is removed; a missing or malformed payload gets
//! `error`.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use switchboard_core::{
    DialectTag, Envelope, Event, JoinMode, PeerId, RoomClosedReason, RoomId, Signal, SignalKind,
    Target,
};

use super::{body_key, push_json_str, signal_body, tags};
use crate::command::{
    Claim, Command, CommandError, Join, Leave, PeerChoice, Relay, Reply, Scope, truncate,
};

/// The dialect's name in metrics.
pub const NAME: &str = "socketio";
/// The dialect's tag.
pub const TAG: DialectTag = tags::SOCKETIO;
/// Rooms one socket may be in at once.
pub const MAX_ROOMS_PER_SOCKET: usize = 64;
/// The events this dialect handles.
pub const EVENTS: [&str; 5] = [
    "join-room",
    "leave-room",
    "offer",
    "answer",
    "ice-candidate",
];

/// One event to emit: its name and its single argument.
pub type Emit = (Cow<'static, str>, Arg);

/// An emitted event's argument: a value built here, or a relayed signal as raw JSON, which
/// socketioxide writes byte for byte. A signal used to be parsed into a `Value` tree,
/// extended, and escaped again on the way out: for an SDP that was the largest cost of a
/// Socket.io delivery (`format_escaped_str` 8 % of the server's CPU, `BTreeMap` inserts and
/// ~20 % in malloc and free, in `perf` of the Socket.io relay).
#[derive(Debug, Clone)]
pub enum Arg {
    /// Built as a value.
    Value(Value),
    /// Already JSON (checked once when it was built).
    Raw(Box<RawValue>),
}

impl From<Value> for Arg {
    fn from(v: Value) -> Self {
        Arg::Value(v)
    }
}

impl Serialize for Arg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Arg::Value(v) => v.serialize(s),
            Arg::Raw(r) => r.serialize(s),
        }
    }
}

/// Equal when they are the same JSON text (a raw argument is never equal to a value).
impl PartialEq for Arg {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Arg::Value(a), Arg::Value(b)) => a == b,
            (Arg::Raw(a), Arg::Raw(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl Arg {
    /// The argument as a value (parsed, for a raw one; tests and checks).
    pub fn to_value(&self) -> Value {
        match self {
            Arg::Value(v) => v.clone(),
            Arg::Raw(r) => serde_json::from_str(r.get()).unwrap_or(Value::Null),
        }
    }
}

/// A relayed signal as Socket.io's `{userId, targetUserId?, roomId, <kind>: body}`, with the
/// body's JSON copied as it came. A body that is not JSON (no decoder lets one through) is
/// sent as `null`, as before.
fn signal_arg(sig: &Signal) -> Arg {
    let body = signal_body(sig);
    let build = |body: &[u8]| {
        let mut buf = Vec::with_capacity(body.len() + 96);
        buf.extend_from_slice(br#"{"userId":"#);
        push_json_str(&mut buf, sig.from.as_str());
        if let Some(to) = &sig.to {
            buf.extend_from_slice(br#","targetUserId":"#);
            push_json_str(&mut buf, to.as_str());
        }
        buf.extend_from_slice(br#","roomId":"#);
        push_json_str(&mut buf, sig.room.as_str());
        buf.push(b',');
        push_json_str(&mut buf, body_key(&sig.kind).unwrap_or("data"));
        buf.push(b':');
        buf.extend_from_slice(body);
        buf.push(b'}');
        String::from_utf8(buf)
            .ok()
            .and_then(|s| RawValue::from_string(s).ok())
    };
    build(&body)
        .or_else(|| build(b"null"))
        .map_or(Arg::Value(Value::Null), Arg::Raw)
}

/// What a payload says, in either form.
#[derive(Default)]
struct Fields<'a> {
    room: Option<&'a str>,
    user: Option<&'a str>,
    target: Option<&'a str>,
    object: Option<&'a Map<String, Value>>,
}

fn string(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Reads `{roomId, userId, targetId|targetUserId, …}` or positional `(roomId, userId)`.
fn fields(args: &[Value]) -> Option<Fields<'_>> {
    match args.first()? {
        Value::Object(o) => Some(Fields {
            room: string(o.get("roomId")),
            user: string(o.get("userId")),
            target: string(o.get("targetId")).or_else(|| string(o.get("targetUserId"))),
            object: Some(o),
        }),
        Value::String(room) => Some(Fields {
            room: Some(room.as_str()).filter(|r| !r.is_empty()),
            user: string(args.get(1)),
            ..Fields::default()
        }),
        _ => None,
    }
}

/// The command an event asks for. `event` is one of [`EVENTS`].
///
/// # Errors
/// A payload that does not say what the event needs.
pub fn decode(event: &str, args: &[Value]) -> Result<Command, CommandError> {
    match event {
        "join-room" => {
            let f = fields(args).ok_or_else(|| {
                CommandError::BadPayload("join-room needs {roomId, userId}".into())
            })?;
            let (Some(room), Some(user)) = (f.room, f.user) else {
                return Err(CommandError::MissingFields(
                    "join-room needs roomId and userId",
                ));
            };
            Ok(Command::Join(Join {
                room: Some(RoomId::new(room)),
                peer: PeerChoice::Named(PeerId::new(user)),
                claim: Claim::None,
                mode: JoinMode::Existing,
                name: None,
                create: Default::default(),
                scope: Scope::Many {
                    max: MAX_ROOMS_PER_SOCKET,
                },
                rejoin: true,
            }))
        }
        // Unknown rooms, rooms this socket is not in and unreadable payloads are ignored, as
        // in the original. Only the socket's own membership is removed, whatever `userId` says.
        "leave-room" => Ok(match fields(args).and_then(|f| f.room) {
            Some(room) => Command::Leave(Leave {
                room: Some(RoomId::new(room)),
                claim: Claim::None,
                quiet: true,
            }),
            None => Command::Ignore,
        }),
        "offer" | "answer" | "ice-candidate" => {
            let kind = match event {
                "offer" => SignalKind::Offer,
                "answer" => SignalKind::Answer,
                _ => SignalKind::Candidate,
            };
            let key = body_key(&kind).expect("offer, answer and candidate have body keys");
            let usage =
                || CommandError::BadPayload(format!("Expected {{roomId, targetUserId?, {key}}}"));
            let f = fields(args).ok_or_else(usage)?;
            let body = f.object.and_then(|o| o.get(key)).ok_or_else(usage)?;
            let payload = serde_json::to_vec(body).map_err(|_| usage())?;
            Ok(Command::Relay(Relay {
                room: f.room.map(RoomId::new),
                target: f
                    .target
                    .map_or(Target::Room, |t| Target::Peer(PeerId::new(t))),
                kind,
                payload: payload.into(),
                claim: Claim::None,
            }))
        }
        other => Err(CommandError::UnknownType(truncate(other).to_owned())),
    }
}

/// A signal kind's event name.
fn event_name(kind: &SignalKind) -> Cow<'static, str> {
    match kind {
        SignalKind::Offer => Cow::Borrowed("offer"),
        SignalKind::Answer => Cow::Borrowed("answer"),
        SignalKind::Candidate => Cow::Borrowed("ice-candidate"),
        other => super::kind_name(other),
    }
}

/// The events a core event becomes for this socket.
pub fn encode_event(env: &Envelope, out: &mut Vec<Emit>) {
    match &env.event {
        Event::Joined { room, me, .. } => {
            let participants: Vec<&str> = room
                .members
                .iter()
                .filter(|m| &m.id != me)
                .map(|m| m.id.as_str())
                .collect();
            let data = json!({ "participants": participants, "roomId": room.id.as_str() });
            // The seed's name and the original server's name, both.
            out.push(("room-users".into(), data.clone().into()));
            out.push(("room-participants".into(), data.into()));
        }
        Event::PeerJoined { room, peer } => out.push((
            "user-joined".into(),
            json!({ "userId": peer.id.as_str(), "roomId": room.as_str() }).into(),
        )),
        Event::PeerLeft { room, peer } => out.push((
            "user-left".into(),
            json!({ "userId": peer.as_str(), "roomId": room.as_str() }).into(),
        )),
        Event::Signal(sig) => out.push((event_name(&sig.kind), signal_arg(sig))),
        Event::RoomClosed { room, reason } => {
            let why = match reason {
                RoomClosedReason::Inactive => "Room closed for inactivity",
                RoomClosedReason::Deleted => "Room deleted",
            };
            out.push((
                "error".into(),
                json!({ "message": why, "roomId": room.as_str() }).into(),
            ));
        }
    }
}

/// A reply in this dialect: Socket.io's original answered nothing but events.
pub fn encode_reply(_reply: &Reply) -> Option<Emit> {
    None
}

/// A refusal as an `error {message}` event, with the original's wording where it had one.
pub fn encode_error(e: &CommandError) -> Emit {
    let message: Cow<'_, str> = match e {
        CommandError::NotInRoom(Some(r)) => {
            format!("Not in room {}: join-room first", truncate(r.as_str())).into()
        }
        CommandError::NotInRoom(None) => "Not in a room: join-room first".into(),
        CommandError::PeerNotFound(p) => {
            format!("User {} not found in room", truncate(p.as_str())).into()
        }
        CommandError::TooManyRoomsPerConnection(n) => {
            format!("A socket may be in at most {n} rooms").into()
        }
        other => other.to_string().into(),
    };
    ("error".into(), json!({ "message": message }).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_room_takes_positional_and_object_payloads() {
        for args in [
            vec![json!("r"), json!("u")],
            vec![json!({"roomId":"r","userId":"u"})],
        ] {
            let Ok(Command::Join(j)) = decode("join-room", &args) else {
                panic!("{args:?}")
            };
            assert_eq!(j.room, Some(RoomId::new("r")));
            assert_eq!(j.peer, PeerChoice::Named("u".into()));
            assert_eq!(j.mode, JoinMode::Existing);
        }
        assert_eq!(
            decode("join-room", &[json!({"roomId":"r"})]).unwrap_err(),
            CommandError::MissingFields("join-room needs roomId and userId")
        );
        assert!(matches!(
            decode("join-room", &[]),
            Err(CommandError::BadPayload(_))
        ));
    }

    #[test]
    fn signals_need_their_body_and_target_whoever_is_named() {
        let Ok(Command::Relay(r)) = decode(
            "offer",
            &[json!({"roomId":"r","targetUserId":"b","offer":{"sdp":"x"}})],
        ) else {
            panic!()
        };
        assert_eq!(r.target, Target::Peer("b".into()));
        assert_eq!(r.payload, r#"{"sdp":"x"}"#);
        assert_eq!(
            decode("answer", &[json!({"roomId":"r"})]).unwrap_err(),
            CommandError::BadPayload("Expected {roomId, targetUserId?, answer}".into())
        );
        assert!(matches!(
            decode("leave-room", &[json!(7)]),
            Ok(Command::Ignore)
        ));
    }

    #[test]
    fn a_signal_from_octatecode_arrives_in_socketio_shapes() {
        let env = Envelope::new(Event::Signal(switchboard_core::Signal {
            room: "r".into(),
            from: "oc".into(),
            to: Some("sio".into()),
            kind: SignalKind::Answer,
            payload: bytes::Bytes::from_static(br#"{"answer":{"sdp":"y"}}"#),
            origin: tags::OCTATE,
            audience: 2,
        }));
        let mut out = Vec::new();
        encode_event(&env, &mut out);
        assert_eq!(
            out,
            vec![(
                Cow::Borrowed("answer"),
                Arg::Raw(
                    RawValue::from_string(
                        r#"{"userId":"oc","targetUserId":"sio","roomId":"r","answer":{"sdp":"y"}}"#
                            .into()
                    )
                    .unwrap()
                )
            )]
        );
    }
}
