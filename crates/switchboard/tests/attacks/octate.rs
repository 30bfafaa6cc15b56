//! OctateCode (JSON over WebSocket on `SIGNALING_PORT`): its payload attacks, each with the
//! one answer the server gives, and how this dialect authenticates, creates rooms and is
//! squatted.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::auth::{Refused, first_step};
use crate::cases::{Case, Expect, case, deep, error, frame_cases, string_of};
use crate::conn::{Conn, Dialect::Octate, next_ip, uuid_like};
use crate::support::TestServer;

/// A signal routed by `target`.
fn to(target: &str) -> String {
    format!(r#"{{"type":"sdp-offer","targetUserId":{target},"data":{{}}}}"#)
}

/// A broadcast relaying `body`; nobody else is in the attacker's room.
pub fn relaying(body: &str) -> String {
    format!(r#"{{"type":"presence","data":{body}}}"#)
}

/// Malformed and mistyped input gets an error frame and the connection stays. What parses
/// as JSON but not as a message (`{"type": <string>, …}`) is `bad_message`; what does not
/// parse is `bad_json`. A relayed body is passed on as the bytes it came as, unparsed.
pub fn payload_cases() -> Vec<Case> {
    let not_found = "peer_not_found";
    frame_cases(
        Octate,
        vec![
            ("not JSON", "{{{".into(), error("bad_json")),
            ("truncated JSON", r#"{"type":"#.into(), error("bad_json")),
            (
                "JSON nested 10,000 deep in a relayed body",
                relaying(&deep(10_000)),
                Expect::Silent,
            ),
            (
                "JSON nested 10,000 deep at the top",
                deep(10_000),
                error("bad_message"),
            ),
            ("a top-level array", "[1,2,3]".into(), error("bad_message")),
            ("a bare string", r#""offer""#.into(), error("bad_message")),
            ("null", "null".into(), error("bad_message")),
            ("no type", r#"{"roomId":"r"}"#.into(), error("missing_type")),
            (
                "a number for the type",
                r#"{"type":7}"#.into(),
                error("bad_message"),
            ),
            (
                "an unknown type",
                r#"{"type":"launch-missiles"}"#.into(),
                error("unknown_type"),
            ),
            (
                "a 10 KB type",
                format!(r#"{{"type":{}}}"#, string_of("t", 10_000)),
                error("unknown_type"),
            ),
            // serde refuses a repeated field.
            (
                "duplicate type keys",
                r#"{"type":"ping","type":"launch"}"#.into(),
                error("bad_message"),
            ),
            (
                "a number where an id belongs",
                to("12345"),
                error("bad_message"),
            ),
            (
                "an object where an id belongs",
                to(r#"{"$ne":null}"#),
                error("bad_message"),
            ),
            (
                "a 60 KB string in an id field",
                to(&string_of("i", 60_000)),
                error(not_found),
            ),
            (
                "control characters in an id",
                to(r#""a\u0000b\n\u001bc""#),
                error(not_found),
            ),
            (
                "10 KB of Unicode in an id",
                to(&string_of("é🦀", 2_000)),
                error(not_found),
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

/// A connection that has sent `auth` (with `data`, when given) for `room`.
async fn authenticating(s: &TestServer, ip: IpAddr, room: &str, data: Option<Value>) -> Conn {
    let (_, mut c) = Conn::upgrade_from(ip, s, Octate, room, "").await;
    let mut auth = json!({"type":"auth","userId":"me","roomId":room});
    if let Some(d) = data {
        auth["data"] = d;
    }
    c.text(&auth.to_string()).await;
    c
}

/// How `auth` for `room` with `data` (the token's place) is refused in production;
/// `None` when it is authenticated.
pub async fn refusal(s: &TestServer, room: &str, data: Option<Value>) -> Option<Refused> {
    let mut c = authenticating(s, next_ip(), room, data).await;
    let seen = c.seen(Duration::from_millis(500)).await;
    let authenticated = seen.texts.iter().any(|t| t.contains("\"authenticated\""));
    (!authenticated).then(|| first_step(&seen))
}

/// Creates one room from `ip`; false when refused.
pub async fn create_room(s: &TestServer, ip: IpAddr) -> bool {
    let room = uuid_like();
    let mut c = authenticating(s, ip, &room, None).await;
    c.expect_type("auth").await;
    c.text(&json!({"type":"create-room","roomId":room}).to_string())
        .await;
    c.next_text(Duration::from_secs(2))
        .await
        .is_some_and(|t| t.contains("room-created"))
}

/// Whether a second connection joining as "me" in the room "me" holds is refused
/// (`peer_id_taken`, as in rendezvous and docs/PROTOCOL.md) while
/// the holder stays.
pub async fn squat(s: &TestServer) -> bool {
    let mut a = Conn::open(s, Octate, "").await;
    let target = a.room.clone();
    let mut b = authenticating(s, next_ip(), &target, None).await;
    b.expect_type("auth").await;
    b.text(&json!({"type":"join-room","roomId":target}).to_string())
        .await;
    let refused = b
        .seen(Duration::from_millis(300))
        .await
        .error_codes()
        .iter()
        .any(|c| c == "peer_id_taken");
    refused && a.alive().await
}

/// Joining a guessed room id: not found, and no room is created.
pub fn guessed_room_case() -> Case {
    case(Octate, "joining a guessed room id", |s| {
        Box::pin(async move {
            let before = s.dev.app.registry.stats_now().rooms;
            let guess = uuid_like();
            let mut c = authenticating(&s.dev, next_ip(), &guess, None).await;
            c.expect_type("auth").await;
            c.text(&json!({"type":"join-room","roomId":guess}).to_string())
                .await;
            let found = c
                .seen(Duration::from_millis(300))
                .await
                .error_codes()
                .iter()
                .any(|m| m == "room_not_found");
            let after = s.dev.app.registry.stats_now().rooms;
            if found && after == before {
                Ok(())
            } else {
                Err(format!(
                    "octate: joining a guessed room id: told {found}, rooms {before} -> {after}"
                ))
            }
        })
    })
}
