//! Token and origin attacks on the production server, in every dialect.

use std::rc::Rc;

use serde_json::{Value, json};

use crate::cases::{Case, case};
use crate::conn::{ALL, Conn, Dialect, Dialect::*, endpoint, next_ip, upgrade_with};
use crate::support::TestServer;
use crate::support::process::RawWs;
use crate::{nt, octate, rendezvous, socketio, ywebrtc};

/// The production server's secret (see `prod_config`).
const SECRET: &str = "a-production-secret-of-some-length";

/// Builds a token for a room.
type MakeToken = Box<dyn Fn(&str) -> String>;

/// A connection of `d` (rendezvous, nt, y-webrtc: a token in the query) to `room` with
/// `token` (empty: none), or `None` when the upgrade is refused.
pub async fn with_token(s: &TestServer, d: Dialect, room: &str, token: &str) -> Option<Conn> {
    let query = if token.is_empty() {
        String::new()
    } else {
        format!("token={token}")
    };
    let (status, c) = Conn::upgrade(s, d, room, &query).await;
    (status == 101).then_some(c)
}

/// Whether `token` (empty: none) is refused for a production connection of `d` to `room`.
async fn refused_in_production(s: &TestServer, d: Dialect, room: &str, token: &str) -> bool {
    match d {
        Octate => octate::refused(s, room, token).await,
        SocketIo => socketio::refused(s, room, token).await,
        Rendezvous => rendezvous::refused(s, room, token).await,
        Nt => nt::refused(s, room, token).await,
        YWebrtc => ywebrtc::refused(s, room, token).await,
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

/// The tokens that must not admit anyone.
fn bad_tokens() -> Vec<(&'static str, MakeToken)> {
    let now = unix_now();
    let signed = |claims: fn(&str, u64) -> Value| -> MakeToken {
        Box::new(move |room| forge(&claims(room, now), SECRET.as_bytes()))
    };
    let other_key = |claims: fn(&str, u64) -> Value, key: &'static [u8]| -> MakeToken {
        Box::new(move |room| forge(&claims(room, now), key))
    };
    let fine = |room: &str, now: u64| json!({"sub":"me","room":room,"iat":now,"exp":now + 600});
    vec![
        ("no token", Box::new(|_| String::new())),
        (
            "an expired token",
            signed(|room, now| json!({"sub":"me","room":room,"iat":now - 7200,"exp":now - 3600})),
        ),
        (
            "a token not valid for a day",
            signed(
                |room, now| json!({"sub":"me","room":room,"iat":now,"nbf":now + 86_400,"exp":now + 90_000}),
            ),
        ),
        (
            "a token issued a year ahead",
            signed(
                |room, now| json!({"sub":"me","room":room,"iat":now + 31_536_000,"exp":now + 31_600_000}),
            ),
        ),
        (
            "a token for another room",
            signed(|_, now| json!({"sub":"me","room":"elsewhere","iat":now,"exp":now + 600})),
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
        ),
        ("HS256 with the empty key", other_key(fine, b"")),
        (
            "HS256 with another key",
            other_key(fine, b"not-the-servers-secret-at-all"),
        ),
        (
            "a 100 KB forged token",
            other_key(
                |room, now| json!({"sub":"me","room":room,"pad":"p".repeat(100_000),"iat":now,"exp":now + 600}),
                b"not-the-servers-secret-at-all",
            ),
        ),
        (
            "a token with no room claim",
            signed(|_, now| json!({"sub":"me","iat":now,"exp":now + 600})),
        ),
    ]
}

/// The token and origin attacks, in production.
pub fn auth_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for d in ALL {
        let label = |n: &str| format!("{}: {n}", d.name());
        for (name, make) in bad_tokens() {
            let l = label(name);
            let make = Rc::new(make);
            cases.push(case(d, name, move |s| {
                let (l, make) = (l.clone(), make.clone());
                Box::pin(async move {
                    let room = crate::conn::uuid_like();
                    if refused_in_production(&s.prod, d, &room, &make(&room)).await {
                        Ok(())
                    } else {
                        Err(format!("{l}: admitted"))
                    }
                })
            }));
        }
        // A token in a field the dialect does not read: as good as none.
        let l = label("a token in the wrong field");
        cases.push(case(d, "a token in the wrong field", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let room = crate::conn::uuid_like();
                let good = s.prod.app.auth.issue("me", &room).token;
                let refused = match d {
                    SocketIo => socketio::refused_in_wrong_field(&s.prod, &room, &good).await,
                    Octate => octate::refused_in_wrong_field(&s.prod, &room, &good).await,
                    _ => {
                        let query = format!("access_token={good}");
                        let (addr, path) = endpoint(&s.prod, d, &room, &query);
                        RawWs::open(next_ip(), addr, &path).await.0 == 401
                    }
                };
                if refused {
                    Ok(())
                } else {
                    Err(format!("{l}: admitted"))
                }
            })
        }));
        // The right token is admitted (so the refusals above are about the token).
        let l = label("a valid token is admitted");
        cases.push(case(d, "a valid token is admitted", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let room = crate::conn::uuid_like();
                let good = s.prod.app.auth.issue("me", &room).token;
                if refused_in_production(&s.prod, d, &room, &good).await {
                    Err(format!("{l}: refused"))
                } else {
                    Ok(())
                }
            })
        }));
        // Origin: spoofed refused, missing allowed (CLI clients), the configured one allowed.
        for (name, origin, allowed) in [
            ("a spoofed Origin", Some("http://evil.example"), false),
            (
                "an Origin with a non-ASCII byte",
                Some("http://app.ex\u{e4}mple"),
                false,
            ),
            ("no Origin header", None, true),
            ("the configured Origin", Some("http://app.example"), true),
        ] {
            let l = label(name);
            cases.push(case(d, name, move |s| {
                let l = l.clone();
                Box::pin(async move { origin_admits(&s.prod, d, origin, allowed, &l).await })
            }));
        }
    }
    cases
}

/// Whether a connection of `d` with a valid token and `origin` is admitted exactly when
/// `allowed`.
async fn origin_admits(
    s: &TestServer,
    d: Dialect,
    origin: Option<&str>,
    allowed: bool,
    l: &str,
) -> Result<(), String> {
    let room = crate::conn::uuid_like();
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
        let ok = if allowed {
            ack.starts_with("40{")
        } else {
            ack.starts_with("44")
        };
        return if ok {
            Ok(())
        } else {
            Err(format!("{l}: {ack}"))
        };
    }
    let (status, _) = upgrade_with(addr, &path, &headers).await;
    let expected = if allowed { 101 } else { 403 };
    if status == expected {
        Ok(())
    } else {
        Err(format!("{l}: status {status}"))
    }
}

/// A production connection of `d` to a fresh room with a valid token, upgraded (the
/// Socket.io one connected to the namespace) and then silent.
pub async fn quiet_in_production(s: &TestServer, d: Dialect) -> Result<Conn, u16> {
    let room = crate::conn::uuid_like();
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
