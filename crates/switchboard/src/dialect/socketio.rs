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
use serde_json::{Value, json};
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
struct Fields<'a> {
    room: Option<&'a str>,
    user: Option<&'a str>,
}

fn string(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Reads `{roomId, userId, …}` or positional `(roomId, userId)`.
fn fields(args: &[Value]) -> Option<Fields<'_>> {
    match args.first()? {
        Value::Object(o) => Some(Fields {
            room: string(o.get("roomId")),
            user: string(o.get("userId")),
        }),
        Value::String(room) => Some(Fields {
            room: Some(room.as_str()).filter(|r| !r.is_empty()),
            user: string(args.get(1)),
        }),
        _ => None,
    }
}

/// A signal event's first argument, `{roomId, targetId|targetUserId, <key>, …}`, read
/// without building a tree: strings where they are strings, the body as the raw JSON it came
/// as (relayed byte for byte), everything else skipped. A repeated key counts last, as in a
/// parsed object.
#[derive(Default)]
struct SignalArg<'a> {
    room: Option<Cow<'a, str>>,
    target_id: Option<Cow<'a, str>>,
    target_user_id: Option<Cow<'a, str>>,
    body: Option<&'a RawValue>,
}

impl<'a> SignalArg<'a> {
    /// Reads `raw` (the event's first argument) for the body under `key`; `None` when it is
    /// not an object.
    fn read(raw: &'a RawValue, key: &str) -> Option<Self> {
        use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
        struct Seed<'k>(&'k str);
        impl<'de> DeserializeSeed<'de> for Seed<'_> {
            type Value = SignalArg<'de>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for Seed<'_> {
            type Value = SignalArg<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = SignalArg::default();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    match &*k {
                        "roomId" => out.room = text(map.next_value()?),
                        "targetId" => out.target_id = text(map.next_value()?),
                        "targetUserId" => out.target_user_id = text(map.next_value()?),
                        k if k == self.0 => out.body = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        /// A non-empty string, else nothing (as [`string`] reads a parsed value).
        fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
            let t: Cow<'_, str> = match serde_json::from_str::<&str>(raw.get()) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(serde_json::from_str::<String>(raw.get()).ok()?),
            };
            (!t.is_empty()).then_some(t)
        }
        Seed(key)
            .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
            .ok()
    }
}

/// The parsed form of every argument (the events other than signals are small).
fn values(args: &[Box<RawValue>]) -> Vec<Value> {
    args.iter()
        .map(|a| serde_json::from_str(a.get()).unwrap_or(Value::Null))
        .collect()
}

/// The command an event asks for. `event` is one of [`EVENTS`]; `args` are its arguments as
/// the client sent them.
///
/// # Errors
/// A payload that does not say what the event needs.
pub fn decode(event: &str, args: &[Box<RawValue>]) -> Result<Command, CommandError> {
    match event {
        "offer" | "answer" | "ice-candidate" => decode_signal(event, args),
        _ => decode_values(event, &values(args)),
    }
}

/// A signal event: its body is relayed as the bytes it came as.
fn decode_signal(event: &str, args: &[Box<RawValue>]) -> Result<Command, CommandError> {
    let kind = match event {
        "offer" => SignalKind::Offer,
        "answer" => SignalKind::Answer,
        _ => SignalKind::Candidate,
    };
    let key = body_key(&kind).expect("offer, answer and candidate have body keys");
    let usage = || CommandError::BadPayload(format!("Expected {{roomId, targetUserId?, {key}}}"));
    let arg = args
        .first()
        .and_then(|a| SignalArg::read(a, key))
        .ok_or_else(usage)?;
    let body = arg.body.ok_or_else(usage)?;
    Ok(Command::Relay(Relay {
        room: arg.room.as_deref().map(RoomId::new),
        target: arg
            .target_id
            .or(arg.target_user_id)
            .map_or(Target::Room, |t| Target::Peer(PeerId::new(&t))),
        kind,
        payload: bytes::Bytes::copy_from_slice(body.get().as_bytes()),
        claim: Claim::None,
    }))
}

/// The events whose arguments are read as parsed values.
fn decode_values(event: &str, args: &[Value]) -> Result<Command, CommandError> {
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

    /// Arguments as the transport hands them over: raw JSON.
    fn raw(args: &[Value]) -> Vec<Box<RawValue>> {
        args.iter()
            .map(|a| serde_json::value::to_raw_value(a).unwrap())
            .collect()
    }

    fn decode(event: &str, args: &[Value]) -> Result<Command, CommandError> {
        super::decode(event, &raw(args))
    }

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
    fn a_signal_body_is_relayed_as_it_came_and_its_fields_read_as_a_parsed_object_would() {
        let decode_text = |text: &str| {
            let args = vec![RawValue::from_string(text.into()).unwrap()];
            super::decode("offer", &args)
        };
        // Byte for byte, spacing and escapes included.
        let body = r#"{ "type" : "offer", "sdp" : "v=0\r\n\u00e9" }"#;
        let Ok(Command::Relay(r)) = decode_text(&format!(
            r#"{{"roomId":"r","offer":{body},"extra":[1,{{"a":2}}]}}"#
        )) else {
            panic!()
        };
        assert_eq!(r.payload, body);
        assert_eq!(r.room, Some(RoomId::new("r")));
        assert_eq!(r.target, Target::Room);
        // A repeated key counts last; targetId before targetUserId; escaped ids are read.
        let Ok(Command::Relay(r)) = decode_text(
            r#"{"roomId":"a","roomId":"b","targetUserId":"u","targetId":"t\u0031","offer":null}"#,
        ) else {
            panic!()
        };
        assert_eq!(r.room, Some(RoomId::new("b")));
        assert_eq!(r.target, Target::Peer("t1".into()));
        assert_eq!(r.payload, "null");
        // Empty or non-string ids count as absent, as they did.
        let Ok(Command::Relay(r)) = decode_text(r#"{"roomId":"","targetId":7,"offer":{}}"#) else {
            panic!()
        };
        assert_eq!((r.room, r.target), (None, Target::Room));
        // Not an object, or no body: the usage error.
        for text in [r#""r""#, "[1]", r#"{"roomId":"r"}"#] {
            assert_eq!(
                decode_text(text).unwrap_err(),
                CommandError::BadPayload("Expected {roomId, targetUserId?, offer}".into()),
                "{text}"
            );
        }
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
