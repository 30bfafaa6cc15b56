//! Loopback-only connections.
//!
//! The tool refuses any server that is not on this machine's loopback interface
//! (127.0.0.0/8, `::1` or `localhost`). To get past the ~28k ephemeral ports that one
//! source address has towards one server port, IPv4 clients bind their socket to a source
//! address that cycles over 127.0.0.2 ..= 127.0.0.250 before connecting; Linux routes all of
//! 127.0.0.0/8 to `lo`, so no setup is needed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::http::Uri;

/// A client WebSocket over plain TCP (no TLS: loopback only).
pub type Ws = WebSocketStream<TcpStream>;

/// First and last host byte of the source addresses IPv4 clients cycle over.
const SOURCE_FIRST: u8 = 2;
const SOURCE_LAST: u8 = 250;

/// A checked `ws://` URL of a loopback server and where to connect for it.
#[derive(Debug)]
pub struct Target {
    /// The URL as given (scheme, authority and path; a query is kept).
    url: String,
    /// The resolved loopback address.
    addr: SocketAddr,
    /// Whether to spread source addresses (IPv4 only).
    spread: bool,
    next_source: AtomicUsize,
}

impl Target {
    /// Parses and checks `url`. Only `ws://` is accepted, and the host must be a loopback
    /// address or `localhost` (which must resolve to loopback addresses only).
    pub async fn resolve(url: &str, spread_sources: bool) -> Result<Self> {
        let (host, port) = parse_loopback_url(url)?;
        let addr = if host.eq_ignore_ascii_case("localhost") {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(("localhost", port))
                .await
                .context("resolving localhost")?
                .collect();
            if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                bail!("localhost resolves to {bad}, which is not a loopback address");
            }
            // Prefer IPv4 so that source addresses can be spread.
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .copied()
                .context("localhost resolves to nothing")?
        } else {
            SocketAddr::new(host.parse::<IpAddr>().expect("checked by parse"), port)
        };
        Ok(Self {
            url: url.to_owned(),
            addr,
            spread: spread_sources && addr.is_ipv4(),
            next_source: AtomicUsize::new(0),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether connections cycle over source addresses.
    pub fn spreads(&self) -> bool {
        self.spread
    }

    /// The resolved loopback address and port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a TCP connection (from the next source address) and performs the WebSocket
    /// handshake for `url`, which must be this target's URL with a path or query changed.
    pub async fn connect(&self, url: &str) -> Result<Ws> {
        let stream = self.connect_tcp().await?;
        // Signaling frames are small and latency-sensitive.
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (ws, _response) = tokio_tungstenite::client_async(url, stream)
            .await
            .with_context(|| format!("WebSocket handshake with {url}"))?;
        Ok(ws)
    }

    /// Opens a plain TCP connection to the target from the next source address (the
    /// `soak` scenario's slowloris sockets speak raw HTTP on it).
    pub async fn connect_tcp(&self) -> Result<TcpStream> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("creating socket")?;
        if self.spread {
            let n = self.next_source.fetch_add(1, Ordering::Relaxed);
            let src = SocketAddr::new(IpAddr::V4(source_address(n)), 0);
            socket
                .bind(src)
                .with_context(|| format!("binding source address {src}"))?;
        }
        socket
            .connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))
    }
}

/// Largest HTTP response [`Target::http_post`] reads.
const MAX_HTTP_RESPONSE: u64 = 64 * 1024;

impl Target {
    /// `POST path` with an empty body over plain HTTP/1.1 to the target's host and port
    /// (the scheme of the `ws://` URL aside, the same listener). Returns the status and the
    /// body (at most 64 KiB; not chunked: the server sends a `Content-Length`, and the
    /// connection is closed after the response). The caller bounds the time.
    ///
    /// # Errors
    /// Connect or I/O failure, or a response that is not HTTP/1.x.
    pub async fn http_post(&self, path: &str) -> Result<(u16, String)> {
        let mut stream = self.connect_tcp().await?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream
            .write_all(request.as_bytes())
            .await
            .context("sending an HTTP request")?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_HTTP_RESPONSE)
            .read_to_end(&mut response)
            .await
            .context("reading an HTTP response")?;
        parse_http_response(&String::from_utf8_lossy(&response))
    }
}

/// The status and body of a complete HTTP/1.x response.
fn parse_http_response(response: &str) -> Result<(u16, String)> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("incomplete HTTP response {response:?}"))?;
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP/1.x response: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The `n`th source address of the cycle (127.0.0.2 ..= 127.0.0.250).
fn source_address(n: usize) -> Ipv4Addr {
    let span = usize::from(SOURCE_LAST - SOURCE_FIRST) + 1;
    let host = SOURCE_FIRST + u8::try_from(n % span).expect("span fits in u8");
    Ipv4Addr::new(127, 0, 0, host)
}

/// Checks that `url` is `ws://` with a loopback host; returns the host (without IPv6
/// brackets) and the port (default 80).
pub fn parse_loopback_url(url: &str) -> Result<(String, u16)> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => bail!("wss:// is not supported: the benchmark is loopback-only, use ws://"),
        other => bail!("URL {url:?} must start with ws:// (got scheme {other:?})"),
    }
    let host = uri
        .host()
        .with_context(|| format!("URL {url:?} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    if host.eq_ignore_ascii_case("localhost") {
        return Ok((host.to_owned(), port));
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok((host.to_owned(), port)),
        Ok(ip) => bail!(
            "refusing {ip}: the benchmark only connects to loopback (127.0.0.0/8, ::1, localhost)"
        ),
        Err(_) => bail!(
            "refusing host {host:?}: the benchmark only connects to loopback \
             (127.0.0.0/8, ::1, localhost)"
        ),
    }
}

/// `base` with `?room=<room>` (or `&room=` if it already has a query) appended.
pub fn with_query(base: &str, key: &str, value: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{key}={value}")
}

/// `base` with `segment` appended as the last path segment.
pub fn with_path_segment(base: &str, segment: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base, None),
    };
    let slash = if path.ends_with('/') { "" } else { "/" };
    match query {
        Some(q) => format!("{path}{slash}{segment}?{q}"),
        None => format!("{path}{slash}{segment}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_urls() {
        for (url, host, port) in [
            ("ws://127.0.0.1:3001/", "127.0.0.1", 3001),
            ("ws://127.9.8.7:3000/ws", "127.9.8.7", 3000),
            ("ws://[::1]:3536/room", "::1", 3536),
            ("ws://localhost:3000/ws", "localhost", 3000),
            ("ws://LOCALHOST/", "LOCALHOST", 80),
        ] {
            assert_eq!(
                parse_loopback_url(url).unwrap(),
                (host.to_owned(), port),
                "{url}"
            );
        }
    }

    #[test]
    fn refuses_everything_else() {
        for url in [
            "ws://10.0.0.1:3000/",
            "ws://0.0.0.0:3000/",
            "ws://128.0.0.1:3000/",
            "ws://[::2]:3000/",
            "ws://[::ffff:10.0.0.1]:3000/",
            "ws://example.com/",
            "ws://localhost.example.com/",
            "wss://127.0.0.1/",
            "http://127.0.0.1/",
            "127.0.0.1:3000",
            "not a url",
        ] {
            assert!(parse_loopback_url(url).is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn source_addresses_cycle_within_loopback() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_address(248), Ipv4Addr::new(127, 0, 0, 250));
        assert_eq!(source_address(249), Ipv4Addr::new(127, 0, 0, 2));
        assert!((0..1000).all(|n| source_address(n).is_loopback()));
    }

    #[test]
    fn url_building() {
        assert_eq!(
            with_query("ws://127.0.0.1:3000/ws", "room", "a1"),
            "ws://127.0.0.1:3000/ws?room=a1"
        );
        assert_eq!(
            with_query("ws://127.0.0.1:3000/ws?key=k", "room", "a1"),
            "ws://127.0.0.1:3000/ws?key=k&room=a1"
        );
        assert_eq!(
            with_path_segment("ws://127.0.0.1:3536/", "r1"),
            "ws://127.0.0.1:3536/r1"
        );
        assert_eq!(
            with_path_segment("ws://127.0.0.1:3536", "r1"),
            "ws://127.0.0.1:3536/r1"
        );
        assert_eq!(
            with_path_segment("ws://127.0.0.1:3536/x?k=1", "r1"),
            "ws://127.0.0.1:3536/x/r1?k=1"
        );
    }

    #[test]
    fn http_responses() {
        assert_eq!(
            parse_http_response(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"roomId\":\"a\"}"
            )
            .unwrap(),
            (200, r#"{"roomId":"a"}"#.to_owned())
        );
        assert_eq!(
            parse_http_response("HTTP/1.1 429 Too Many Requests\r\n\r\n").unwrap(),
            (429, String::new())
        );
        assert!(parse_http_response("HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_http_response("SSH-2.0\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn resolve_keeps_ipv6_unspread() {
        let t = Target::resolve("ws://[::1]:9/", true).await.unwrap();
        assert!(!t.spread);
        let t = Target::resolve("ws://127.0.0.1:9/", true).await.unwrap();
        assert!(t.spread);
        assert!(Target::resolve("ws://192.168.1.1:9/", true).await.is_err());
    }
}
