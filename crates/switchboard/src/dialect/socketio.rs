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

use serde_json::{Map, Value, json};
use switchboard_core::{
    DialectTag, Envelope, Event, JoinMode, PeerId, RoomClosedReason, RoomId, SignalKind, Target,
};

use super::{body_key, signal_body, tags};
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
pub type Emit = (Cow<'static, str>, Value);

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
            out.push(("room-users".into(), data.clone()));
            out.push(("room-participants".into(), data));
        }
        Event::PeerJoined { room, peer } => out.push((
            "user-joined".into(),
            json!({ "userId": peer.id.as_str(), "roomId": room.as_str() }),
        )),
        Event::PeerLeft { room, peer } => out.push((
            "user-left".into(),
            json!({ "userId": peer.as_str(), "roomId": room.as_str() }),
        )),
        Event::Signal(sig) => {
            let body: Value = serde_json::from_slice(&signal_body(sig)).unwrap_or(Value::Null);
            let mut data = Map::new();
            data.insert("userId".into(), Value::String(sig.from.as_str().into()));
            if let Some(to) = &sig.to {
                data.insert("targetUserId".into(), Value::String(to.as_str().into()));
            }
            data.insert("roomId".into(), Value::String(sig.room.as_str().into()));
            data.insert(body_key(&sig.kind).unwrap_or("data").into(), body);
            out.push((event_name(&sig.kind), Value::Object(data)));
        }
        Event::RoomClosed { room, reason } => {
            let why = match reason {
                RoomClosedReason::Inactive => "Room closed for inactivity",
                RoomClosedReason::Deleted => "Room deleted",
            };
            out.push((
                "error".into(),
                json!({ "message": why, "roomId": room.as_str() }),
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
    ("error".into(), json!({ "message": message }))
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
                json!({"userId":"oc","targetUserId":"sio","roomId":"r","answer":{"sdp":"y"}})
            )]
        );
    }
}
