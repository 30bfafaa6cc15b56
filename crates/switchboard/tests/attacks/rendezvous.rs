//! Rendezvous (`/ws?room=`): its payload attacks, each with the one answer the server
//! gives, and how this dialect authenticates, creates rooms and is squatted.

use std::net::IpAddr;
use std::time::Duration;

use crate::auth::{Refused, first_step, upgraded};
use crate::cases::{Case, Expect, case, deep, error, frame_cases, string_of};
use crate::conn::{Conn, Dialect::Rendezvous, next_ip, uuid_like};
use crate::support::TestServer;
use crate::support::process::RawWs;

/// A signal routed by `to`.
fn to(peer: &str) -> String {
    format!(r#"{{"type":"signal","to":{peer},"data":{{}}}}"#)
}

/// A signal to every other member (there are none) relaying `body`.
pub fn relaying(body: &str) -> String {
    format!(r#"{{"type":"signal","data":{body}}}"#)
}

/// Whatever does not read as `{"type": <string>, …}` is `bad_json` in this dialect (the
/// seed's one code for an unreadable message); a missing type is `missing_type`. A signal's
/// body is relayed as the bytes it came as, unparsed.
pub fn payload_cases() -> Vec<Case> {
    let (bad, not_found) = ("bad_json", "peer_not_found");
    frame_cases(
        Rendezvous,
        vec![
            ("not JSON", "{{{".into(), error(bad)),
            ("truncated JSON", r#"{"type":"#.into(), error(bad)),
            (
                "JSON nested 10,000 deep in a relayed body",
                relaying(&deep(10_000)),
                Expect::Silent,
            ),
            (
                "JSON nested 10,000 deep at the top",
                deep(10_000),
                error(bad),
            ),
            ("a top-level array", "[1,2,3]".into(), error(bad)),
            ("a bare string", r#""offer""#.into(), error(bad)),
            ("null", "null".into(), error(bad)),
            ("no type", r#"{"roomId":"r"}"#.into(), error("missing_type")),
            ("a number for the type", r#"{"type":7}"#.into(), error(bad)),
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
                error(bad),
            ),
            ("a number where an id belongs", to("12345"), error(bad)),
            (
                "an object where an id belongs",
                to(r#"{"$ne":null}"#),
                error(bad),
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

/// How a connection upgraded with `query` (the token's place) is refused for `room` in
/// production: at the upgrade, or at `join`; `None` when it joins.
pub async fn refusal(s: &TestServer, room: &str, query: &str) -> Option<Refused> {
    let mut c = match upgraded(s, Rendezvous, room, query).await {
        Ok(c) => c,
        Err(r) => return Some(r),
    };
    c.text(r#"{"type":"join"}"#).await;
    let seen = c.seen(Duration::from_millis(500)).await;
    let joined = seen.texts.iter().any(|t| t.contains("\"ready\""));
    (!joined).then(|| first_step(&seen))
}

/// Creates one room from `ip` (a `join` of a new room); false when refused.
pub async fn create_room(s: &TestServer, ip: IpAddr) -> bool {
    let (_, mut c) = Conn::upgrade_from(ip, s, Rendezvous, &uuid_like(), "").await;
    c.text(r#"{"type":"join"}"#).await;
    c.next_text(Duration::from_secs(2))
        .await
        .is_some_and(|t| t.contains("ready"))
}

/// Whether a second connection joining a room as "holder", whom the room has, is
/// refused while the holder stays.
pub async fn squat(s: &TestServer) -> bool {
    let room = uuid_like();
    let (_, mut a) = Conn::upgrade(s, Rendezvous, &room, "").await;
    a.text(r#"{"type":"join","peerId":"holder"}"#).await;
    a.expect_type("ready").await;
    let (_, mut b) = Conn::upgrade(s, Rendezvous, &room, "").await;
    b.text(r#"{"type":"join","peerId":"holder"}"#).await;
    let seen = b.seen(Duration::from_millis(500)).await;
    seen.error_codes().iter().any(|c| c == "peer_id_taken") && a.alive().await
}

/// The default `MAX_CONNECTIONS_PER_IP` (1,000) holds against a crowd of 1,001 from one
/// address: the 1,001st upgrade gets 429. The crowd never joins, so it runs on the server
/// whose `AUTH_TIMEOUT` outlasts the count.
pub fn crowd_case() -> Case {
    case(
        Rendezvous,
        "1,001 connections from one address (default limit)",
        |s| {
            Box::pin(async move {
                let ip = next_ip();
                let mut held = Vec::new();
                let mut refused = None;
                for i in 0..1_001 {
                    let (status, ws) =
                        RawWs::open(ip, s.crowd.http, &format!("/ws?room=crowd-{i}")).await;
                    if status != 101 {
                        refused = Some((i, status));
                        break;
                    }
                    held.push(ws);
                }
                // The case ends when the crowd has gone, so that the bystanders measured
                // next do not share the CPU with a thousand closing sockets.
                drop(held);
                let gone = tokio::time::Instant::now() + Duration::from_secs(10);
                while s.crowd.app.admission.open_connections() > 0
                    && tokio::time::Instant::now() < gone
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                match refused {
                    Some((1_000, 429)) => Ok(()),
                    Some((i, status)) => Err(format!("refused at {i} with {status}")),
                    None => Err("all 1,001 admitted".into()),
                }
            })
        },
    )
}
