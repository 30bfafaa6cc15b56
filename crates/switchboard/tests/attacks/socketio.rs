//! Socket.io (Engine.IO v4 over WebSocket on `SOCKETIO_PORT`): its payload attacks, each
//! with the one answer the server gives, and how this dialect authenticates, creates rooms
//! and is squatted.
//!
//! The attacker has joined a room alone. A packet that is not a well-formed event ends the
//! transport (socketioxide's parser): Engine.IO's close packet, then a close frame. An event's refusal is an `error {message}` event. A
//! signal whose `roomId` is not a string reads as one without a room, which means the
//! socket's only room, and is relayed to its other members: nobody, so nothing comes back.
//! Socket.io has no `MAX_FRAME_BYTES` refusal of its own (only the hard cap, which ends the
//! transport), so a 70 KB signal is relayed like any other.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use crate::auth::{Refused, first_step, upgraded};
use crate::cases::{Case, Expect, case, deep, error, frame_cases, string_of};
use crate::conn::{Conn, Dialect::SocketIo, next_ip, uuid_like};
use crate::support::{TestServer, http, http_from};

/// A packet that is not a well-formed event: Engine.IO's close packet, then a close frame
/// without a code.
fn closed() -> Expect {
    Expect::CloseAfter(&["1"], 1005)
}

/// An offer routed by `room`.
fn to(room: &str) -> String {
    format!(r#"42["offer",{{"roomId":{room},"offer":{{}}}}]"#)
}

/// A candidate relaying `body` to the socket's only room, where nobody else is.
pub fn relaying(body: &str) -> String {
    format!(r#"42["ice-candidate",{{"candidate":{body}}}]"#)
}

/// The refusal of a signal to a room the socket is not in (the id cut to 64 characters).
fn not_in_room(id: &str) -> Expect {
    let id: String = id.chars().take(64).collect();
    error(format!("Not in room {id}: join-room first"))
}

pub fn payload_cases() -> Vec<Case> {
    frame_cases(
        SocketIo,
        vec![
            ("not JSON", "42{{{".into(), closed()),
            (
                "truncated JSON",
                r#"42["offer",{"roomId":"#.into(),
                closed(),
            ),
            (
                "JSON nested 10,000 deep in a relayed body",
                relaying(&deep(10_000)),
                Expect::Silent,
            ),
            (
                "JSON nested 10,000 deep at the top",
                format!("42{}", deep(10_000)),
                closed(),
            ),
            ("a top-level array", "42[]".into(), closed()),
            ("a bare string", r#"42"offer""#.into(), closed()),
            ("null", "42null".into(), closed()),
            ("no type", r#"42[{"roomId":"r"}]"#.into(), closed()),
            ("a number for the type", "42[7,{}]".into(), closed()),
            // An event nobody listens for, as in the original.
            (
                "an unknown type",
                r#"42["launch-missiles",{}]"#.into(),
                Expect::Silent,
            ),
            (
                "a 10 KB type",
                format!("42[{},{{}}]", string_of("t", 10_000)),
                Expect::Silent,
            ),
            // The last roomId counts, as in a parsed object.
            (
                "duplicate type keys",
                r#"42["offer",{"roomId":"a","roomId":"b","offer":{}}]"#.into(),
                not_in_room("b"),
            ),
            ("a number where an id belongs", to("12345"), Expect::Silent),
            (
                "an object where an id belongs",
                to(r#"{"$ne":null}"#),
                Expect::Silent,
            ),
            (
                "a 60 KB string in an id field",
                to(&string_of("i", 60_000)),
                not_in_room(&"i".repeat(60_000)),
            ),
            (
                "control characters in an id",
                to(r#""a\u0000b\n\u001bc""#),
                not_in_room("a\u{0}b\n\u{1b}c"),
            ),
            (
                "10 KB of Unicode in an id",
                to(&string_of("é🦀", 2_000)),
                not_in_room(&"é🦀".repeat(2_000)),
            ),
            (
                "a lone surrogate escape",
                relaying(r#""\ud800""#),
                Expect::Silent,
            ),
            (
                "a number too large for any integer",
                relaying(&format!("1{}", "0".repeat(400))),
                Expect::Silent,
            ),
        ],
    )
}

/// A socket of `ip` connected to the namespace (no token), or how admission refused it:
/// the upgrade's status, or the `connect_error` packet.
pub async fn admitted(s: &TestServer, ip: IpAddr) -> Result<Conn, String> {
    let (status, mut c) = Conn::upgrade_from(ip, s, SocketIo, "", "").await;
    if status != 101 {
        return Err(status.to_string());
    }
    let ack = c.sio_connect("").await.unwrap_or_default();
    if ack.starts_with("40{") {
        Ok(c)
    } else {
        Err(ack)
    }
}

/// How a socket upgraded with `query` and connecting with `auth` (a JSON object, or empty)
/// is refused for `room` in production: at the namespace connect, or at `join-room` (the
/// token's room decides what it may join); `None` when it joins.
pub async fn refusal(s: &TestServer, room: &str, query: &str, auth: &str) -> Option<Refused> {
    let mut c = match upgraded(s, SocketIo, room, query).await {
        Ok(c) => c,
        Err(r) => return Some(r),
    };
    let ack = c.sio_connect(auth).await.unwrap_or_default();
    if let Some(refusal) = ack.strip_prefix("44") {
        let message: Value = serde_json::from_str(refusal).unwrap_or_default();
        return Some(Refused::Connect(
            message["message"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    if !ack.starts_with("40") {
        return Some(Refused::Other(ack));
    }
    // Connected: the room exists, made as an admin makes a Socket.io room in production.
    let _ = s
        .app
        .membership
        .create_room(
            switchboard_core::RoomId::new(room),
            switchboard_core::CreateOptions {
                secured: true,
                ..Default::default()
            },
        )
        .await;
    c.text(&format!(r#"42["join-room","{room}","me"]"#)).await;
    let seen = c.seen(Duration::from_millis(500)).await;
    let joined = seen.texts.iter().any(|t| t.contains("room-participants"));
    (!joined).then(|| first_step(&seen))
}

/// Creates one room from `ip` (`POST /api/rooms`); false when refused.
pub async fn create_room(s: &TestServer, ip: IpAddr) -> bool {
    let (status, _) = http_from(ip, "POST", s.socketio, "/api/rooms", None, &[]).await;
    status == 200
}

/// Whether a second socket joining a room as "holder", the name another socket holds
/// there, is refused while both the holder and an unrelated member stay.
pub async fn squat(s: &TestServer) -> bool {
    let mut a = Conn::open(s, SocketIo, "").await;
    let (_, body) = http("POST", s.socketio, "/api/rooms", None, &[]).await;
    let room = body["roomId"].as_str().unwrap().to_owned();
    let join = format!(r#"42["join-room","{room}","holder"]"#);
    let mut h = admitted(s, next_ip()).await.expect("the holder connects");
    h.text(&join).await;
    h.seen(Duration::from_millis(200)).await;
    let mut b = admitted(s, next_ip()).await.expect("squatter connects");
    b.text(&join).await;
    let seen = b.seen(Duration::from_millis(300)).await;
    seen.error_codes()
        .iter()
        .any(|m| m == "User holder is already in this room on another connection")
        && h.alive().await
        && a.alive().await
}

/// Joining a guessed room id: not found, and no room is created.
pub fn guessed_room_case() -> Case {
    case(SocketIo, "joining a guessed room id", |s| {
        Box::pin(async move {
            let before = s.dev.app.registry.stats_now().rooms;
            let mut c = admitted(&s.dev, next_ip()).await.expect("connects");
            let guess = uuid_like();
            c.text(&format!(r#"42["join-room","{guess}","me"]"#)).await;
            let found = c
                .seen(Duration::from_millis(300))
                .await
                .error_codes()
                .iter()
                .any(|m| m == "Room not found");
            let after = s.dev.app.registry.stats_now().rooms;
            if found && after == before {
                Ok(())
            } else {
                Err(format!(
                    "socketio: joining a guessed room id: told {found}, rooms {before} -> {after}"
                ))
            }
        })
    })
}
