//! Token and origin attacks on the production server, in every dialect.

use std::rc::Rc;

use serde_json::{Value, json};

use tokio::io::AsyncReadExt;

use crate::cases::{Case, case};
use crate::conn::{
    ALL, Conn, Dialect, Dialect::*, Seen, endpoint, next_ip, upgrade_with, uuid_like,
};
use crate::support::process::RawWs;
use crate::support::{PATIENCE, TestServer};
use crate::{nt, octate, rendezvous, socketio, ywebrtc};

/// The production server's secret (see `prod_config`).
const SECRET: &str = "a-production-secret-of-some-length";

/// Builds a token for a room.
type MakeToken = Box<dyn Fn(&str) -> String>;

/// How a connection was refused, as its client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// At the upgrade: this HTTP status and the JSON body's `code` (empty: no body).
    Upgrade(u16, String),
    /// Socket.io, at the namespace connect: `connect_error` with this message.
    Connect(String),
    /// At the first step (OctateCode `auth`, rendezvous `join`, y-webrtc `subscribe`,
    /// Socket.io `join-room`): this one error's code (Socket.io: its message).
    FirstStep(String),
    /// Anything else (a close, silence, several errors), as seen.
    Other(String),
}

/// A connection of `d` to `room` with `query`, upgraded; or how the upgrade was refused.
pub async fn upgraded(
    s: &TestServer,
    d: Dialect,
    room: &str,
    query: &str,
) -> Result<Conn, Refused> {
    let (status, mut c) = Conn::upgrade(s, d, room, query).await;
    if status == 101 {
        return Ok(c);
    }
    // The body, a JSON object, up to the end of the object or of the connection (which
    // may be kept alive).
    let mut body = Vec::new();
    let mut chunk = [0u8; 4096];
    let parsed = loop {
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            break v;
        }
        match tokio::time::timeout(PATIENCE, c.ws.tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => break Value::Null,
        }
    };
    let code = parsed["code"].as_str().unwrap_or_default().to_owned();
    Err(Refused::Upgrade(status, code))
}

/// The refusal in what a first step got: its one error (the connection still open).
pub fn first_step(seen: &Seen) -> Refused {
    match seen.error_codes().as_slice() {
        [code] if !seen.ended => Refused::FirstStep(code.clone()),
        _ => Refused::Other(format!("{seen:?}")),
    }
}

/// `token` (empty: none) where `d` carries it: the query of rendezvous, nt and y-webrtc.
fn token_query(token: &str) -> String {
    if token.is_empty() {
        String::new()
    } else {
        format!("token={token}")
    }
}

/// How a production connection of `d` to `room` with `token` (empty: none) is refused;
/// `None` when it is admitted.
async fn refusal(s: &TestServer, d: Dialect, room: &str, token: &str) -> Option<Refused> {
    match d {
        Octate => {
            let data = (!token.is_empty()).then(|| json!({ "token": token }));
            octate::refusal(s, room, data).await
        }
        SocketIo => {
            let auth = if token.is_empty() {
                String::new()
            } else {
                json!({ "token": token }).to_string()
            };
            socketio::refusal(s, room, "", &auth).await
        }
        Rendezvous => rendezvous::refusal(s, room, &token_query(token)).await,
        Nt => nt::refusal(s, room, &token_query(token)).await,
        YWebrtc => ywebrtc::refusal(s, room, &token_query(token)).await,
    }
}

/// How a connection with a valid token in a field `d` does not read is refused: as one
/// with no token.
async fn wrong_field_refusal(
    s: &TestServer,
    d: Dialect,
    room: &str,
    good: &str,
) -> Option<Refused> {
    let elsewhere = format!("access_token={good}");
    match d {
        Octate => octate::refusal(s, room, Some(json!({ "jwt": good }))).await,
        SocketIo => {
            let auth = json!({ "jwt": good }).to_string();
            socketio::refusal(s, room, &format!("token={good}"), &auth).await
        }
        Rendezvous => rendezvous::refusal(s, room, &elsewhere).await,
        Nt => nt::refusal(s, room, &elsewhere).await,
        YWebrtc => ywebrtc::refusal(s, room, &elsewhere).await,
    }
}

/// The one answer `d` gives to a token that the token check calls `code`
/// (`token_required`: no token).
fn answer(d: Dialect, token: &str, code: &str) -> Refused {
    use Refused::*;
    let oversized = token == "a 100 KB forged token";
    match d {
        // The `auth` message carrying it is over MAX_FRAME_BYTES: refused unread.
        Octate if oversized => FirstStep("frame_too_large".into()),
        Octate if code == "token_required" => FirstStep("missing_token".into()),
        Octate => FirstStep(code.into()),
        // Connected; the token's room decides what the socket may join.
        SocketIo if code == "room_mismatch" => {
            FirstStep("Not authorized for this room. Token is for room elsewhere".into())
        }
        SocketIo => Connect(
            match code {
                "token_required" => "This server requires a token: connect with auth: {token}",
                "token_expired" => "Token expired",
                "token_not_yet_valid" => "Token not yet valid",
                "bad_signature" => "Invalid token signature",
                _ => "Invalid or expired token",
            }
            .into(),
        ),
        // In the URL, 100 KB of token is over the request line's limit.
        _ if oversized => Upgrade(414, String::new()),
        // A y-webrtc room (topic) is named after the upgrade, at `subscribe`.
        YWebrtc if code == "room_mismatch" => FirstStep(code.into()),
        _ if code == "room_mismatch" => Upgrade(403, code.into()),
        _ => Upgrade(401, code.into()),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn forge(claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

/// The tokens that must not admit anyone, each with what the token check calls it.
fn bad_tokens() -> Vec<(&'static str, MakeToken, &'static str)> {
    let now = unix_now();
    let signed = |claims: fn(&str, u64) -> Value| -> MakeToken {
        Box::new(move |room| forge(&claims(room, now), SECRET.as_bytes()))
    };
    let other_key = |claims: fn(&str, u64) -> Value, key: &'static [u8]| -> MakeToken {
        Box::new(move |room| forge(&claims(room, now), key))
    };
    let fine = |room: &str, now: u64| json!({"sub":"me","room":room,"iat":now,"exp":now + 600});
    vec![
        ("no token", Box::new(|_| String::new()), "token_required"),
        (
            "an expired token",
            signed(|room, now| json!({"sub":"me","room":room,"iat":now - 7200,"exp":now - 3600})),
            "token_expired",
        ),
        (
            "a token not valid for a day",
            signed(
                |room, now| json!({"sub":"me","room":room,"iat":now,"nbf":now + 86_400,"exp":now + 90_000}),
            ),
            "token_not_yet_valid",
        ),
        (
            "a token issued a year ahead",
            signed(
                |room, now| json!({"sub":"me","room":room,"iat":now + 31_536_000,"exp":now + 31_600_000}),
            ),
            "token_not_yet_valid",
        ),
        (
            "a token for another room",
            signed(|_, now| json!({"sub":"me","room":"elsewhere","iat":now,"exp":now + 600})),
            "room_mismatch",
        ),
        (
            "alg none",
            Box::new(move |room| {
                use base64::Engine as _;
                let b = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
                format!(
                    "{}.{}.",
                    b(br#"{"alg":"none","typ":"JWT"}"#),
                    b(fine(room, now).to_string().as_bytes())
                )
            }),
            "invalid_token",
        ),
        (
            "HS256 with the empty key",
            other_key(fine, b""),
            "bad_signature",
        ),
        (
            "HS256 with another key",
            other_key(fine, b"not-the-servers-secret-at-all"),
            "bad_signature",
        ),
        (
            "a 100 KB forged token",
            other_key(
                |room, now| json!({"sub":"me","room":room,"pad":"p".repeat(100_000),"iat":now,"exp":now + 600}),
                b"not-the-servers-secret-at-all",
            ),
            "bad_signature",
        ),
        (
            "a token with no room claim",
            signed(|_, now| json!({"sub":"me","iat":now,"exp":now + 600})),
            "invalid_token",
        ),
    ]
}

/// The token and origin attacks, in production.
pub fn auth_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for d in ALL {
        let label = |n: &str| format!("{}: {n}", d.name());
        for (name, make, code) in bad_tokens() {
            let l = label(name);
            let make = Rc::new(make);
            let expected = answer(d, name, code);
            cases.push(case(d, name, move |s| {
                let (l, make, expected) = (l.clone(), make.clone(), expected.clone());
                Box::pin(async move {
                    let room = uuid_like();
                    match refusal(&s.prod, d, &room, &make(&room)).await {
                        Some(r) if r == expected => Ok(()),
                        other => Err(format!("{l}: expected {expected:?}, got {other:?}")),
                    }
                })
            }));
        }
        // A token in a field the dialect does not read: as good as none.
        let l = label("a token in the wrong field");
        let expected = answer(d, "", "token_required");
        cases.push(case(d, "a token in the wrong field", move |s| {
            let (l, expected) = (l.clone(), expected.clone());
            Box::pin(async move {
                let room = uuid_like();
                let good = s.prod.app.auth.issue("me", &room).token;
                match wrong_field_refusal(&s.prod, d, &room, &good).await {
                    Some(r) if r == expected => Ok(()),
                    other => Err(format!("{l}: expected {expected:?}, got {other:?}")),
                }
            })
        }));
        // The right token is admitted (so the refusals above are about the token).
        let l = label("a valid token is admitted");
        cases.push(case(d, "a valid token is admitted", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let room = uuid_like();
                let good = s.prod.app.auth.issue("me", &room).token;
                match refusal(&s.prod, d, &room, &good).await {
                    None => Ok(()),
                    Some(r) => Err(format!("{l}: refused: {r:?}")),
                }
            })
        }));
        // Origin: spoofed refused, missing allowed (CLI clients), the configured one allowed.
        // A refusal is 403 (Socket.io: this connect_error).
        for (name, origin, refusal) in [
            (
                "a spoofed Origin",
                Some("http://evil.example"),
                Some("Origin not allowed"),
            ),
            (
                "an Origin with a non-ASCII byte",
                Some("http://app.ex\u{e4}mple"),
                Some("Malformed Origin header"),
            ),
            ("no Origin header", None, None),
            ("the configured Origin", Some("http://app.example"), None),
        ] {
            let l = label(name);
            cases.push(case(d, name, move |s| {
                let l = l.clone();
                Box::pin(async move { origin_answer(&s.prod, d, origin, refusal, &l).await })
            }));
        }
    }
    cases
}

/// Whether a connection of `d` with a valid token and `origin` is admitted, or refused
/// with `refusal` (Socket.io's connect_error message; the others: 403).
async fn origin_answer(
    s: &TestServer,
    d: Dialect,
    origin: Option<&str>,
    refusal: Option<&str>,
    l: &str,
) -> Result<(), String> {
    let room = uuid_like();
    let good = s.app.auth.issue("me", &room).token;
    let query = if d == SocketIo || d == Octate {
        String::new()
    } else {
        format!("token={good}")
    };
    let (addr, path) = endpoint(s, d, &room, &query);
    let header = origin.map(|o| format!("Origin: {o}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    if d == SocketIo {
        // Admission runs at the namespace connect: connect_error when refused.
        let (status, ws) = RawWs::open_with(next_ip(), addr, &path, &headers).await;
        if status != 101 {
            return Err(format!("{l}: upgrade {status}"));
        }
        let mut c = Conn::wrap(d, ws);
        let ack = c
            .sio_connect(&format!(r#"{{"token":"{good}"}}"#))
            .await
            .unwrap_or_default();
        let ok = match refusal {
            None => ack.starts_with("40{"),
            Some(m) => ack == format!("44{}", json!({ "message": m })),
        };
        return if ok {
            Ok(())
        } else {
            Err(format!("{l}: {ack}"))
        };
    }
    let (status, _) = upgrade_with(addr, &path, &headers).await;
    let expected = if refusal.is_none() { 101 } else { 403 };
    if status == expected {
        Ok(())
    } else {
        Err(format!("{l}: status {status}"))
    }
}

/// A production connection of `d` to a fresh room with a valid token, upgraded (the
/// Socket.io one connected to the namespace) and then silent.
pub async fn quiet_in_production(s: &TestServer, d: Dialect) -> Result<Conn, u16> {
    let room = uuid_like();
    let token = s.app.auth.issue("quiet", &room).token;
    let query = match d {
        SocketIo | Octate => String::new(),
        _ => format!("token={token}"),
    };
    let (status, mut c) = Conn::upgrade(s, d, &room, &query).await;
    if status != 101 {
        return Err(status);
    }
    if d == SocketIo {
        // Engine.IO open, then the namespace connect with the token, then silence.
        c.sio_connect(&format!(r#"{{"token":"{token}"}}"#)).await;
    }
    Ok(c)
}
