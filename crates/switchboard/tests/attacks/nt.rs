//! nt (`/ws?appID=&side=`): its payload attacks, each with the one answer the server
//! gives, and how this dialect authenticates, creates rooms and is squatted.
//!
//! nt, as the original, answers nothing to a message it cannot use: the attacker (side A,
//! its room full) receives nothing, and side B still gets what A relays next. What A relays
//! (an `offer`'s `sdp`) reaches B as it came.

use std::net::IpAddr;
use std::time::Duration;

use crate::auth::{Refused, upgraded};
use crate::cases::{Case, Expect, deep, frame_cases, string_of};
use crate::conn::{Conn, Dialect::Nt, next_ip, uuid_like};
use crate::support::TestServer;
use crate::support::process::RawWs;

/// A mailbox item routed by `to`.
fn to(side: &str) -> String {
    format!(r#"{{"type":"send","to":{side},"payload":"x"}}"#)
}

/// An offer relaying `sdp` to side B.
pub fn relaying(sdp: &str) -> String {
    format!(r#"{{"type":"offer","sdp":{sdp}}}"#)
}

pub fn payload_cases() -> Vec<Case> {
    let silent = || Expect::Silent;
    frame_cases(
        Nt,
        vec![
            ("not JSON", "{{{".into(), silent()),
            ("truncated JSON", r#"{"type":"#.into(), silent()),
            (
                "JSON nested 10,000 deep in a relayed body",
                relaying(&deep(10_000)),
                silent(),
            ),
            ("JSON nested 10,000 deep at the top", deep(10_000), silent()),
            ("a top-level array", "[1,2,3]".into(), silent()),
            ("a bare string", r#""offer""#.into(), silent()),
            ("null", "null".into(), silent()),
            ("no type", r#"{"roomId":"r"}"#.into(), silent()),
            ("a number for the type", r#"{"type":7}"#.into(), silent()),
            (
                "an unknown type",
                r#"{"type":"launch-missiles"}"#.into(),
                silent(),
            ),
            (
                "a 10 KB type",
                format!(r#"{{"type":{}}}"#, string_of("t", 10_000)),
                silent(),
            ),
            (
                "duplicate type keys",
                r#"{"type":"ping","type":"launch"}"#.into(),
                silent(),
            ),
            ("a number where an id belongs", to("12345"), silent()),
            (
                "an object where an id belongs",
                to(r#"{"$ne":null}"#),
                silent(),
            ),
            (
                "a 60 KB string in an id field",
                to(&string_of("i", 60_000)),
                silent(),
            ),
            (
                "control characters in an id",
                to(r#""a\u0000b\n\u001bc""#),
                silent(),
            ),
            (
                "10 KB of Unicode in an id",
                to(&string_of("é🦀", 2_000)),
                silent(),
            ),
            ("a lone surrogate escape", relaying(r#""\ud800""#), silent()),
            (
                "a number too large for any integer",
                relaying(&format!("1{}", "0".repeat(400))),
                silent(),
            ),
        ],
    )
}

/// How a connection upgraded with `query` (the token's place) is refused for `room` in
/// production: at the upgrade, or by a close soon after (nt joins on open); `None` when it
/// stays.
pub async fn refusal(s: &TestServer, room: &str, query: &str) -> Option<Refused> {
    let mut c = match upgraded(s, Nt, room, query).await {
        Ok(c) => c,
        Err(r) => return Some(r),
    };
    let seen = c.seen(Duration::from_millis(500)).await;
    seen.ended.then(|| Refused::Other(format!("{seen:?}")))
}

/// How many of 70 new rooms opened from `ip` at once were created: nt joins on open and
/// says nothing when it succeeds, so open them all, then count the ones closed with 1013.
pub async fn rooms_made(s: &TestServer, ip: IpAddr) -> usize {
    let mut conns = Vec::new();
    for _ in 0..70 {
        conns.push(Conn::upgrade_from(ip, s, Nt, &uuid_like(), "").await.1);
    }
    let mut refused = 0;
    for c in &mut conns {
        let seen = c.seen(Duration::from_millis(20)).await;
        if seen.close.is_some_and(|(code, _)| code == 1013) {
            refused += 1;
        }
    }
    70 - refused
}

/// Whether a third connection to a full room, as side B again, is closed (1008 `side B busy`)
/// while side A still relays to the real side B.
pub async fn squat(s: &TestServer) -> bool {
    let mut a = Conn::open(s, Nt, "").await;
    let (_, ws) = RawWs::open(next_ip(), s.http, &a.partner_path()).await;
    let mut third = Conn::wrap(Nt, ws);
    let seen = third.seen(Duration::from_millis(500)).await;
    seen.close
        .as_ref()
        .is_some_and(|(c, r)| *c == 1008 && r == "side B busy")
        && a.alive().await
}
