//! y-webrtc (`/y-webrtc`): its payload attacks, each with the one answer the server gives,
//! and how this dialect authenticates and creates rooms (topics).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::auth::{Refused, first_step, upgraded};
use crate::cases::{Case, Expect, deep, error, frame_cases, string_of};
use crate::conn::{Conn, Dialect::YWebrtc, error_code};
use crate::support::TestServer;

/// A publish routed by `topic`.
fn to(topic: &str) -> String {
    format!(r#"{{"type":"publish","topic":{topic},"data":{{}}}}"#)
}

/// A publish relaying `body` to the attacker's topic "t", where nobody else is.
pub fn relaying(body: &str) -> String {
    format!(r#"{{"type":"publish","topic":"t","data":{body}}}"#)
}

/// Malformed and mistyped input gets an error frame and the connection stays. What parses
/// as JSON but not as a message (`{"type": <string>, …}`, a topic that is a string) is
/// `bad_message`; what does not parse is `bad_json`. A publish to a topic the connection
/// has not subscribed to is `not_subscribed`. A published body is passed on unparsed.
pub fn payload_cases() -> Vec<Case> {
    let (bad, unsubscribed) = ("bad_message", "not_subscribed");
    frame_cases(
        YWebrtc,
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
                error(unsubscribed),
            ),
            (
                "control characters in an id",
                to(r#""a\u0000b\n\u001bc""#),
                error(unsubscribed),
            ),
            (
                "10 KB of Unicode in an id",
                to(&string_of("é🦀", 2_000)),
                error(unsubscribed),
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

/// A subscription to `topic` followed by a ping.
async fn subscribe(c: &mut Conn, topic: &str) {
    c.text(&json!({"type":"subscribe","topics":[topic]}).to_string())
        .await;
    c.text(r#"{"type":"ping"}"#).await;
}

/// How a connection upgraded with `query` (the token's place) is refused for `room` in
/// production: at the upgrade, or at the subscription; `None` when it subscribes.
pub async fn refusal(s: &TestServer, room: &str, query: &str) -> Option<Refused> {
    let mut c = match upgraded(s, YWebrtc, room, query).await {
        Ok(c) => c,
        Err(r) => return Some(r),
    };
    subscribe(&mut c, room).await;
    let seen = c.seen(Duration::from_millis(500)).await;
    let subscribed = seen.error_codes().is_empty() && !seen.ended;
    (!subscribed).then(|| first_step(&seen))
}

/// Creates one room (a new topic) from `ip`; false when refused. The refusal, if any,
/// comes before the pong.
pub async fn create_room(s: &TestServer, ip: IpAddr) -> bool {
    let (_, mut c) = Conn::upgrade_from(ip, s, YWebrtc, "", "").await;
    subscribe(&mut c, &crate::conn::uuid_like()).await;
    loop {
        match c.next_text(Duration::from_secs(2)).await {
            Some(t) if t.contains("pong") => return true,
            Some(t) if error_code(&t).is_some() => return false,
            Some(_) => {}
            None => return false,
        }
    }
}
