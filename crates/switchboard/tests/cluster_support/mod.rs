//! Real components for the cluster tests: Debian's `redis-server` on a free loopback port,
//! `switchboard` processes (the binary this package builds) on port 0, and a loopback TCP
//! proxy the test can cut. Every process is started here and stopped here, by its PID.
#![allow(dead_code)]

pub mod peers;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a process may take to start.
const START: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Sends `sig` to a process this test started.
fn signal(child: &Child, sig: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
}

/// Reads a child's stdout lines into a watch channel (the last 200 lines), so that a test
/// can wait for a line and print what a process said when something fails.
fn capture(child: &mut Child, name: &str) -> watch::Receiver<Vec<String>> {
    let (tx, rx) = watch::channel(Vec::new());
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    for (stream, tx) in [
        (
            Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            tx.clone(),
        ),
        (
            Box::new(err) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            tx,
        ),
    ] {
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if std::env::var_os("CLUSTER_TEST_LOG").is_some() {
                    eprintln!("[{name}] {l}");
                }
                tx.send_modify(|v| {
                    v.push(l);
                    if v.len() > 200 {
                        v.remove(0);
                    }
                });
            }
        });
    }
    rx
}

async fn wait_line(
    rx: &mut watch::Receiver<Vec<String>>,
    what: &str,
    pick: impl Fn(&str) -> Option<String>,
) -> String {
    let deadline = Instant::now() + START;
    loop {
        if let Some(hit) = rx.borrow().iter().find_map(|l| pick(l)) {
            return hit;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("{what} in time; output:\n{}", rx.borrow().join("\n"));
        }
    }
}

/// `redis-server` on a free loopback port, no persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub async fn start() -> Self {
        let port = free_port().await;
        let mut r = Self { port, child: None };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let bin = ["/usr/bin/redis-server", "/usr/sbin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect(
                "redis-server is installed (scripts/test-all.sh installs Debian's redis-server)",
            );
        let mut child = Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "notice",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        let mut rx = capture(&mut child, "redis");
        wait_line(&mut rx, "redis-server ready", |l| {
            l.contains("Ready to accept connections").then(String::new)
        })
        .await;
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops it by PID (SIGKILL: no chance to save anything).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait().await;
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing is answered, as with a
    /// Redis stalled by a slow disk or a long command.
    pub fn pause(&self) {
        signal(self.child.as_ref().expect("running"), libc::SIGSTOP);
    }

    /// Lets a paused Redis go on (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running"), libc::SIGCONT);
    }

    /// Starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c, libc::SIGKILL);
        }
    }
}

/// One `switchboard` process in cluster mode.
pub struct Node {
    pub name: String,
    pub http: SocketAddr,
    pub signaling: SocketAddr,
    pub socketio: SocketAddr,
    child: Option<Child>,
    out: watch::Receiver<Vec<String>>,
}

impl Node {
    /// Starts a node on `redis_url` with extra settings, and waits until it is ready.
    pub async fn start(name: &str, redis_url: &str, env: &[(&str, &str)]) -> Self {
        let node = Self::spawn(name, redis_url, env).await;
        node.wait_ready(true).await;
        node
    }

    /// Starts a node without waiting for readiness.
    pub async fn spawn(name: &str, redis_url: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("SIGNALING_PORT", "0")
            .env("SOCKETIO_PORT", "0")
            .env("REDIS_URL", redis_url)
            .env("NODE_ID", name)
            .env("CLUSTER_LEASE", "2s")
            .env("LOG_LEVEL", "info")
            .env("LOG_FORMAT", "text")
            .env("HTTP_REQUESTS_PER_SECOND", "0")
            .env("MAX_MESSAGES_PER_SECOND", "0")
            .env("ROOM_CREATIONS_PER_MINUTE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start switchboard");
        let mut out = capture(&mut child, name);
        let line = wait_line(&mut out, "switchboard listening", |l| {
            l.strip_prefix("listening ").map(str::to_owned)
        })
        .await;
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .unwrap()
                .parse()
                .unwrap()
        };
        Self {
            name: name.to_owned(),
            http: addr("http="),
            signaling: addr("signaling="),
            socketio: addr("socketio="),
            child: Some(child),
            out,
        }
    }

    /// Waits until `/readyz` answers `ready` (or, with `false`, not ready).
    pub async fn wait_ready(&self, ready: bool) {
        let deadline = Instant::now() + START;
        loop {
            let (status, _) = http_quick(self.http, "/readyz").await;
            if (status == 200) == ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: /readyz never became {}; output:\n{}",
                self.name,
                if ready { "ready" } else { "not ready" },
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signaling_url(&self) -> String {
        format!("ws://{}/", self.signaling)
    }

    pub fn output(&self) -> String {
        self.out.borrow().join("\n")
    }

    /// `kill -9`, by PID.
    /// Resident memory in bytes (`VmRSS`).
    pub fn rss(&self) -> u64 {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait().await;
        }
    }

    /// SIGTERM, by PID; returns the exit status once it exits (bounded).
    pub async fn term(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        signal(&c, libc::SIGTERM);
        tokio::time::timeout(Duration::from_secs(20), c.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c, libc::SIGKILL);
        }
    }
}

/// A raw HTTP GET that answers quickly even when the server is slow (status 0 on failure).
pub async fn http_quick(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let go = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(3), go)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, String::new()))
}

/// A loopback TCP proxy to `upstream` that the test can cut (every connection closed, new
/// ones refused) and heal.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let (cut, generation) = (cut.clone(), generation.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let mut gen_rx = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
                        tokio::select! {
                            _ = tokio::io::copy(&mut cr, &mut sw) => {}
                            _ = tokio::io::copy(&mut sr, &mut cw) => {}
                            _ = gen_rx.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            cut,
            generation,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
