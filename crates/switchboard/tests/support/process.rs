//! The real server binary as a child process, for tests that measure what only a whole
//! process shows: resident memory and open descriptors (from `/proc/<pid>`), and a
//! descriptor limit of its own (`ulimit -n` in the shell that starts it).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::{Client, PATIENCE, tcp_from};

/// The server binary, running, stopped (by its PID) when dropped.
pub struct Process {
    child: Child,
    pub http: SocketAddr,
    pub signaling: SocketAddr,
    pub socketio: SocketAddr,
}

impl Process {
    /// Starts the binary on loopback port 0 with `env` (plus quiet logs), under a
    /// descriptor limit of `nofile` when given.
    pub fn start(env: &[(&str, &str)], nofile: Option<u32>) -> Self {
        Self::start_with_args(&[], env, nofile)
    }

    /// [`Process::start`] with command-line arguments too (`--config FILE`).
    pub fn start_with_args(args: &[&str], env: &[(&str, &str)], nofile: Option<u32>) -> Self {
        // SWITCHBOARD_BIN runs the same attacks against another build (an older commit's,
        // to see each test fail where the issue found the server lacking).
        let bin = std::env::var("SWITCHBOARD_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_owned());
        let bin = bin.as_str();
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(args);
        cmd.env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("SIGNALING_PORT", "0")
            .env("SOCKETIO_PORT", "0")
            .env("LOG_LEVEL", "error")
            .env("HTTP_REQUESTS_PER_SECOND", "0")
            .env("ROOM_CREATIONS_PER_MINUTE", "0")
            .env("MAX_MESSAGES_PER_SECOND", "0")
            .env("MAX_CONNECTIONS_PER_IP", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                .parse()
                .unwrap()
        };
        Self {
            http: addr("http="),
            signaling: addr("signaling="),
            socketio: addr("socketio="),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in bytes (`VmRSS`).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// Open descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    pub fn signaling_url(&self) -> String {
        format!("ws://{}/", self.signaling)
    }

    /// Sends SIGTERM, by PID, unless it has exited.
    pub fn sigterm(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
        }
    }

    /// Waits up to 15 s for it to exit: its exit status, or `None` while it still runs.
    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.sigterm();
        if self.wait_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Two OctateCode peers in one room who keep signaling while a test attacks the server.
pub struct Bystanders {
    a: Client,
    b: Client,
    room: String,
}

impl Bystanders {
    /// Alice and Bob meet in `room` on the OctateCode port at `url` (development mode).
    pub async fn meet(url: &str, room: &str) -> Self {
        let mut a = Client::connect(url).await;
        a.send(json!({"type":"auth","userId":"alice","roomId":room}))
            .await;
        a.recv_type("auth").await;
        a.send(json!({"type":"create-room","roomId":room})).await;
        a.recv_type("room-created").await;
        let mut b = Client::connect(url).await;
        b.send(json!({"type":"auth","userId":"bob","roomId":room}))
            .await;
        b.recv_type("auth").await;
        b.send(json!({"type":"join-room","roomId":room})).await;
        b.recv_type("room-joined").await;
        a.recv_type("peer-joined").await;
        Self {
            a,
            b,
            room: room.to_owned(),
        }
    }

    /// An offer and its answer go through, each within [`PATIENCE`].
    pub async fn still_signal(&mut self) {
        let room = &self.room;
        self.a
            .send(
                json!({"type":"sdp-offer","roomId":room,"data":{"peer":"bob","offer":{"sdp":"o"}}}),
            )
            .await;
        assert_eq!(self.b.recv_type("sdp-offer").await["userId"], "alice");
        self.b
            .send(json!({"type":"sdp-answer","roomId":room,"data":{"peer":"alice","answer":{"sdp":"a"}}}))
            .await;
        assert_eq!(self.a.recv_type("sdp-answer").await["userId"], "bob");
    }
}

/// A WebSocket opened by hand over raw TCP, for frames no WebSocket library would send
/// (a first fragment never finished) and for readers that stop reading.
pub struct RawWs {
    pub tcp: TcpStream,
}

impl RawWs {
    /// Upgrades `path` on `addr` from the loopback address `from`; the status line's code
    /// and the socket (after the response head).
    pub async fn open(from: std::net::IpAddr, addr: SocketAddr, path: &str) -> (u16, Self) {
        Self::open_with(from, addr, path, &[]).await
    }

    /// [`open`](Self::open) with extra header lines.
    pub async fn open_with(
        from: std::net::IpAddr,
        addr: SocketAddr,
        path: &str,
        extra: &[&str],
    ) -> (u16, Self) {
        let mut tcp = tcp_from(from, addr).await;
        tcp.write_all(upgrade_request(addr, path, extra).as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(PATIENCE, tcp.read(&mut byte))
                .await
                .expect("a response in time")
                .unwrap();
            assert_eq!(n, 1, "closed during the handshake: {head:?}");
            head.push(byte[0]);
        }
        let status = String::from_utf8_lossy(&head)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        (status, Self { tcp })
    }

    /// Writes one client frame (masked with a zero key, so the payload goes as is).
    pub async fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.try_frame(fin, opcode, payload).await.unwrap();
    }

    /// [`frame`](Self::frame), for a frame the server may refuse before it is all written.
    pub async fn try_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
    ) -> std::io::Result<()> {
        self.tcp
            .write_all(&client_frame(fin, opcode, payload))
            .await
    }

    /// Writes the header of a frame of `len` payload bytes and only `some` of them: a
    /// message begun and never finished. An error means the server closed meanwhile.
    pub async fn frame_start(
        &mut self,
        fin: bool,
        opcode: u8,
        len: usize,
        some: &[u8],
    ) -> std::io::Result<()> {
        let mut f = client_frame(fin, opcode, &[]);
        f.truncate(1);
        match len {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(some);
        self.tcp.write_all(&f).await
    }

    /// Whether the server closed the connection within `within`: `Some` with the close
    /// frame's code and reason (if one came), `None` while it is still open.
    pub async fn closed_within(&mut self, within: Duration) -> Option<Option<(u16, String)>> {
        let start = tokio::time::Instant::now();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let left = within.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, self.tcp.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        Some(last_close_frame(&buf))
    }

    /// Reads until the server closes; returns the close frame's code and reason if one
    /// came, and how long it took.
    pub async fn until_closed(&mut self, within: Duration) -> (Option<(u16, String)>, Duration) {
        let start = tokio::time::Instant::now();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let left = within.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, self.tcp.read(&mut chunk)).await {
                Err(_) => panic!("not closed within {within:?}"),
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        (last_close_frame(&buf), start.elapsed())
    }
}

/// A WebSocket upgrade request for `path` on `addr`, with extra header lines.
pub fn upgrade_request(addr: SocketAddr, path: &str, extra: &[&str]) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req
}

/// One client frame: FIN, opcode, a zero mask key, the payload.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}

/// The close frame among unmasked server frames in `buf`, if there is one.
fn last_close_frame(mut buf: &[u8]) -> Option<(u16, String)> {
    let mut close = None;
    while buf.len() >= 2 {
        let opcode = buf[0] & 0x0f;
        let (len, head) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n @ 0..=125 => (n as usize, 2),
            _ => break,
        };
        let Some(payload) = buf.get(head..head + len) else {
            break;
        };
        if opcode == 8 && payload.len() >= 2 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            close = Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
        }
        buf = &buf[head + len..];
    }
    close
}

/// A Socket.io v4 client over Engine.IO's WebSocket transport, by hand: enough to join a
/// room, emit, and stop reading.
pub struct SioClient {
    pub ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl SioClient {
    /// Opens the Engine.IO session and connects to the `/` namespace (with `auth`).
    pub async fn connect(addr: SocketAddr, auth: Option<Value>) -> Self {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut c = Self { ws };
        let open = c.packet().await;
        assert!(open.starts_with('0'), "{open}");
        let connect = match auth {
            Some(a) => format!("40{a}"),
            None => "40".to_owned(),
        };
        c.ws.send(Message::text(connect)).await.unwrap();
        let ack = c.packet().await;
        assert!(ack.starts_with("40"), "{ack}");
        c
    }

    /// The next Engine.IO packet's text (pings answered on the way).
    pub async fn packet(&mut self) -> String {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a packet in time")
                .expect("open")
                .expect("no error");
            if let Message::Text(t) = msg {
                if t.as_str() == "2" {
                    self.ws.send(Message::text("3")).await.unwrap();
                    continue;
                }
                return t.to_string();
            }
        }
    }

    /// Emits `event` with `args`.
    pub async fn emit(&mut self, event: &str, args: &[Value]) {
        let mut all = vec![json!(event)];
        all.extend_from_slice(args);
        self.ws
            .send(Message::text(format!("42{}", Value::Array(all))))
            .await
            .unwrap();
    }

    /// Reads (and discards) what has arrived, waiting a millisecond for more; how many
    /// packets.
    pub async fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(1), self.ws.next()).await
        {
            n += 1;
        }
        n
    }

    /// An event if one arrives within `wait`.
    pub async fn try_event(&mut self, wait: Duration) -> Option<(String, Vec<Value>)> {
        tokio::time::timeout(wait, self.event()).await.ok()
    }

    /// The next event: its name and arguments.
    pub async fn event(&mut self) -> (String, Vec<Value>) {
        loop {
            let p = self.packet().await;
            if let Some(body) = p.strip_prefix("42") {
                let Value::Array(mut v) = serde_json::from_str(body).unwrap() else {
                    panic!("{p}")
                };
                let name = v.remove(0).as_str().unwrap().to_owned();
                return (name, v);
            }
        }
    }

    /// The next event named `name` (others skipped).
    pub async fn event_named(&mut self, name: &str) -> Vec<Value> {
        loop {
            let (n, args) = self.event().await;
            if n == name {
                return args;
            }
        }
    }
}
