//! Memory protection, connection limits and shutdown.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::process::Process;
use support::*;
use switchboard::Config;

/// Over the critical memory threshold, one admission policy holds for every dialect: new
/// WebSocket connections get HTTP 503 before any upgrade, and connected peers cannot create
/// rooms (they can still join rooms that exist). Socket.io's `connect_error` is covered by
/// the Node test.
#[tokio::test]
async fn over_the_critical_threshold_new_connections_and_rooms_are_refused() {
    let config = Config {
        // One sample at start (normal), none after: the test sets the level itself.
        memory_check_interval: Duration::from_secs(3600).into(),
        ..test_config()
    };
    let s = TestServer::with(config).await;
    eventually(|| s.app.memory.rss_bytes() > 0).await;
    // Peers connected before the pressure.
    let mut host = Client::connect(&s.signaling_url()).await;
    host.send(json!({"type":"auth","userId":"h","roomId":"kept"}))
        .await;
    host.recv_type("auth").await;
    host.send(json!({"type":"create-room","roomId":"kept"}))
        .await;
    host.recv_type("room-created").await;
    let mut octate = Client::connect(&s.signaling_url()).await;
    octate
        .send(json!({"type":"auth","userId":"o","roomId":"new"}))
        .await;
    octate.recv_type("auth").await;
    let mut rdv = Client::connect(&format!("ws://{}/ws?room=fresh", s.http)).await;
    let mut yw = Client::connect(&format!("ws://{}/y-webrtc", s.http)).await;

    let cfg = &s.app.config;
    s.app.memory.record(
        u64::MAX,
        cfg.memory_warning_bytes(),
        cfg.memory_critical_bytes(),
    );
    assert!(s.app.memory.is_critical());

    for url in [
        s.signaling_url(),
        format!("ws://{}/signaling", s.http),
        format!("ws://{}/", s.http),
        format!("ws://{}/ws?room=r", s.http),
        format!(
            "ws://{}/ws?appID=6f1c2a9e-3b8d-4f7a-9c2e-1d5b7a3e9f00&side=A",
            s.http
        ),
        format!("ws://{}/y-webrtc", s.http),
    ] {
        assert_eq!(ws_status(&url).await, 503, "{url}");
    }
    // Room creation, every dialect.
    octate
        .send(json!({"type":"create-room","roomId":"new"}))
        .await;
    let e = octate.recv_type("error").await;
    assert_eq!(e["data"]["code"], "overloaded");
    rdv.send(json!({"type":"join","peerId":"x"})).await;
    assert_eq!(rdv.recv_type("error").await["code"], "overloaded");
    assert_eq!(rdv.recv_close().await.map(|c| c.0), Some(1013));
    yw.send(json!({"type":"subscribe","topics":["t"]})).await;
    assert_eq!(yw.recv_type("error").await["code"], "overloaded");
    for port in [s.http, s.socketio] {
        let (st, b) = http(
            "POST",
            port,
            "/api/rooms",
            Some(&json!({"roomId":"r"})),
            &[],
        )
        .await;
        assert_eq!(
            (st, b["code"].as_str()),
            (503, Some("overloaded")),
            "{port}"
        );
    }
    // Joining a room that exists is not creation.
    octate
        .send(json!({"type":"join-room","roomId":"kept"}))
        .await;
    octate.recv_type("room-joined").await;
    host.recv_type("peer-joined").await;

    let (_, stats) = http("GET", s.http, "/api/stats", None, &[]).await;
    assert_eq!(stats["memory"]["pressure"], "critical");
    assert_eq!(stats["server"]["admittingRooms"], false);
    s.stop().await;
}

#[tokio::test]
async fn connections_per_ip_are_capped_with_429() {
    let s = TestServer::with(Config {
        max_connections_per_ip: 2,
        ..test_config()
    })
    .await;
    let _a = Client::connect(&s.signaling_url()).await;
    let _b = Client::connect(&s.signaling_url()).await;
    let err = tokio_tungstenite::connect_async(s.signaling_url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    drop(_a);
    eventually(|| s.app.admission.open_connections() < 2).await;
    assert!(
        tokio_tungstenite::connect_async(s.signaling_url())
            .await
            .is_ok()
    );
    s.stop().await;
}

#[tokio::test]
async fn a_peer_that_cannot_keep_up_is_closed_and_the_sender_told() {
    let s = TestServer::with(Config {
        outbox_capacity: 4,
        max_messages_per_second: 0,
        ..test_config()
    })
    .await;
    let mut a = Client::connect(&s.signaling_url()).await;
    a.send(json!({"type":"auth","userId":"a","roomId":"r"}))
        .await;
    a.recv_type("auth").await;
    a.send(json!({"type":"create-room","roomId":"r","userId":"a"}))
        .await;
    a.recv_type("room-created").await;
    let mut b = Client::connect(&s.signaling_url()).await;
    b.send(json!({"type":"auth","userId":"b","roomId":"r"}))
        .await;
    b.recv_type("auth").await;
    b.send(json!({"type":"join-room","roomId":"r","userId":"b"}))
        .await;
    b.recv_type("room-joined").await;
    a.recv_type("peer-joined").await;
    // b stops reading; a floods it with large frames until its socket buffers and outbox fill.
    let pad = "x".repeat(60_000);
    let mut told = false;
    for _ in 0..2000 {
        a.send(json!({"type":"presence","roomId":"r","userId":"a","data":{"pad":pad}}))
            .await;
        if let Ok(v) = tokio::time::timeout(Duration::from_millis(1), a.recv()).await
            && v["type"] == "error"
        {
            {
                assert!(
                    ["undelivered", "peer_not_found"]
                        .contains(&v["data"]["code"].as_str().unwrap()),
                    "{v}"
                );
                told = true;
                break;
            }
        }
    }
    assert!(told, "the sender learned the signal was not delivered");
    // Signals already on their way while b is being closed each get their own error; then
    // the room hears b left.
    loop {
        let v = a.recv().await;
        if v["type"] == "peer-left" {
            assert_eq!(v["userId"], "b");
            break;
        }
        assert_eq!(v["type"], "error", "{v}");
        assert!(
            ["undelivered", "peer_not_found"].contains(&v["data"]["code"].as_str().unwrap()),
            "{v}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn sigterm_sends_every_peer_a_close_frame_and_exits_zero() {
    let mut server = Process::start(&[], None);
    let url = server.signaling_url();
    let mut peers = Vec::new();
    for i in 0..3 {
        let mut c = Client::connect(&url).await;
        c.send(json!({"type":"auth","userId":format!("u{i}"),"roomId":"r"}))
            .await;
        c.recv_type("auth").await;
        peers.push(c);
    }
    server.sigterm();
    for c in &mut peers {
        assert_eq!(
            c.recv_close().await,
            Some((1001, "server shutting down: reconnect".into()))
        );
    }
    let status = server.wait_exit().expect("server exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn sigterm_closes_full_rooms_with_a_close_frame_for_every_peer() {
    // Peers in shared rooms: as the first ones close, their departures are queued for the
    // others, whose tasks are writing while shutdown is under way. Every peer must still get
    // its close frame. A write racing the shutdown used to lose to it half the time, and its
    // peer got none (seen once in CI); the pause between closes (a test-build knob) widens
    // that race from microseconds to the whole loop: without the fix, most peers here fail.
    const ROOMS: usize = 4;
    const PER_ROOM: usize = 100;
    let mut server = Process::start(&[("SWITCHBOARD_TEST_SHUTDOWN_PAUSE_US", "200")], None);
    let url = server.signaling_url();
    let mut peers = Vec::new();
    for r in 0..ROOMS {
        for i in 0..PER_ROOM {
            let mut c = Client::connect(&url).await;
            let room = format!("full{r}");
            c.send(json!({"type":"auth","userId":format!("u{i}"),"roomId":room}))
                .await;
            c.recv_type("auth").await;
            let kind = if i == 0 { "create-room" } else { "join-room" };
            c.send(json!({"type":kind,"roomId":room})).await;
            c.recv().await;
            peers.push(c);
        }
    }
    server.sigterm();
    let mut missing = Vec::new();
    for (i, c) in peers.iter_mut().enumerate() {
        let got = c.recv_close().await;
        if got != Some((1001, "server shutting down: reconnect".into())) {
            missing.push((i, got));
        }
    }
    assert!(
        missing.is_empty(),
        "peers without the close frame: {missing:?}"
    );
    server.wait_exit().expect("server exits after SIGTERM");
}

#[test]
fn invalid_config_names_every_bad_setting_and_exits_64_before_binding() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env("PORT", "not-a-port")
        .env("PING_INTERVAL", "often")
        .env("NODE_ENV", "production")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for var in ["PORT=", "PING_INTERVAL=", "AUTH_SECRET", "ADMIN_API_KEY"] {
        assert!(err.contains(var), "{var} missing in: {err}");
    }
}

#[test]
fn help_lists_every_setting_with_its_env_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "PORT",
        "SIGNALING_PORT",
        "HOST",
        "NODE_ENV",
        "CORS_ORIGINS",
        "AUTH_SECRET",
        "ROOM_INACTIVITY_TIMEOUT",
        "PEER_HEARTBEAT_TIMEOUT",
        "CLEANUP_CHECK_INTERVAL",
        "MEMORY_WARNING_THRESHOLD",
        "MEMORY_CRITICAL_THRESHOLD",
        "LOG_LEVEL",
        "ADMIN_API_KEY",
        "MAX_PEERS_PER_ROOM",
        "MAX_FRAME_BYTES",
        "SHUTDOWN_TIMEOUT",
    ] {
        // Secrets show their variable but never their value.
        assert!(
            help.contains(&format!("[env: {var}=")) || help.contains(&format!("[env: {var}]")),
            "{var} missing from --help"
        );
    }
}

#[test]
fn print_config_shows_every_effective_limit_with_secrets_masked() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--print-config")
        .env("AUTH_SECRET", "a-very-secret-value-of-length")
        .env("ADMIN_API_KEY", "the-admin-key")
        .env("NODE_ENV", "production")
        .env("MESSAGE_TIMEOUT", "7s")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "MESSAGE_TIMEOUT = \"7s\"",
        "REQUEST_HEADER_TIMEOUT = \"10s\"",
        "OUTBOX_MAX_BYTES = \"1m\"",
        "NODE_ENV = \"production\"",
        "# AUTH_SECRET: set, not printed (a secret)",
        "# ADMIN_API_KEY: set, not printed (a secret)",
        "# REDIS_URL: unset",
        "REQUIRE_TOKEN = \"auto\"  # auto: octate,socketio,rendezvous,nt,ywebrtc",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing in:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("MAX_CONNECTIONS = \"auto\"  # auto: ")),
        "{text}"
    );
    assert!(!text.contains("a-very-secret-value") && !text.contains("the-admin-key"));
    // Every setting the README documents is there.
    for var in [
        "PORT",
        "MAX_FRAME_BYTES",
        "BUFFERED_BYTES_MAX",
        "AUTH_TIMEOUT",
    ] {
        assert!(text.contains(&format!("\n{var} = ")), "{var}");
    }
}
