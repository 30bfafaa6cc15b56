//! Test fixtures: the real server on port 0 in this process, and real WebSocket clients.
#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard::{AppState, Config, Listeners, Shutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A running server.
pub struct TestServer {
    pub http: SocketAddr,
    pub signaling: SocketAddr,
    pub socketio: SocketAddr,
    pub app: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A config for tests: loopback, port 0.
pub fn test_config() -> Config {
    Config {
        host: "127.0.0.1".parse().unwrap(),
        port: 0,
        signaling_port: 0,
        socketio_port: 0,
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(test_config()).await
    }

    pub async fn with(config: Config) -> Self {
        let listeners = Listeners {
            http: TcpListener::bind((config.host, config.port)).await.unwrap(),
            signaling: TcpListener::bind((config.host, config.signaling_port))
                .await
                .unwrap(),
            socketio: TcpListener::bind((config.host, config.socketio_port))
                .await
                .unwrap(),
        };
        let http = listeners.http.local_addr().unwrap();
        let signaling = listeners.signaling.local_addr().unwrap();
        let socketio = listeners.socketio.local_addr().unwrap();
        let app = AppState::new(config, Shutdown::new());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(switchboard::serve(app.clone(), listeners, async move {
            let _ = rx.await;
        }));
        Self {
            http,
            signaling,
            socketio,
            app,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// `ws://<signaling>/`
    pub fn signaling_url(&self) -> String {
        format!("ws://{}/", self.signaling)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Stops the server and waits for it to finish draining.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("server stops")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The HTTP status a WebSocket upgrade to `url` gets: 101 when it is accepted.
pub async fn ws_status(url: &str) -> u16 {
    use tokio_tungstenite::tungstenite::Error;
    match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("an answer in time")
    {
        Ok(_) => 101,
        Err(Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// A WebSocket client speaking JSON.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects from the loopback address `from` (see [`tcp_from`]).
    pub async fn connect_from(from: std::net::IpAddr, url: &str) -> Self {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap();
        let addr: SocketAddr = host.parse().unwrap();
        let tcp = MaybeTlsStream::Plain(tcp_from(from, addr).await);
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(url, tcp))
            .await
            .expect("connect in time")
            .expect("connect");
        Self { ws }
    }

    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        Self { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_owned())).await.unwrap();
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.ws.send(Message::binary(b)).await.unwrap();
    }

    /// The next text frame, as raw text (pings and pongs skipped).
    pub async fn recv_text(&mut self) -> String {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("stream open")
                .expect("no socket error");
            match msg {
                Message::Text(t) => return t.to_string(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// The next text frame, parsed.
    pub async fn recv(&mut self) -> Value {
        let t = self.recv_text().await;
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
    }

    /// The next frame whose `type` is `kind` (others are returned in order if they differ).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], kind, "unexpected frame: {v}");
        v
    }

    /// Asserts nothing arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        match tokio::time::timeout(d, self.ws.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }

    /// Waits for the server's close frame and returns its code and reason.
    pub async fn recv_close(&mut self) -> Option<(u16, String)> {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("close in time");
            match msg {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f: CloseFrame| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    pub fn inner(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.ws
    }
}

/// A minimal HTTP/1.1 client over a raw TCP stream (so tests use no mock HTTP layer).
pub async fn http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let (status, text) = http_raw(
        method,
        addr,
        path,
        body.map(|b| b.to_string()).as_deref(),
        headers,
    )
    .await;
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, v)
}

pub async fn http_raw(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    http_raw_from(LOCAL, method, addr, path, body, headers).await
}

/// The default client address.
pub const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A TCP connection to `addr` from the loopback address `from` (any of 127.0.0.0/8), so
/// that one test can be several clients as per-IP limits see them.
pub async fn tcp_from(from: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    sock.connect(addr).await.unwrap()
}

/// [`http`] from the loopback address `from`.
pub async fn http_from(
    from: std::net::IpAddr,
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let (status, text) = http_raw_from(
        from,
        method,
        addr,
        path,
        body.map(|b| b.to_string()).as_deref(),
        headers,
    )
    .await;
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, v)
}

pub async fn http_raw_from(
    from: std::net::IpAddr,
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tcp_from(from, addr).await;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// Polls `f` until it returns true or `PATIENCE` passes.
pub async fn eventually(mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of a series (name and labels exactly as exposed, e.g.
/// `nt_ws_messages_total{type="join"}`) in a Prometheus text exposition.
pub fn series(text: &str, name: &str) -> f64 {
    series_or(text, name).unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

/// Like [`series`], `None` when the series is absent.
pub fn series_or(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A scrape of `/metrics` on the HTTP port.
pub async fn scrape(server: &TestServer) -> String {
    let (status, text) = http_raw("GET", server.http, "/metrics", None, &[]).await;
    assert_eq!(status, 200);
    text
}

impl Client {
    /// Connects with extra request headers; the refusal's HTTP status when refused.
    pub async fn try_connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::Error;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(req))
            .await
            .expect("an answer in time")
        {
            Ok((ws, _)) => Ok(Self { ws }),
            Err(Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("{url}: {e}"),
        }
    }
}
