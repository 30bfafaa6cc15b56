//! The attack suite (issue 15): what Switchboard withstands, one case per line, for each
//! dialect. Real server (in this process, on port 0), real sockets, loopback only, every
//! loop bounded. Each case asserts the server's answer (an error reply, a close code, or
//! that the input is ignored and the connection still works), and after each case a pair of
//! bystanders must still signal with a round trip no worse than a generous bound over the
//! one measured before the suite. The summary line counts the cases per dialect.
//!
//! The cases that need a whole process measured (memory and descriptors under slow readers,
//! unfinished messages, idle crowds) are in `tests/exhaustion.rs`; the token and room-access
//! rules of the security model in `tests/security.rs`; both are listed in the summary here
//! as what they cover, not re-run.

mod support;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::process::{RawWs, client_frame, upgrade_request};
use support::*;
use switchboard::Config;
use switchboard::config::{List, Span};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The dialects, each with its own endpoint and first step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Octate,
    SocketIo,
    Rendezvous,
    Nt,
    YWebrtc,
}

use Dialect::*;

const ALL: [Dialect; 5] = [Octate, SocketIo, Rendezvous, Nt, YWebrtc];

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Octate => "octate",
            SocketIo => "socketio",
            Rendezvous => "rendezvous",
            Nt => "nt",
            YWebrtc => "ywebrtc",
        }
    }
}

/// A source address per connection, so that per-client budgets (room creations, requests)
/// do not leak from one case into the next.
fn next_ip() -> IpAddr {
    static N: AtomicU8 = AtomicU8::new(10);
    let n = N.fetch_add(1, Ordering::Relaxed);
    IpAddr::V4(Ipv4Addr::new(127, 0, 1 + n / 200, 2 + n % 200))
}

/// The servers the suite attacks.
struct Servers {
    /// Development mode, short deadlines.
    dev: TestServer,
    /// Development mode, 20 connections per client address.
    limited: TestServer,
    /// Production mode: tokens in every dialect, `CORS_ORIGINS` set.
    prod: TestServer,
}

fn dev_config() -> Config {
    Config {
        message_timeout: Span::secs(1),
        request_header_timeout: Span::secs(1),
        auth_timeout: Span::secs(1),
        http_requests_per_second: 0,
        ..test_config()
    }
}

fn prod_config() -> Config {
    Config {
        production: true,
        auth_secret: "a-production-secret-of-some-length".into(),
        admin_api_key: Some("admin-key".into()),
        cors_origins: List(vec!["http://app.example".into()]),
        auth_timeout: Span::secs(1),
        http_requests_per_second: 0,
        ..test_config()
    }
}

/// One open connection of a dialect, established (its first step taken), over a raw socket
/// so that any frame can be sent.
struct Conn {
    dialect: Dialect,
    /// The connection's own room (OctateCode, rendezvous, nt).
    room: String,
    ws: RawWs,
    /// Frames read but not yet looked at.
    pending: Vec<u8>,
    /// nt: the other side, which receives what this side relays.
    partner: Option<Box<Conn>>,
}

/// What came back after an attack.
#[derive(Debug, Default)]
struct Seen {
    texts: Vec<String>,
    close: Option<(u16, String)>,
    /// The connection ended (close frame or not).
    ended: bool,
}

impl Seen {
    fn error_codes(&self) -> Vec<String> {
        self.texts.iter().filter_map(|t| error_code(t)).collect()
    }
}

/// The error code (or Socket.io error message) in a server frame, if it is an error.
fn error_code(text: &str) -> Option<String> {
    if let Some(body) = text.strip_prefix("42") {
        let v: Value = serde_json::from_str(body).ok()?;
        return (v[0] == "error").then(|| v[1]["message"].as_str().unwrap_or("").to_owned());
    }
    let v: Value = serde_json::from_str(text.trim_end()).ok()?;
    if v["type"] != "error" {
        return None;
    }
    Some(
        v["data"]["code"]
            .as_str()
            .or(v["code"].as_str())
            .unwrap_or("")
            .to_owned(),
    )
}

impl Conn {
    /// Opens `dialect`'s endpoint on `s` (a fresh room per connection), with `query`
    /// appended, and takes the first step.
    async fn open(s: &TestServer, dialect: Dialect, query: &str) -> Self {
        let c = Self::open_raw(s, dialect, query).await;
        let (status, c) = c;
        assert_eq!(status, 101, "{dialect:?} upgrade");
        let mut c = c.expect("upgraded");
        c.establish(s).await;
        c
    }

    /// The upgrade alone.
    async fn open_raw(s: &TestServer, dialect: Dialect, query: &str) -> (u16, Option<Self>) {
        let room = uuid_like();
        let (addr, path) = endpoint(s, dialect, &room, query);
        let (status, ws) = RawWs::open(next_ip(), addr, &path).await;
        (
            status,
            (status == 101).then(|| Self {
                dialect,
                room,
                ws,
                pending: Vec::new(),
                partner: None,
            }),
        )
    }

    async fn establish(&mut self, s: &TestServer) {
        match self.dialect {
            Octate => {
                let room = self.room.clone();
                self.text(&json!({"type":"auth","userId":"me","roomId":room}).to_string())
                    .await;
                self.expect_type("auth").await;
                self.text(&json!({"type":"create-room","roomId":room}).to_string())
                    .await;
                self.expect_type("room-created").await;
            }
            Rendezvous => {
                self.text(r#"{"type":"join","peerId":"me"}"#).await;
                self.expect_type("ready").await;
            }
            YWebrtc => {
                self.text(r#"{"type":"subscribe","topics":["t"]}"#).await;
                self.text(r#"{"type":"ping"}"#).await;
                self.expect_type("pong").await;
            }
            Nt => {
                // The other side, which receives what this one relays.
                let path = self.partner_path();
                let (status, ws) = RawWs::open(next_ip(), s.http, &path).await;
                assert_eq!(status, 101);
                let mut b = Self {
                    dialect: Nt,
                    room: self.room.clone(),
                    ws,
                    pending: Vec::new(),
                    partner: None,
                };
                b.expect_type("room_full").await;
                self.expect_type("room_full").await;
                self.partner = Some(Box::new(b));
            }
            SocketIo => {
                let open = self.next_text(Duration::from_secs(5)).await.expect("open");
                assert!(open.starts_with('0'), "{open}");
                self.text("40").await;
                let ack = self
                    .next_text(Duration::from_secs(5))
                    .await
                    .expect("connect");
                assert!(ack.starts_with("40"), "{ack}");
                let (_, body) = http("POST", s.socketio, "/api/rooms", None, &[]).await;
                let room = body["roomId"].as_str().unwrap().to_owned();
                self.text(&format!(r#"42["join-room","{room}","me"]"#))
                    .await;
                loop {
                    let t = self
                        .next_text(Duration::from_secs(5))
                        .await
                        .expect("joined");
                    if t.contains("room-participants") {
                        break;
                    }
                }
            }
        }
    }

    /// nt: side B of this connection's room.
    fn partner_path(&self) -> String {
        format!("/ws?appID={}&side=B", self.room)
    }

    async fn text(&mut self, t: &str) {
        let _ = self.ws.try_frame(true, 1, t.as_bytes()).await;
    }

    async fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let _ = self.ws.try_frame(fin, opcode, payload).await;
    }

    async fn raw(&mut self, bytes: &[u8]) {
        let _ = self.ws.tcp.write_all(bytes).await;
    }

    /// The next text frame within `within`; `None` on close or silence. Pings are
    /// answered, Engine.IO pings too.
    async fn next_text(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((op, payload, used)) = parse_frame(&self.pending) {
                self.pending.drain(..used);
                match op {
                    1 | 2 => {
                        let t = String::from_utf8_lossy(&payload).into_owned();
                        if self.dialect == SocketIo && t == "2" {
                            self.text("3").await;
                            continue;
                        }
                        return Some(t);
                    }
                    9 => {
                        let _ = self.ws.try_frame(true, 10, &payload).await;
                        continue;
                    }
                    8 => {
                        self.pending.splice(0..0, closing(&payload));
                        return None;
                    }
                    _ => continue,
                }
            }
            let mut chunk = vec![0u8; 64 << 10];
            match tokio::time::timeout_at(deadline, self.ws.tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.pending.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    async fn expect_type(&mut self, kind: &str) -> Value {
        for _ in 0..20 {
            let t = self
                .next_text(Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{:?}: no {kind}", self.dialect));
            let v: Value = serde_json::from_str(t.trim_end()).unwrap_or(Value::Null);
            if v["type"] == kind {
                return v;
            }
        }
        panic!("{:?}: no {kind} in 20 frames", self.dialect);
    }

    /// What arrives within `within` (until the connection ends).
    async fn seen(&mut self, within: Duration) -> Seen {
        let mut seen = Seen::default();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next_text(left).await {
                Some(t) => seen.texts.push(t),
                None => {
                    if let Some(c) = take_close(&mut self.pending) {
                        seen.close = Some(c);
                        seen.ended = true;
                        break;
                    }
                    // Silence, or the socket ended without a close frame.
                    let mut b = [0u8; 1];
                    if let Ok(Ok(0) | Err(_)) =
                        tokio::time::timeout(Duration::from_millis(1), self.ws.tcp.peek(&mut b))
                            .await
                    {
                        seen.ended = true;
                    }
                    break;
                }
            }
        }
        seen
    }

    /// Whether the connection still works: a request that its dialect answers.
    async fn alive(&mut self) -> bool {
        match self.dialect {
            Octate => {
                self.text(r#"{"type":"ping"}"#).await;
                self.reply_with(|v| v["type"] == "heartbeat").await
            }
            Rendezvous => {
                self.text(r#"{"type":"signal","to":"ghost","data":{}}"#)
                    .await;
                self.reply_with(|v| v["code"] == "peer_not_found").await
            }
            YWebrtc => {
                self.text(r#"{"type":"ping"}"#).await;
                self.reply_with(|v| v["type"] == "pong").await
            }
            Nt => {
                self.text(r#"{"type":"offer","sdp":"still here"}"#).await;
                let Some(b) = self.partner.as_mut() else {
                    return false;
                };
                for _ in 0..20 {
                    match b.next_text(Duration::from_secs(3)).await {
                        Some(t) if t.contains("still here") => return true,
                        Some(_) => continue,
                        None => return false,
                    }
                }
                false
            }
            SocketIo => {
                self.text(r#"42["join-room","no-such-room","me2"]"#).await;
                for _ in 0..20 {
                    match self.next_text(Duration::from_secs(3)).await {
                        Some(t) if t.contains("Room not found") => return true,
                        Some(_) => continue,
                        None => return false,
                    }
                }
                false
            }
        }
    }

    async fn reply_with(&mut self, f: impl Fn(&Value) -> bool) -> bool {
        for _ in 0..20 {
            match self.next_text(Duration::from_secs(3)).await {
                Some(t) => {
                    let v: Value = serde_json::from_str(t.trim_end()).unwrap_or(Value::Null);
                    if f(&v) {
                        return true;
                    }
                }
                None => return false,
            }
        }
        false
    }
}

fn uuid_like() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    format!(
        "a77ac4e5-0000-4000-8000-{:012}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn endpoint(s: &TestServer, d: Dialect, room: &str, query: &str) -> (SocketAddr, String) {
    let sep = |p: &str| if p.contains('?') { "&" } else { "?" }.to_owned();
    let (addr, path) = match d {
        Octate => (s.signaling, "/".to_owned()),
        SocketIo => (
            s.socketio,
            "/socket.io/?EIO=4&transport=websocket".to_owned(),
        ),
        Rendezvous => (s.http, format!("/ws?room={room}")),
        Nt => (s.http, format!("/ws?appID={room}&side=A")),
        YWebrtc => (s.http, "/y-webrtc".to_owned()),
    };
    if query.is_empty() {
        (addr, path)
    } else {
        let q = format!("{}{query}", sep(&path));
        (addr, path + &q)
    }
}

/// One server frame at the start of `buf`: opcode, payload, bytes used.
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0f;
    let (len, head) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(head..head + len)?.to_vec();
    Some((op, payload, head + len))
}

/// Keeps a close frame's payload where [`take_close`] finds it.
fn closing(payload: &[u8]) -> Vec<u8> {
    let mut v = b"CLOSE:".to_vec();
    v.extend_from_slice(payload);
    v.push(0);
    v
}

fn take_close(pending: &mut Vec<u8>) -> Option<(u16, String)> {
    let rest = pending.strip_prefix(b"CLOSE:")?;
    let end = rest.iter().position(|b| *b == 0)?;
    let payload = rest[..end].to_vec();
    pending.drain(..6 + end + 1);
    if payload.len() < 2 {
        return Some((1005, String::new()));
    }
    Some((
        u16::from_be_bytes([payload[0], payload[1]]),
        String::from_utf8_lossy(&payload[2..]).into_owned(),
    ))
}

/// What a case expects the server to do.
#[derive(Debug, Clone)]
enum Expect {
    /// An error reply with this code (Socket.io: a message containing it); still alive.
    Error(&'static str),
    /// No reply; still alive.
    Ignored,
    /// Either of these error codes, or ignored; still alive.
    ErrorOrIgnored(&'static [&'static str]),
    /// At least one error, each with one of these codes; still alive.
    OneOf(&'static [&'static str]),
    /// Closed with this code (any reason).
    Close(u16),
    /// Closed, with or without a close frame.
    Ended,
}

fn check(case: &str, seen: &Seen, alive: Option<bool>, expect: &Expect) -> Result<(), String> {
    let codes = seen.error_codes();
    let ok = match expect {
        Expect::Error(code) => {
            codes.iter().any(|c| c == code || c.contains(code)) && alive == Some(true)
        }
        Expect::Ignored => codes.is_empty() && !seen.ended && alive == Some(true),
        Expect::OneOf(allowed) => {
            !codes.is_empty()
                && codes
                    .iter()
                    .all(|c| allowed.iter().any(|a| c == a || c.contains(a)))
                && !seen.ended
                && alive == Some(true)
        }
        Expect::ErrorOrIgnored(allowed) => {
            codes
                .iter()
                .all(|c| allowed.iter().any(|a| c == a || c.contains(a)))
                && !seen.ended
                && alive == Some(true)
        }
        Expect::Close(code) => seen.close.as_ref().is_some_and(|(c, _)| c == code),
        Expect::Ended => seen.ended,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{case}: expected {expect:?}, saw {:?} close {:?} ended {} alive {alive:?}",
            seen.texts
                .iter()
                .map(|t| t.chars().take(120).collect::<String>())
                .collect::<Vec<_>>(),
            seen.close,
            seen.ended
        ))
    }
}

/// Places `poison` (JSON text) in the field each dialect routes by.
fn in_id_field(d: Dialect, poison: &str) -> String {
    match d {
        Octate => format!(r#"{{"type":"sdp-offer","targetUserId":{poison},"data":{{}}}}"#),
        Rendezvous => format!(r#"{{"type":"signal","to":{poison},"data":{{}}}}"#),
        Nt => format!(r#"{{"type":"send","to":{poison},"payload":"x"}}"#),
        YWebrtc => format!(r#"{{"type":"publish","topic":{poison},"data":{{}}}}"#),
        SocketIo => format!(r#"42["offer",{{"roomId":{poison},"offer":{{}}}}]"#),
    }
}

/// Places `poison` (JSON text) as a relayed body.
fn in_body(d: Dialect, poison: &str) -> String {
    match d {
        Octate => format!(r#"{{"type":"presence","data":{poison}}}"#),
        Rendezvous => format!(r#"{{"type":"signal","data":{poison}}}"#),
        Nt => format!(r#"{{"type":"offer","sdp":{poison}}}"#),
        YWebrtc => format!(r#"{{"type":"publish","topic":"t","data":{poison}}}"#),
        SocketIo => format!(r#"42["ice-candidate",{{"candidate":{poison}}}]"#),
    }
}

fn deep(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;

struct Case {
    dialect: Dialect,
    name: String,
    run: Box<dyn for<'a> Fn(&'a Servers) -> CaseFuture<'a>>,
}

fn case(
    dialect: Dialect,
    name: impl Into<String>,
    run: impl for<'a> Fn(&'a Servers) -> CaseFuture<'a> + 'static,
) -> Case {
    Case {
        dialect,
        name: name.into(),
        run: Box::new(run),
    }
}

/// A frame attack on an established connection of `d` on the dev server.
fn frame_case(d: Dialect, name: &str, frame: String, expect: Expect) -> Case {
    let label = format!("{}: {name}", d.name());
    case(d, name, move |s| {
        let (frame, expect, label) = (frame.clone(), expect.clone(), label.clone());
        Box::pin(async move {
            let mut c = Conn::open(&s.dev, d, "").await;
            c.text(&frame).await;
            let seen = c.seen(Duration::from_millis(300)).await;
            let alive = if seen.ended {
                None
            } else {
                Some(c.alive().await)
            };
            check(&label, &seen, alive, &expect)
        })
    })
}

/// The payload attacks, for every dialect, with each dialect's expected answer.
fn payload_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for d in ALL {
        // Malformed and mistyped input: each dialect's own error, or ignored where the
        // original ignored it (nt); never a crash, never a close.
        let bad_json = match d {
            Nt => Expect::Ignored,
            SocketIo => Expect::Ended,
            _ => Expect::Error("bad_json"),
        };
        let (octate_code, rv_code, y_code) = ("unknown_type", "unknown_type", "unknown_type");
        let table: Vec<(&str, String, Expect)> = vec![
            (
                "not JSON",
                match d {
                    SocketIo => "42{{{".into(),
                    _ => "{{{".into(),
                },
                bad_json.clone(),
            ),
            (
                "truncated JSON",
                match d {
                    SocketIo => r#"42["offer",{"roomId":"#.into(),
                    _ => r#"{"type":"#.into(),
                },
                bad_json.clone(),
            ),
            // Valid JSON, relayed as the bytes came (only routing fields are parsed, and
            // without recursion), in every dialect: Socket.io's arguments are raw JSON too.
            (
                "JSON nested 10,000 deep in a relayed body",
                in_body(d, &deep(10_000)),
                Expect::Ignored,
            ),
            (
                "JSON nested 10,000 deep at the top",
                match d {
                    SocketIo => format!("42{}", deep(10_000)),
                    _ => deep(10_000),
                },
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::Ended,
                    _ => Expect::OneOf(&["bad_json", "bad_message"]),
                },
            ),
            (
                "a top-level array",
                match d {
                    SocketIo => r#"42[]"#.into(),
                    _ => "[1,2,3]".into(),
                },
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::Ended,
                    Octate | Rendezvous | YWebrtc => {
                        Expect::ErrorOrIgnored(&["bad_message", "bad_json", "missing_type"])
                    }
                },
            ),
            (
                "a bare string",
                match d {
                    SocketIo => r#"42"offer""#.into(),
                    _ => r#""offer""#.into(),
                },
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::Ended,
                    _ => Expect::ErrorOrIgnored(&["bad_message", "bad_json", "missing_type"]),
                },
            ),
            (
                "null",
                match d {
                    SocketIo => "42null".into(),
                    _ => "null".into(),
                },
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::Ended,
                    _ => Expect::ErrorOrIgnored(&["bad_message", "bad_json", "missing_type"]),
                },
            ),
            (
                "no type",
                match d {
                    SocketIo => r#"42[{"roomId":"r"}]"#.into(),
                    _ => r#"{"roomId":"r"}"#.into(),
                },
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::Ended,
                    _ => Expect::Error("missing_type"),
                },
            ),
            (
                "a number for the type",
                match d {
                    SocketIo => r#"42[7,{}]"#.into(),
                    _ => r#"{"type":7}"#.into(),
                },
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::Ended,
                    _ => Expect::ErrorOrIgnored(&["bad_message", "bad_json", "missing_type"]),
                },
            ),
            (
                "an unknown type",
                match d {
                    SocketIo => r#"42["launch-missiles",{}]"#.into(),
                    _ => r#"{"type":"launch-missiles"}"#.into(),
                },
                match d {
                    Nt | SocketIo => Expect::Ignored,
                    Octate => Expect::Error(octate_code),
                    Rendezvous => Expect::Error(rv_code),
                    YWebrtc => Expect::Error(y_code),
                },
            ),
            (
                "a 10 KB type",
                match d {
                    SocketIo => format!(r#"42["{}",{{}}]"#, "t".repeat(10_000)),
                    _ => format!(r#"{{"type":"{}"}}"#, "t".repeat(10_000)),
                },
                match d {
                    Nt | SocketIo => Expect::Ignored,
                    _ => Expect::Error("unknown_type"),
                },
            ),
            (
                "duplicate type keys",
                match d {
                    SocketIo => r#"42["offer",{"roomId":"a","roomId":"b","offer":{}}]"#.into(),
                    _ => r#"{"type":"ping","type":"launch"}"#.into(),
                },
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::ErrorOrIgnored(&["Not in room", "Room not found"]),
                    _ => Expect::ErrorOrIgnored(&["bad_json", "bad_message", "unknown_type"]),
                },
            ),
            (
                "a number where an id belongs",
                in_id_field(d, "12345"),
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => {
                        Expect::ErrorOrIgnored(&["Expected", "Missing roomId", "Not in room"])
                    }
                    _ => Expect::ErrorOrIgnored(&[
                        "bad_message",
                        "bad_json",
                        "missing_fields",
                        "bad_payload",
                        "peer_not_found",
                    ]),
                },
            ),
            (
                "an object where an id belongs",
                in_id_field(d, r#"{"$ne":null}"#),
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => {
                        Expect::ErrorOrIgnored(&["Expected", "Missing roomId", "Not in room"])
                    }
                    _ => Expect::ErrorOrIgnored(&[
                        "bad_message",
                        "bad_json",
                        "missing_fields",
                        "bad_payload",
                        "peer_not_found",
                    ]),
                },
            ),
            (
                "a 60 KB string in an id field",
                in_id_field(d, &format!("\"{}\"", "i".repeat(60_000))),
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::ErrorOrIgnored(&["Not in room", "not found"]),
                    _ => Expect::ErrorOrIgnored(&[
                        "peer_not_found",
                        "not_subscribed",
                        "topic_too_long",
                        "room_mismatch",
                        "not_in_room",
                        "bad_payload",
                    ]),
                },
            ),
            (
                "control characters in an id",
                in_id_field(d, r#""a\u0000b\n\u001bc""#),
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::ErrorOrIgnored(&["Not in room", "not found"]),
                    _ => Expect::ErrorOrIgnored(&[
                        "peer_not_found",
                        "not_subscribed",
                        "room_mismatch",
                        "not_in_room",
                        "bad_payload",
                    ]),
                },
            ),
            (
                "10 KB of Unicode in an id",
                in_id_field(d, &format!("\"{}\"", "é🦀".repeat(2_000))),
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::ErrorOrIgnored(&["Not in room", "not found"]),
                    _ => Expect::ErrorOrIgnored(&[
                        "peer_not_found",
                        "not_subscribed",
                        "topic_too_long",
                        "room_mismatch",
                        "not_in_room",
                        "bad_payload",
                    ]),
                },
            ),
            (
                "a lone surrogate escape",
                in_body(d, r#""\ud800""#),
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::ErrorOrIgnored(&["Not in room", "Expected"]),
                    _ => Expect::ErrorOrIgnored(&["bad_json", "bad_message"]),
                },
            ),
            (
                "a number too large for any integer",
                in_body(d, &format!("1{}", "0".repeat(400))),
                match d {
                    Nt => Expect::Ignored,
                    SocketIo => Expect::ErrorOrIgnored(&["Not in room", "Expected"]),
                    _ => Expect::ErrorOrIgnored(&["bad_json", "bad_message"]),
                },
            ),
        ];
        for (name, frame, expect) in table {
            cases.push(frame_case(d, name, frame, expect));
        }
    }
    cases
}

/// Attacks below the dialect: on the WebSocket framing and the HTTP upgrade.
fn transport_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for d in ALL {
        let label = |n: &str| format!("{}: {n}", d.name());
        // Raw frame attacks on an established connection.
        let raw: Vec<(&str, Vec<u8>, Expect)> = vec![
            (
                "a frame header announcing 2^63 bytes",
                {
                    let mut f = vec![0x81, 0x80 | 127];
                    f.extend_from_slice(&(1u64 << 63).to_be_bytes());
                    f.extend_from_slice(&[0; 4]);
                    f
                },
                if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1009)
                },
            ),
            (
                "a text frame that is not UTF-8",
                client_frame(true, 1, &[0xff, 0xfe, 0x80]),
                if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1007)
                },
            ),
            (
                "an unmasked client frame",
                vec![0x81, 0x02, b'h', b'i'],
                if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1002)
                },
            ),
            (
                "a reserved opcode",
                client_frame(true, 3, b"x"),
                if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1002)
                },
            ),
            (
                "reserved bits set",
                {
                    let mut f = client_frame(true, 1, b"{}");
                    f[0] |= 0x70;
                    f
                },
                if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1002)
                },
            ),
            (
                "a continuation with no message",
                client_frame(true, 0, b"x"),
                if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1002)
                },
            ),
            (
                "a fragmented ping",
                client_frame(false, 9, b"x"),
                if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1002)
                },
            ),
            (
                "a ping over 125 bytes",
                client_frame(true, 9, &[0; 200]),
                if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1002)
                },
            ),
            (
                "a message over the hard cap",
                client_frame(true, 1, &vec![b' '; (1 << 20) + 1]),
                if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1009)
                },
            ),
        ];
        for (name, bytes, expect) in raw {
            let l = label(name);
            cases.push(case(d, name, move |s| {
                let (bytes, expect, l) = (bytes.clone(), expect.clone(), l.clone());
                Box::pin(async move {
                    let mut c = Conn::open(&s.dev, d, "").await;
                    c.raw(&bytes).await;
                    let seen = c.seen(Duration::from_secs(2)).await;
                    check(&l, &seen, None, &expect)
                })
            }));
        }
        // A message over MAX_FRAME_BYTES but under the hard cap: refused, connection kept
        // (Socket.io: its own payload limit closes the transport).
        let l = label("a message over MAX_FRAME_BYTES");
        cases.push(case(d, "a message over MAX_FRAME_BYTES", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut c = Conn::open(&s.dev, d, "").await;
                c.text(&in_body(d, &format!("\"{}\"", "x".repeat(70_000))))
                    .await;
                let seen = c.seen(Duration::from_millis(300)).await;
                let alive = if seen.ended {
                    None
                } else {
                    Some(c.alive().await)
                };
                let expect = match d {
                    SocketIo => Expect::ErrorOrIgnored(&["too large", "Not in room"]),
                    Nt => Expect::Ignored,
                    _ => Expect::Error("frame_too_large"),
                };
                // nt answers with its one error frame, which has no code.
                if d == Nt {
                    let told = seen
                        .texts
                        .iter()
                        .any(|t| t.trim_end() == r#"{"type":"error"}"#);
                    return if told && alive == Some(true) {
                        Ok(())
                    } else {
                        Err(format!("{l}: {seen:?}"))
                    };
                }
                check(&l, &seen, alive, &expect)
            })
        }));
        // A fragmented message that never ends: closed at MESSAGE_TIMEOUT (1 s here).
        let l = label("a fragmented message that never ends");
        cases.push(case(d, "a fragmented message that never ends", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut c = Conn::open(&s.dev, d, "").await;
                c.frame(false, 1, b"{\"type\":").await;
                c.frame(true, 10, b"").await;
                c.frame(false, 0, b"\"ping\"").await;
                let seen = c.seen(Duration::from_secs(3)).await;
                let expect = if d == SocketIo {
                    Expect::Ended
                } else {
                    Expect::Close(1008)
                };
                check(&l, &seen, None, &expect)
            })
        }));
        // A fragmented message that does end is fine.
        let l = label("a message in three fragments");
        cases.push(case(d, "a message in three fragments", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut c = Conn::open(&s.dev, d, "").await;
                let whole = match d {
                    Octate => r#"{"type":"ping"}"#.to_owned(),
                    Rendezvous => r#"{"type":"signal","to":"ghost","data":{}}"#.to_owned(),
                    YWebrtc => r#"{"type":"ping"}"#.to_owned(),
                    Nt => r#"{"type":"offer","sdp":"still here"}"#.to_owned(),
                    SocketIo => r#"42["join-room","no-such-room","me2"]"#.to_owned(),
                };
                let b = whole.as_bytes();
                let (x, y) = (b.len() / 3, 2 * b.len() / 3);
                c.frame(false, 1, &b[..x]).await;
                c.frame(false, 0, &b[x..y]).await;
                c.frame(true, 0, &b[y..]).await;
                let ok = match d {
                    Octate => c.reply_with(|v| v["type"] == "heartbeat").await,
                    Rendezvous => c.reply_with(|v| v["code"] == "peer_not_found").await,
                    YWebrtc => c.reply_with(|v| v["type"] == "pong").await,
                    Nt => {
                        let b = c.partner.as_mut().unwrap();
                        b.next_text(Duration::from_secs(3))
                            .await
                            .is_some_and(|t| t.contains("still here"))
                    }
                    SocketIo => {
                        let mut found = false;
                        for _ in 0..10 {
                            match c.next_text(Duration::from_secs(3)).await {
                                Some(t) if t.contains("Room not found") => {
                                    found = true;
                                    break;
                                }
                                Some(_) => {}
                                None => break,
                            }
                        }
                        found
                    }
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!("{l}: the reassembled message was not handled"))
                }
            })
        }));
        // 1,000 pings: each answered or coalesced, the connection fine.
        let l = label("a flood of 1,000 pings");
        cases.push(case(d, "a flood of 1,000 pings", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut c = Conn::open(&s.dev, d, "").await;
                let mut burst = Vec::new();
                for _ in 0..1_000 {
                    burst.extend(client_frame(true, 9, b"p"));
                }
                c.raw(&burst).await;
                let alive = c.alive().await;
                if alive {
                    Ok(())
                } else {
                    Err(format!("{l}: not alive after the pings"))
                }
            })
        }));
        // permessage-deflate asked for: not granted (compression is off).
        let l = label("permessage-deflate requested");
        cases.push(case(d, "permessage-deflate requested", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let (addr, path) = endpoint(&s.dev, d, &uuid_like(), "");
                let (status, head) = upgrade_with(
                    addr,
                    &path,
                    &["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
                )
                .await;
                if status == 101
                    && !head
                        .to_ascii_lowercase()
                        .contains("sec-websocket-extensions")
                {
                    Ok(())
                } else {
                    Err(format!("{l}: {status} {head}"))
                }
            })
        }));
        // An upgrade request with 1 MiB of headers: refused, nothing buffered for long.
        let l = label("1 MiB of upgrade headers");
        cases.push(case(d, "1 MiB of upgrade headers", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let (addr, path) = endpoint(&s.dev, d, &uuid_like(), "");
                let big = format!("X-Padding: {}", "p".repeat(1 << 20));
                let (status, _) = upgrade_with(addr, &path, &[&big]).await;
                if status == 431 || status == 400 || status == 0 {
                    Ok(())
                } else {
                    Err(format!("{l}: status {status}"))
                }
            })
        }));
        // Slowloris on the dialect's own upgrade path: closed at REQUEST_HEADER_TIMEOUT.
        let l = label("slowloris upgrade, a byte every 200 ms");
        cases.push(case(
            d,
            "slowloris upgrade, a byte every 200 ms",
            move |s| {
                let l = l.clone();
                Box::pin(async move {
                    let (addr, path) = endpoint(&s.dev, d, &uuid_like(), "");
                    let mut tcp = tcp_from(next_ip(), addr).await;
                    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n");
                    let start = tokio::time::Instant::now();
                    for b in req.bytes() {
                        if tcp.write_all(&[b]).await.is_err() {
                            break;
                        }
                        let mut x = [0u8; 16];
                        if let Ok(Ok(0) | Err(_)) =
                            tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut x)).await
                        {
                            break;
                        }
                        if start.elapsed() > Duration::from_secs(4) {
                            return Err(format!("{l}: still open after 4 s"));
                        }
                    }
                    if start.elapsed() < Duration::from_secs(3) {
                        Ok(())
                    } else {
                        Err(format!("{l}: {:?}", start.elapsed()))
                    }
                })
            },
        ));
        // A half-open upgrade: headers sent, the connection then silent; a WebSocket that
        // never takes its first step in production.
        let l = label("an upgraded connection that never speaks (production)");
        cases.push(case(
            d,
            "an upgraded connection that never speaks (production)",
            move |s| {
                let l = l.clone();
                Box::pin(async move {
                    let query = token_query(&s.prod, d, "quiet", &uuid_like());
                    let (addr, path) = endpoint(&s.prod, d, &uuid_like_fixed(&query), &query.1);
                    let (status, ws) = RawWs::open(next_ip(), addr, &path).await;
                    if status != 101 {
                        return Err(format!("{l}: upgrade {status}"));
                    }
                    let mut c = Conn {
                        dialect: d,
                        room: String::new(),
                        ws,
                        pending: Vec::new(),
                        partner: None,
                    };
                    if d == SocketIo {
                        // Engine.IO open, then the namespace connect with the token, then silence.
                        c.next_text(Duration::from_secs(2)).await;
                        c.text(&format!(r#"40{{"token":"{}"}}"#, query.2)).await;
                    }
                    let seen = c.seen(Duration::from_secs(3)).await;
                    let expect = if d == SocketIo {
                        Expect::Ended
                    } else {
                        Expect::Close(1008)
                    };
                    check(&l, &seen, None, &expect)
                })
            },
        ));
        // Too many messages: refused past the burst, closed after 50 refusals in a row.
        let l = label("a message flood past MAX_MESSAGES_PER_SECOND");
        cases.push(case(
            d,
            "a message flood past MAX_MESSAGES_PER_SECOND",
            move |s| {
                let l = l.clone();
                Box::pin(async move {
                    let mut c = Conn::open(&s.dev, d, "").await;
                    let msg = match d {
                        Octate | YWebrtc => r#"{"type":"ping"}"#.to_owned(),
                        Rendezvous => r#"{"type":"signal","to":"ghost","data":{}}"#.to_owned(),
                        Nt => r#"{"type":"telemetry","event":"noise"}"#.to_owned(),
                        SocketIo => r#"42["leave-room","nowhere","me"]"#.to_owned(),
                    };
                    let mut burst = Vec::new();
                    for _ in 0..400 {
                        burst.extend(client_frame(true, 1, msg.as_bytes()));
                    }
                    c.raw(&burst).await;
                    let seen = c.seen(Duration::from_secs(2)).await;
                    let limited = seen.texts.iter().any(|t| {
                        t.contains("rate_limited")
                            || t.contains("slow down")
                            || t.trim_end() == r#"{"type":"error"}"#
                    });
                    let closed = seen.ended;
                    if limited && closed {
                        Ok(())
                    } else {
                        Err(format!(
                            "{l}: limited {limited} closed {closed} close {:?}",
                            seen.close
                        ))
                    }
                })
            },
        ));
    }
    cases
}

/// Builds a token for a room.
type MakeToken = Box<dyn Fn(&str) -> String>;

/// The token and origin attacks, in production.
fn auth_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for d in ALL {
        let label = |n: &str| format!("{}: {n}", d.name());
        let secret = "a-production-secret-of-some-length";
        let now = unix_now();
        let forge = move |claims: Value, key: &[u8]| -> String {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(key),
            )
            .unwrap()
        };
        let bad: Vec<(&str, MakeToken)> = vec![
            ("no token", Box::new(|_| String::new())),
            (
                "an expired token",
                Box::new(move |room| {
                    forge(
                        json!({"sub":"me","room":room,"iat":now - 7200,"exp":now - 3600}),
                        secret.as_bytes(),
                    )
                }),
            ),
            (
                "a token not valid for a day",
                Box::new(move |room| {
                    forge(
                        json!({"sub":"me","room":room,"iat":now,"nbf":now + 86_400,"exp":now + 90_000}),
                        secret.as_bytes(),
                    )
                }),
            ),
            (
                "a token issued a year ahead",
                Box::new(move |room| {
                    forge(
                        json!({"sub":"me","room":room,"iat":now + 31_536_000,"exp":now + 31_600_000}),
                        secret.as_bytes(),
                    )
                }),
            ),
            (
                "a token for another room",
                Box::new(move |_| {
                    forge(
                        json!({"sub":"me","room":"elsewhere","iat":now,"exp":now + 600}),
                        secret.as_bytes(),
                    )
                }),
            ),
            (
                "alg none",
                Box::new(move |room| {
                    use base64::Engine as _;
                    let b = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
                    format!(
                        "{}.{}.",
                        b(br#"{"alg":"none","typ":"JWT"}"#),
                        b(json!({"sub":"me","room":room,"iat":now,"exp":now + 600})
                            .to_string()
                            .as_bytes())
                    )
                }),
            ),
            (
                "HS256 with the empty key",
                Box::new(move |room| {
                    forge(
                        json!({"sub":"me","room":room,"iat":now,"exp":now + 600}),
                        b"",
                    )
                }),
            ),
            (
                "HS256 with another key",
                Box::new(move |room| {
                    forge(
                        json!({"sub":"me","room":room,"iat":now,"exp":now + 600}),
                        b"not-the-servers-secret-at-all",
                    )
                }),
            ),
            (
                "a 100 KB forged token",
                Box::new(move |room| {
                    forge(
                        json!({"sub":"me","room":room,"pad":"p".repeat(100_000),"iat":now,"exp":now + 600}),
                        b"not-the-servers-secret-at-all",
                    )
                }),
            ),
            (
                "a token with no room claim",
                Box::new(move |_| {
                    forge(
                        json!({"sub":"me","iat":now,"exp":now + 600}),
                        secret.as_bytes(),
                    )
                }),
            ),
        ];
        for (name, make) in bad {
            let l = label(name);
            let make = std::rc::Rc::new(make);
            cases.push(case(d, name, move |s| {
                let (l, make) = (l.clone(), make.clone());
                Box::pin(async move {
                    let room = uuid_like();
                    let token = make(&room);
                    let refused = refused_in_production(&s.prod, d, &room, &token).await;
                    if refused {
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
                let room = uuid_like();
                let good = s.prod.app.auth.issue("me", &room).token;
                let refused = match d {
                    SocketIo => {
                        let (addr, path) = endpoint(&s.prod, d, &room, &format!("token={good}"));
                        let (_, ws) = RawWs::open(next_ip(), addr, &path).await;
                        let mut c = Conn {
                            dialect: d,
                            room: String::new(),
                            ws,
                            pending: Vec::new(),
                            partner: None,
                        };
                        c.next_text(Duration::from_secs(2)).await;
                        c.text(&format!(r#"40{{"jwt":"{good}"}}"#)).await;
                        c.next_text(Duration::from_secs(2))
                            .await
                            .is_some_and(|t| t.starts_with("44"))
                    }
                    Octate => {
                        let (addr, path) = endpoint(&s.prod, d, &room, "");
                        let (_, ws) = RawWs::open(next_ip(), addr, &path).await;
                        let mut c = Conn {
                            dialect: d,
                            room: String::new(),
                            ws,
                            pending: Vec::new(),
                            partner: None,
                        };
                        c.text(
                            &json!({"type":"auth","userId":"me","roomId":room,"data":{"jwt":good}})
                                .to_string(),
                        )
                        .await;
                        c.seen(Duration::from_millis(500))
                            .await
                            .error_codes()
                            .iter()
                            .any(|c| c == "missing_token")
                    }
                    _ => {
                        let (addr, path) =
                            endpoint(&s.prod, d, &room, &format!("access_token={good}"));
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
                let room = uuid_like();
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
                Box::pin(async move {
                    let room = uuid_like();
                    let good = s.prod.app.auth.issue("me", &room).token;
                    let query = if d == SocketIo || d == Octate {
                        String::new()
                    } else {
                        format!("token={good}")
                    };
                    let (addr, path) = endpoint(&s.prod, d, &room, &query);
                    let header = origin.map(|o| format!("Origin: {o}"));
                    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
                    if d == SocketIo {
                        // Admission runs at the namespace connect: connect_error when refused.
                        let (status, ws) = RawWs::open_with(next_ip(), addr, &path, &headers).await;
                        if status != 101 {
                            return Err(format!("{l}: upgrade {status}"));
                        }
                        let mut c = Conn {
                            dialect: d,
                            room: String::new(),
                            ws,
                            pending: Vec::new(),
                            partner: None,
                        };
                        c.next_text(Duration::from_secs(2)).await;
                        c.text(&format!(r#"40{{"token":"{good}"}}"#)).await;
                        let ack = c
                            .next_text(Duration::from_secs(2))
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
                    let ok = if allowed {
                        status == 101
                    } else {
                        status == 403
                    };
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("{l}: status {status}"))
                    }
                })
            }));
        }
    }
    cases
}

/// Room and id squatting, and crowds from one address.
fn squatting_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Connections from one address past MAX_CONNECTIONS_PER_IP (20 on this server):
    // refused in every dialect, while another address still gets in.
    for d in ALL {
        let l = format!(
            "{}: connections from one address past the per-address limit",
            d.name()
        );
        cases.push(case(
            d,
            "connections from one address past the per-address limit",
            move |s| {
                let l = l.clone();
                Box::pin(async move {
                    let ip = next_ip();
                    let mut held = Vec::new();
                    let mut refused_at = None;
                    for i in 0..25 {
                        if admitted_from(&s.limited, d, ip)
                            .await
                            .map(|c| held.push(c))
                            .is_none()
                        {
                            refused_at = Some(i);
                            break;
                        }
                    }
                    let other = admitted_from(&s.limited, d, next_ip()).await.is_some();
                    if refused_at == Some(20) && other {
                        Ok(())
                    } else {
                        Err(format!(
                            "{l}: refused at {refused_at:?}, another address admitted: {other}"
                        ))
                    }
                })
            },
        ));
    }
    // The default limit (1,000) holds against a crowd of 1,001 from one address.
    cases.push(case(
        Rendezvous,
        "1,001 connections from one address (default limit)",
        |s| {
            Box::pin(async move {
                let ip = next_ip();
                let mut held = Vec::new();
                for i in 0..1_001 {
                    let (status, ws) =
                        RawWs::open(ip, s.dev.http, &format!("/ws?room=crowd-{i}")).await;
                    if status != 101 {
                        return if i == 1_000 && status == 429 {
                            Ok(())
                        } else {
                            Err(format!("refused at {i} with {status}"))
                        };
                    }
                    held.push(ws);
                }
                Err("all 1,001 admitted".into())
            })
        },
    ));
    // Joining as another peer's id: refused, the holder unaffected.
    for d in [Octate, SocketIo, Rendezvous, Nt] {
        let l = format!("{}: joining as a peer id already held", d.name());
        cases.push(case(d, "joining as a peer id already held", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let room = uuid_like();
                let refused = squat(&s.dev, d, &room).await;
                if refused { Ok(()) } else { Err(l) }
            })
        }));
    }
    // Rooms until the per-client creation budget (60 a minute, refilled one a second)
    // holds, in every dialect.
    for d in ALL {
        let l = format!("{}: creating rooms past the per-client budget", d.name());
        cases.push(case(
            d,
            "creating rooms past the per-client budget",
            move |s| {
                let l = l.clone();
                Box::pin(async move {
                    let ip = next_ip();
                    let start = tokio::time::Instant::now();
                    let made = if d == Nt {
                        // nt joins on open and says nothing when it succeeds: open them all,
                        // then count the ones closed with 1013.
                        let mut conns = Vec::new();
                        for _ in 0..70 {
                            let room = uuid_like();
                            let (_, ws) =
                                RawWs::open(ip, s.dev.http, &format!("/ws?appID={room}&side=A"))
                                    .await;
                            conns.push(Conn {
                                dialect: d,
                                room,
                                ws,
                                pending: Vec::new(),
                                partner: None,
                            });
                        }
                        let mut refused = 0;
                        for c in &mut conns {
                            let seen = c.seen(Duration::from_millis(20)).await;
                            if seen.close.is_some_and(|(code, _)| code == 1013) {
                                refused += 1;
                            }
                        }
                        70 - refused
                    } else {
                        let mut made = 0;
                        for _ in 0..70 {
                            if create_room_from(&s.dev, d, ip).await {
                                made += 1;
                            } else {
                                break;
                            }
                        }
                        made
                    };
                    // The bucket refills one room a second while the burst goes on.
                    let refill = start.elapsed().as_secs() as usize + 1;
                    if (60..=60 + refill).contains(&made) {
                        Ok(())
                    } else {
                        Err(format!("{l}: {made} rooms made in {:?}", start.elapsed()))
                    }
                })
            },
        ));
    }
    // Guessing a room id: unknown rooms are not found, and nothing is created.
    for (d, name) in [
        (SocketIo, "joining a guessed room id"),
        (Octate, "joining a guessed room id"),
    ] {
        let l = format!("{}: {name}", d.name());
        cases.push(case(d, name, move |s| {
            let l = l.clone();
            Box::pin(async move {
                let before = s.dev.app.registry.stats_now().rooms;
                let (addr, path) = endpoint(&s.dev, d, &uuid_like(), "");
                let (_, ws) = RawWs::open(next_ip(), addr, &path).await;
                let mut c = Conn {
                    dialect: d,
                    room: String::new(),
                    ws,
                    pending: Vec::new(),
                    partner: None,
                };
                let guess = uuid_like();
                let found = if d == SocketIo {
                    c.next_text(Duration::from_secs(2)).await;
                    c.text("40").await;
                    c.next_text(Duration::from_secs(2)).await;
                    c.text(&format!(r#"42["join-room","{guess}","me"]"#)).await;
                    c.seen(Duration::from_millis(300))
                        .await
                        .error_codes()
                        .iter()
                        .any(|m| m.contains("Room not found"))
                } else {
                    c.text(&json!({"type":"auth","userId":"me","roomId":guess}).to_string())
                        .await;
                    c.expect_type("auth").await;
                    c.text(&json!({"type":"join-room","roomId":guess}).to_string())
                        .await;
                    c.seen(Duration::from_millis(300))
                        .await
                        .error_codes()
                        .iter()
                        .any(|m| m == "room_not_found")
                };
                let after = s.dev.app.registry.stats_now().rooms;
                if found && after == before {
                    Ok(())
                } else {
                    Err(format!("{l}: told {found}, rooms {before} -> {after}"))
                }
            })
        }));
    }
    // A closed peer's id may be taken again (it is free), by the next peer.
    for d in [Octate, Rendezvous, YWebrtc] {
        let l = format!("{}: a departed peer's id is free again", d.name());
        cases.push(case(d, "a departed peer's id is free again", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut a = Conn::open(&s.dev, d, "").await;
                a.alive().await;
                drop(a);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut b = Conn::open(&s.dev, d, "").await;
                if b.alive().await { Ok(()) } else { Err(l) }
            })
        }));
    }
    cases
}

/// CORS preflights for every route: the configured origin gets the headers, another none.
fn cors_cases() -> Vec<Case> {
    let routes = [
        "/api/health",
        "/api/stats",
        "/api/info",
        "/api/auth/token",
        "/api/auth/validate",
        "/api/rooms",
        "/api/rooms/x",
        "/api/rooms/x/peers",
        "/api/ice-servers",
        "/metrics",
        "/rendezvous/code",
        "/rendezvous/redeem",
        "/healthz",
        "/readyz",
    ];
    let mut cases = Vec::new();
    for route in routes {
        cases.push(case(Octate, format!("CORS preflight {route}"), move |s| {
            Box::pin(async move {
                let good = preflight(s.prod.http, route, "http://app.example").await;
                let bad = preflight(s.prod.http, route, "http://evil.example").await;
                let allow = |h: &str| {
                    h.to_ascii_lowercase()
                        .contains("access-control-allow-origin: http://app.example")
                };
                if allow(&good)
                    && !bad
                        .to_ascii_lowercase()
                        .contains("access-control-allow-origin")
                {
                    Ok(())
                } else {
                    Err(format!("CORS {route}: good {good:?} bad {bad:?}"))
                }
            })
        }));
    }
    for route in ["/api/rooms", "/health"] {
        cases.push(case(
            SocketIo,
            format!("CORS preflight {route} on SOCKETIO_PORT"),
            move |s| {
                Box::pin(async move {
                    let good = preflight(s.prod.socketio, route, "http://app.example").await;
                    let bad = preflight(s.prod.socketio, route, "http://evil.example").await;
                    let allow = |h: &str| {
                        h.to_ascii_lowercase()
                            .contains("access-control-allow-origin: http://app.example")
                    };
                    if allow(&good)
                        && !bad
                            .to_ascii_lowercase()
                            .contains("access-control-allow-origin")
                    {
                        Ok(())
                    } else {
                        Err(format!("CORS {route}: good {good:?} bad {bad:?}"))
                    }
                })
            },
        ));
    }
    cases
}

async fn preflight(addr: SocketAddr, route: &str, origin: &str) -> String {
    let mut tcp = tcp_from(next_ip(), addr).await;
    let req = format!(
        "OPTIONS {route} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split("\r\n\r\n").next().unwrap_or("").to_owned()
}

/// A WebSocket upgrade of `path` with extra header lines: the status (0 when the server
/// closed without answering) and the response head.
async fn upgrade_with(addr: SocketAddr, path: &str, extra: &[&str]) -> (u16, String) {
    let mut tcp = tcp_from(next_ip(), addr).await;
    let _ = tcp
        .write_all(upgrade_request(addr, path, extra).as_bytes())
        .await;
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(PATIENCE, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// (room, query, token) for a production connection of `d` with a valid token.
fn token_query(s: &TestServer, d: Dialect, user: &str, room: &str) -> (String, String, String) {
    let token = s.app.auth.issue(user, room).token;
    let q = match d {
        SocketIo | Octate => String::new(),
        _ => format!("token={token}"),
    };
    (room.to_owned(), q, token)
}

fn uuid_like_fixed(q: &(String, String, String)) -> String {
    q.0.clone()
}

/// Whether `token` (empty: none) is refused for a production connection of `d` to `room`.
async fn refused_in_production(s: &TestServer, d: Dialect, room: &str, token: &str) -> bool {
    match d {
        Octate => {
            let (addr, path) = endpoint(s, d, room, "");
            let (_, ws) = RawWs::open(next_ip(), addr, &path).await;
            let mut c = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            let mut auth = json!({"type":"auth","userId":"me","roomId":room});
            if !token.is_empty() {
                auth["data"] = json!({ "token": token });
            }
            c.text(&auth.to_string()).await;
            let seen = c.seen(Duration::from_millis(500)).await;
            !seen.texts.iter().any(|t| t.contains("\"authenticated\""))
        }
        SocketIo => {
            let (addr, path) = endpoint(s, d, room, "");
            let (status, ws) = RawWs::open(next_ip(), addr, &path).await;
            if status != 101 {
                return true;
            }
            let mut c = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            c.next_text(Duration::from_secs(2)).await;
            if token.is_empty() {
                c.text("40").await;
            } else {
                c.text(&format!(r#"40{{"token":"{token}"}}"#)).await;
            }
            if !c
                .next_text(Duration::from_secs(2))
                .await
                .is_some_and(|t| t.starts_with("40"))
            {
                return true;
            }
            // Connected: the token's room decides what it may join. The room exists,
            // made as an admin makes a Socket.io room in production.
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
            !c.seen(Duration::from_millis(500))
                .await
                .texts
                .iter()
                .any(|t| t.contains("room-participants"))
        }
        Rendezvous | Nt | YWebrtc => {
            let q = if token.is_empty() {
                String::new()
            } else {
                format!("token={token}")
            };
            let (addr, path) = endpoint(s, d, room, &q);
            let (status, ws) = RawWs::open(next_ip(), addr, &path).await;
            if status != 101 {
                return true;
            }
            // Upgraded: the first step must then be refused.
            let mut c = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            match d {
                Rendezvous => {
                    c.text(r#"{"type":"join"}"#).await;
                    !c.seen(Duration::from_millis(500))
                        .await
                        .texts
                        .iter()
                        .any(|t| t.contains("\"ready\""))
                }
                YWebrtc => {
                    c.text(&json!({"type":"subscribe","topics":[room]}).to_string())
                        .await;
                    c.text(r#"{"type":"ping"}"#).await;
                    let seen = c.seen(Duration::from_millis(500)).await;
                    !seen.error_codes().is_empty() || seen.ended
                }
                _ => c.seen(Duration::from_millis(500)).await.ended,
            }
        }
    }
}

/// Whether a second connection claiming the first one's id in `room` is refused while the
/// first stays.
async fn squat(s: &TestServer, d: Dialect, room: &str) -> bool {
    let _ = s;
    match d {
        Octate => {
            let mut a = Conn::open(s, Octate, "").await; // "me" in its own room
            let (addr, path) = endpoint(s, Octate, "", "");
            let (_, ws) = RawWs::open(next_ip(), addr, &path).await;
            let mut b = Conn {
                dialect: Octate,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            let target = a.room.clone();
            b.text(&json!({"type":"auth","userId":"me","roomId":target}).to_string())
                .await;
            b.expect_type("auth").await;
            b.text(&json!({"type":"join-room","roomId":target}).to_string())
                .await;
            let refused = b
                .seen(Duration::from_millis(300))
                .await
                .error_codes()
                .iter()
                .any(|c| c == "duplicate_peer" || c == "peer_id_taken");
            refused && a.alive().await
        }
        Rendezvous => {
            let (addr, path) = endpoint(s, d, room, "");
            let (_, ws) = RawWs::open(next_ip(), addr, &path).await;
            let mut a = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            a.text(r#"{"type":"join","peerId":"holder"}"#).await;
            a.expect_type("ready").await;
            let (_, ws) = RawWs::open(next_ip(), addr, &path).await;
            let mut b = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            b.text(r#"{"type":"join","peerId":"holder"}"#).await;
            let seen = b.seen(Duration::from_millis(500)).await;
            seen.error_codes().iter().any(|c| c == "peer_id_taken") && a.alive().await
        }
        Nt => {
            let mut a = Conn::open(s, Nt, "").await;
            let path = a.partner_path();
            let (_, ws) = RawWs::open(next_ip(), s.http, &path).await;
            let mut third = Conn {
                dialect: Nt,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            let seen = third.seen(Duration::from_millis(500)).await;
            seen.close
                .as_ref()
                .is_some_and(|(c, r)| *c == 1008 && r.contains("busy"))
                && a.alive().await
        }
        SocketIo => {
            let mut a = Conn::open(s, SocketIo, "").await;
            // The room a joined: find it through the registry's only Socket.io room named
            // for "me" is not possible from outside; create a fresh pair instead.
            let (_, body) = http("POST", s.socketio, "/api/rooms", None, &[]).await;
            let room = body["roomId"].as_str().unwrap().to_owned();
            let join = format!(r#"42["join-room","{room}","holder"]"#);
            let (addr, path) = endpoint(s, d, "", "");
            let (_, ws) = RawWs::open(next_ip(), addr, &path).await;
            let mut h = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            h.next_text(Duration::from_secs(2)).await;
            h.text("40").await;
            h.next_text(Duration::from_secs(2)).await;
            h.text(&join).await;
            h.seen(Duration::from_millis(200)).await;
            let (_, ws) = RawWs::open(next_ip(), addr, &path).await;
            let mut b = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            b.next_text(Duration::from_secs(2)).await;
            b.text("40").await;
            b.next_text(Duration::from_secs(2)).await;
            b.text(&join).await;
            let seen = b.seen(Duration::from_millis(300)).await;
            seen.error_codes()
                .iter()
                .any(|m| m.contains("already in this room"))
                && h.alive().await
                && a.alive().await
        }
        YWebrtc => true,
    }
}

/// A connection of `d` from `ip`, held open, if the server admits it.
async fn admitted_from(s: &TestServer, d: Dialect, ip: IpAddr) -> Option<Conn> {
    let (addr, path) = endpoint(s, d, &uuid_like(), "");
    let (status, ws) = RawWs::open(ip, addr, &path).await;
    if status != 101 {
        return None;
    }
    let mut c = Conn {
        dialect: d,
        room: String::new(),
        ws,
        pending: Vec::new(),
        partner: None,
    };
    if d == SocketIo {
        // Admission runs at the namespace connect.
        c.next_text(Duration::from_secs(2)).await;
        c.text("40").await;
        let ack = c.next_text(Duration::from_secs(2)).await?;
        return ack.starts_with("40{").then_some(c);
    }
    Some(c)
}

/// Creates one room of `d` from `ip`; false when refused.
async fn create_room_from(s: &TestServer, d: Dialect, ip: IpAddr) -> bool {
    let room = uuid_like();
    match d {
        SocketIo => {
            let (status, _) = http_from(ip, "POST", s.socketio, "/api/rooms", None, &[]).await;
            status == 200
        }
        Octate => {
            let (_, ws) = RawWs::open(ip, s.signaling, "/").await;
            let mut c = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            c.text(&json!({"type":"auth","userId":"me","roomId":room}).to_string())
                .await;
            c.expect_type("auth").await;
            c.text(&json!({"type":"create-room","roomId":room}).to_string())
                .await;
            c.next_text(Duration::from_secs(2))
                .await
                .is_some_and(|t| t.contains("room-created"))
        }
        Rendezvous => {
            let (_, ws) = RawWs::open(ip, s.http, &format!("/ws?room={room}")).await;
            let mut c = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            c.text(r#"{"type":"join"}"#).await;
            c.next_text(Duration::from_secs(2))
                .await
                .is_some_and(|t| t.contains("ready"))
        }
        Nt => unreachable!("nt rooms are counted in bulk"),
        YWebrtc => {
            let (_, ws) = RawWs::open(ip, s.http, "/y-webrtc").await;
            let mut c = Conn {
                dialect: d,
                room: String::new(),
                ws,
                pending: Vec::new(),
                partner: None,
            };
            c.text(&json!({"type":"subscribe","topics":[room]}).to_string())
                .await;
            c.text(r#"{"type":"ping"}"#).await;
            // The refusal, if any, comes before the pong.
            loop {
                match c.next_text(Duration::from_secs(2)).await {
                    Some(t) if t.contains("pong") => return true,
                    Some(t) if error_code(&t).is_some() => return false,
                    Some(_) => {}
                    None => return false,
                }
            }
        }
    }
}

/// The bystanders' round trip: an offer from a to b and the answer back, median of `n`.
async fn round_trip(a: &mut Client, b: &mut Client, room: &str, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = tokio::time::Instant::now();
        a.send(json!({"type":"sdp-offer","roomId":room,"data":{"peer":"bob","offer":{"sdp":"o"}}}))
            .await;
        b.recv_type("sdp-offer").await;
        b.send(
            json!({"type":"sdp-answer","roomId":room,"data":{"peer":"alice","answer":{"sdp":"a"}}}),
        )
        .await;
        a.recv_type("sdp-answer").await;
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attack_suite() {
    let servers = Servers {
        dev: TestServer::with(dev_config()).await,
        limited: TestServer::with(Config {
            max_connections_per_ip: 20,
            ..dev_config()
        })
        .await,
        prod: TestServer::with(prod_config()).await,
    };
    // Bystanders on the dev server: Alice and Bob keep signaling through every case.
    let url = servers.dev.signaling_url();
    let mut a = Client::connect(&url).await;
    a.send(json!({"type":"auth","userId":"alice","roomId":"calm"}))
        .await;
    a.recv_type("auth").await;
    a.send(json!({"type":"create-room","roomId":"calm"})).await;
    a.recv_type("room-created").await;
    let mut b = Client::connect(&url).await;
    b.send(json!({"type":"auth","userId":"bob","roomId":"calm"}))
        .await;
    b.recv_type("auth").await;
    b.send(json!({"type":"join-room","roomId":"calm"})).await;
    b.recv_type("room-joined").await;
    a.recv_type("peer-joined").await;
    let baseline = round_trip(&mut a, &mut b, "calm", 21).await;
    let bound = (baseline * 5).max(baseline + Duration::from_millis(20));

    let mut cases = payload_cases();
    cases.extend(transport_cases());
    cases.extend(auth_cases());
    cases.extend(squatting_cases());
    cases.extend(cors_cases());
    let mut failures = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut worst = Duration::ZERO;
    for c in &cases {
        let r = tokio::time::timeout(Duration::from_secs(20), (c.run)(&servers)).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push(format!("{}: {}: timed out", c.dialect.name(), c.name)),
        }
        *counts.entry(c.dialect.name()).or_default() += 1;
        let rt = round_trip(&mut a, &mut b, "calm", 3).await;
        worst = worst.max(rt);
        if rt > bound {
            failures.push(format!(
                "{}: {}: bystander round trip {rt:?} (baseline {baseline:?})",
                c.dialect.name(),
                c.name
            ));
        }
    }
    let per: Vec<String> = counts.iter().map(|(d, n)| format!("{d} {n}")).collect();
    println!(
        "attack suite: {} cases ({}), {} failed; bystander round trip {baseline:?} before, worst {worst:?} after a case",
        cases.len(),
        per.join(", "),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
