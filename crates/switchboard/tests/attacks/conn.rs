//! One attacking connection of any dialect, over a raw socket so that any frame (well
//! formed or not) can be sent, and what it reads back.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::process::{RawWs, upgrade_request};
use crate::support::{PATIENCE, TestServer, http, tcp_from};

/// The dialects, each with its own endpoint and first step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Octate,
    SocketIo,
    Rendezvous,
    Nt,
    YWebrtc,
}

use Dialect::*;

pub const ALL: [Dialect; 5] = [Octate, SocketIo, Rendezvous, Nt, YWebrtc];

impl Dialect {
    pub fn name(self) -> &'static str {
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
pub fn next_ip() -> IpAddr {
    static N: AtomicU8 = AtomicU8::new(10);
    let n = N.fetch_add(1, Ordering::Relaxed);
    IpAddr::V4(Ipv4Addr::new(127, 0, 1 + n / 200, 2 + n % 200))
}

/// A fresh room id, shaped like the UUIDs the servers hand out.
pub fn uuid_like() -> String {
    static N: AtomicU32 = AtomicU32::new(1);
    format!(
        "a77ac4e5-0000-4000-8000-{:012}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `d`'s endpoint on `s` for `room`, with `query` appended.
pub fn endpoint(s: &TestServer, d: Dialect, room: &str, query: &str) -> (SocketAddr, String) {
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
        let sep = if path.contains('?') { '&' } else { '?' };
        (addr, format!("{path}{sep}{query}"))
    }
}

/// One open connection of a dialect.
pub struct Conn {
    pub dialect: Dialect,
    /// The connection's own room (OctateCode, rendezvous, nt).
    pub room: String,
    pub ws: RawWs,
    /// Bytes read but not yet looked at.
    pending: Vec<u8>,
    /// nt: the other side, which receives what this side relays.
    pub partner: Option<Box<Conn>>,
}

/// What came back after an attack.
#[derive(Debug, Default)]
pub struct Seen {
    pub texts: Vec<String>,
    pub close: Option<(u16, String)>,
    /// The connection ended (close frame or not).
    pub ended: bool,
}

impl Seen {
    pub fn error_codes(&self) -> Vec<String> {
        self.texts.iter().filter_map(|t| error_code(t)).collect()
    }
}

/// The error code (or Socket.io error message) in a server frame, if it is an error.
pub fn error_code(text: &str) -> Option<String> {
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
    /// Wraps an upgraded socket whose first step is still to take.
    pub fn wrap(dialect: Dialect, ws: RawWs) -> Self {
        Self {
            dialect,
            room: String::new(),
            ws,
            pending: Vec::new(),
            partner: None,
        }
    }

    /// Upgrades to `d`'s endpoint on `s` for `room` (with `query`) from a fresh address,
    /// without taking the first step.
    pub async fn upgrade(s: &TestServer, d: Dialect, room: &str, query: &str) -> (u16, Self) {
        Self::upgrade_from(next_ip(), s, d, room, query).await
    }

    pub async fn upgrade_from(
        ip: IpAddr,
        s: &TestServer,
        d: Dialect,
        room: &str,
        query: &str,
    ) -> (u16, Self) {
        let (addr, path) = endpoint(s, d, room, query);
        let (status, ws) = RawWs::open(ip, addr, &path).await;
        let mut c = Self::wrap(d, ws);
        c.room = room.to_owned();
        (status, c)
    }

    /// Opens `dialect`'s endpoint on `s` (a fresh room per connection), with `query`
    /// appended, and takes the first step.
    pub async fn open(s: &TestServer, dialect: Dialect, query: &str) -> Self {
        let (status, mut c) = Self::upgrade(s, dialect, &uuid_like(), query).await;
        assert_eq!(status, 101, "{dialect:?} upgrade");
        c.establish(s).await;
        c
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
                let mut b = Self::wrap(Nt, ws);
                b.room = self.room.clone();
                b.expect_type("room_full").await;
                self.expect_type("room_full").await;
                self.partner = Some(Box::new(b));
            }
            SocketIo => {
                let ack = self.sio_connect("").await.expect("connect");
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

    /// Socket.io: reads Engine.IO's open packet, connects to the namespace with `auth`
    /// (a JSON object, or empty for none) and returns the answer (`40{…}` or `44{…}`).
    pub async fn sio_connect(&mut self, auth: &str) -> Option<String> {
        self.next_text(Duration::from_secs(2)).await;
        self.text(&format!("40{auth}")).await;
        self.next_text(Duration::from_secs(2)).await
    }

    /// nt: side B of this connection's room.
    pub fn partner_path(&self) -> String {
        format!("/ws?appID={}&side=B", self.room)
    }

    pub async fn text(&mut self, t: &str) {
        let _ = self.ws.try_frame(true, 1, t.as_bytes()).await;
    }

    pub async fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let _ = self.ws.try_frame(fin, opcode, payload).await;
    }

    pub async fn raw(&mut self, bytes: &[u8]) {
        let _ = self.ws.tcp.write_all(bytes).await;
    }

    /// The next text frame within `within`; `None` on close or silence. Pings are
    /// answered, Engine.IO pings too.
    pub async fn next_text(&mut self, within: Duration) -> Option<String> {
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

    pub async fn expect_type(&mut self, kind: &str) -> Value {
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
    pub async fn seen(&mut self, within: Duration) -> Seen {
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

    /// Sends the dialect's probe (see [`probe_of`]) and waits for its answer.
    pub async fn probe(&mut self) -> Option<Vec<String>> {
        self.text(probe_of(self.dialect).0).await;
        self.probe_answer().await
    }

    /// Waits for the answer to a probe already sent. Returns the frames this connection
    /// received before it (nt: by the time side B got the relayed probe), or `None` when
    /// the answer never came.
    ///
    /// Messages on one connection are handled in arrival order, so anything the server
    /// answered to an earlier message arrives before the probe's answer.
    pub async fn probe_answer(&mut self) -> Option<Vec<String>> {
        let answered = probe_of(self.dialect).1;
        if self.dialect == Nt {
            let b = self.partner.as_mut()?;
            for _ in 0..20 {
                if answered(&b.next_text(Duration::from_secs(3)).await?) {
                    return Some(self.seen(Duration::from_millis(50)).await.texts);
                }
            }
            return None;
        }
        let mut before = Vec::new();
        for _ in 0..20 {
            let t = self.next_text(Duration::from_secs(3)).await?;
            if answered(&t) {
                return Some(before);
            }
            before.push(t);
        }
        None
    }

    /// Whether the connection still works: its probe is answered.
    pub async fn alive(&mut self) -> bool {
        self.probe().await.is_some()
    }
}

/// A dialect's probe: a message it always answers, and how to tell the answer (nt: the
/// offer as side B receives it).
pub fn probe_of(d: Dialect) -> (&'static str, fn(&str) -> bool) {
    match d {
        Octate => (r#"{"type":"ping"}"#, |t| json_of(t)["type"] == "heartbeat"),
        Rendezvous => (r#"{"type":"signal","to":"ghost","data":{}}"#, |t| {
            json_of(t)["code"] == "peer_not_found"
        }),
        YWebrtc => (r#"{"type":"ping"}"#, |t| json_of(t)["type"] == "pong"),
        SocketIo => (r#"42["join-room","no-such-room","me2"]"#, |t| {
            t.contains("Room not found")
        }),
        Nt => (r#"{"type":"offer","sdp":"still here"}"#, |t| {
            t.contains("still here")
        }),
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text.trim_end()).unwrap_or(Value::Null)
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

/// A WebSocket upgrade of `path` with extra header lines: the status (0 when the server
/// closed without answering) and the response head.
pub async fn upgrade_with(addr: SocketAddr, path: &str, extra: &[&str]) -> (u16, String) {
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
