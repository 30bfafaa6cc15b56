//! The OctateCode dialect, end to end: the real server on port 0, real WebSocket clients.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use switchboard::Config;

/// Drops the volatile fields (timestamps) so frames compare exactly.
fn stable(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in [
                    "timestamp",
                    "createdAt",
                    "lastActivity",
                    "connectedAt",
                    "lastHeartbeat",
                ] {
                    if m.contains_key(k) {
                        m.insert(k.into(), json!("N"));
                    }
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

async fn token(server: &TestServer, user: &str, room: &str) -> String {
    let (status, body) = http(
        "POST",
        server.http,
        "/api/auth/token",
        Some(&json!({"userId": user, "roomId": room})),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn authed(server: &TestServer, user: &str, room: &str) -> Client {
    let t = token(server, user, room).await;
    let mut c = Client::connect(&server.signaling_url()).await;
    c.send(json!({"type":"auth","userId":user,"roomId":room,"data":{"token":t}}))
        .await;
    c.recv_type("auth").await;
    c
}

/// alice creates r1 and bob joins it; both have drained their join frames.
async fn pair(server: &TestServer) -> (Client, Client) {
    let mut a = authed(server, "alice", "r1").await;
    a.send(json!({"type":"create-room","roomId":"r1","userId":"alice","data":{"roomName":"Room 1","userName":"Alice"}})).await;
    a.recv_type("room-created").await;
    let mut b = authed(server, "bob", "r1").await;
    b.send(json!({"type":"join-room","roomId":"r1","userId":"bob","data":{"userName":"Bob"}}))
        .await;
    b.recv_type("room-joined").await;
    a.recv_type("peer-joined").await;
    (a, b)
}

#[tokio::test]
async fn the_whole_seed_002_session_gives_each_peer_exactly_its_frames() {
    let server = TestServer::start().await;
    let t_alice = token(&server, "alice", "r1").await;
    let t_bob = token(&server, "bob", "r1").await;

    let mut a = Client::connect(&server.signaling_url()).await;
    a.send(json!({"type":"auth","userId":"alice","roomId":"r1","data":{"token":t_alice}}))
        .await;
    assert_eq!(
        stable(a.recv().await),
        json!({"type":"auth","roomId":"r1","userId":"alice","data":{"status":"authenticated","message":"User properly connected to authorized room","iceServers":[]},"timestamp":"N"})
    );

    a.send(json!({"type":"create-room","roomId":"r1","userId":"alice","data":{"roomName":"Room 1","userName":"Alice","fileId":"f1"},"timestamp":1})).await;
    assert_eq!(
        stable(a.recv().await),
        json!({"type":"room-created","roomId":"r1","userId":"alice","data":{"room":{
            "roomId":"r1","roomName":"Room 1","hostId":"alice","hostName":"Alice","fileId":"f1",
            "peerCount":1,"state":"active","createdAt":"N","lastActivity":"N",
            "peers":[{"userId":"alice","userName":"Alice","isHost":true,"connectedAt":"N","lastHeartbeat":"N"}]}},"timestamp":"N"})
    );

    // The token may also travel top-level, as seed 002 shows it.
    let mut b = Client::connect(&server.signaling_url()).await;
    b.send(json!({"type":"auth","token":t_bob,"userId":"bob","roomId":"r1"}))
        .await;
    assert_eq!(b.recv().await["data"]["status"], "authenticated");
    b.send(json!({"type":"join-room","roomId":"r1","userId":"bob","data":{"userName":"Bob"}}))
        .await;
    let joined = stable(b.recv().await);
    assert_eq!(joined["type"], "room-joined");
    assert_eq!(joined["data"]["room"]["peerCount"], 2);
    assert_eq!(
        joined["data"]["room"]["peers"],
        json!([
            {"userId":"alice","userName":"Alice","isHost":true,"connectedAt":"N","lastHeartbeat":"N"},
            {"userId":"bob","userName":"Bob","isHost":false,"connectedAt":"N","lastHeartbeat":"N"}
        ])
    );
    assert_eq!(
        stable(a.recv().await),
        json!({"type":"peer-joined","roomId":"r1","userId":"bob","data":{"peer":{"userId":"bob","userName":"Bob","isHost":false}},"timestamp":"N"})
    );

    // Offer targeted by data.peer: bob receives alice's data exactly as sent.
    let offer = r#"{"type":"sdp-offer","roomId":"r1","userId":"alice","data":{"peer":"bob","offer":{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1"}}}"#;
    a.send_text(offer).await;
    let got = b.recv_text().await;
    assert!(
        got.starts_with(r#"{"type":"sdp-offer","roomId":"r1","userId":"alice","data":{"peer":"bob","offer":{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1"}},"targetUserId":"bob","timestamp":"#),
        "{got}"
    );

    // Answer targeted by targetUserId.
    b.send(json!({"type":"sdp-answer","roomId":"r1","userId":"bob","targetUserId":"alice","data":{"answer":{"type":"answer","sdp":"v=0"}}})).await;
    assert_eq!(
        stable(a.recv().await),
        json!({"type":"sdp-answer","roomId":"r1","userId":"bob","data":{"answer":{"type":"answer","sdp":"v=0"}},"targetUserId":"alice","timestamp":"N"})
    );

    // ICE both ways.
    a.send(json!({"type":"ice-candidate","roomId":"r1","userId":"alice","data":{"peer":"bob","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0"}}})).await;
    let ice = b.recv().await;
    assert_eq!(ice["type"], "ice-candidate");
    assert_eq!(ice["userId"], "alice");
    assert_eq!(ice["data"]["candidate"]["sdpMid"], "0");
    b.send(json!({"type":"ice-candidate","roomId":"r1","userId":"bob","data":{"peer":"alice","candidate":{"candidate":"c2"}}})).await;
    assert_eq!(a.recv().await["data"]["candidate"]["candidate"], "c2");

    // Nobody hears their own signals.
    a.expect_silence(Duration::from_millis(100)).await;

    // Leave: bob is acknowledged with his own peer-left, alice told once.
    b.send(json!({"type":"leave-room","roomId":"r1","userId":"bob"}))
        .await;
    assert_eq!(
        stable(b.recv().await),
        json!({"type":"peer-left","roomId":"r1","userId":"bob","timestamp":"N"})
    );
    assert_eq!(
        stable(a.recv().await),
        json!({"type":"peer-left","roomId":"r1","userId":"bob","timestamp":"N"})
    );
    b.close().await;
    a.expect_silence(Duration::from_millis(200)).await;

    // Alice closing empties the room; it lingers for the grace period.
    a.close().await;
    eventually(|| server.app.registry.stats_now().peers == 0).await;
    assert_eq!(server.app.registry.stats_now().rooms, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_peer_in_another_room_receives_nothing() {
    let server = TestServer::start().await;
    let (mut a, mut b) = pair(&server).await;
    let mut c = authed(&server, "carol", "r2").await;
    c.send(json!({"type":"create-room","roomId":"r2","userId":"carol"}))
        .await;
    c.recv_type("room-created").await;

    a.send(json!({"type":"sdp-offer","roomId":"r1","userId":"alice","data":{"offer":{"sdp":"x"}}}))
        .await;
    assert_eq!(b.recv_type("sdp-offer").await["data"]["offer"]["sdp"], "x");
    c.expect_silence(Duration::from_millis(200)).await;

    // Naming a peer of another room is an error, not a delivery.
    a.send(json!({"type":"sdp-offer","roomId":"r1","userId":"alice","data":{"peer":"carol","offer":{}}})).await;
    let err = a.recv_type("error").await;
    assert_eq!(err["data"]["code"], "peer_not_found");
    c.expect_silence(Duration::from_millis(100)).await;
    // Claiming the other room is refused too.
    a.send(json!({"type":"sdp-offer","roomId":"r2","userId":"alice","data":{}}))
        .await;
    assert_eq!(a.recv_type("error").await["data"]["code"], "not_in_room");
    c.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_spoofed_user_id_is_refused_and_nothing_is_relayed() {
    let server = TestServer::start().await;
    let (mut a, mut b) = pair(&server).await;
    a.send(
        json!({"type":"sdp-offer","roomId":"r1","userId":"bob","data":{"peer":"bob","offer":{}}}),
    )
    .await;
    let err = a.recv_type("error").await;
    assert_eq!(err["data"]["code"], "user_mismatch");
    b.expect_silence(Duration::from_millis(150)).await;
    // A join claiming someone else is refused too.
    a.send(json!({"type":"join-room","roomId":"r1","userId":"mallory"}))
        .await;
    assert_eq!(a.recv_type("error").await["data"]["code"], "user_mismatch");
    server.stop().await;
}

#[tokio::test]
async fn every_auth_failure_gives_its_own_error() {
    let config = Config {
        production: true,
        auth_secret: "a-production-secret-of-some-length".into(),
        admin_api_key: Some("admin-key".into()),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let admin = [("Authorization", "Bearer admin-key")];
    let (_, body) = http(
        "POST",
        server.http,
        "/api/auth/token",
        Some(&json!({"userId":"alice","roomId":"r1"})),
        &admin,
    )
    .await;
    let good = body["token"].as_str().unwrap().to_owned();
    let other = switchboard::auth::Authenticator::new(
        "some-other-secret",
        Duration::from_secs(60),
        None,
        0,
    )
    .issue("alice", "r1")
    .token;
    let expired = {
        let a = switchboard::auth::Authenticator::new(
            "a-production-secret-of-some-length",
            Duration::from_secs(1),
            None,
            0,
        );
        let t = a.issue("alice", "r1").token;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        t
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"type":"auth","roomId":"r1"}),
            "missing_fields",
            "Missing userId or roomId",
        ),
        (
            json!({"type":"auth","userId":"alice","roomId":"r1"}),
            "missing_token",
            "Missing auth token. Request token from /api/auth/token endpoint first.",
        ),
        (
            json!({"type":"auth","userId":"alice","roomId":"r1","data":{"token":"garbage"}}),
            "invalid_token",
            "Invalid or expired token",
        ),
        (
            json!({"type":"auth","userId":"alice","roomId":"r1","data":{"token":other}}),
            "bad_signature",
            "Invalid token signature",
        ),
        (
            json!({"type":"auth","userId":"alice","roomId":"r1","data":{"token":expired}}),
            "token_expired",
            "Token expired",
        ),
        (
            json!({"type":"auth","userId":"bob","roomId":"r1","data":{"token":good}}),
            "user_mismatch",
            "User ID mismatch",
        ),
        (
            json!({"type":"auth","userId":"alice","roomId":"r2","data":{"token":good}}),
            "room_mismatch",
            "Not authorized for this room. Token is for room r1",
        ),
    ];
    let mut c = Client::connect(&server.signaling_url()).await;
    c.send(json!({"type":"create-room","roomId":"r1","userId":"alice"}))
        .await;
    let e = c.recv_type("error").await;
    assert_eq!(
        (e["data"]["code"].as_str(), e["data"]["error"].as_str()),
        (Some("not_authenticated"), Some("Not authenticated"))
    );
    for (msg, code, text) in cases {
        c.send(msg.clone()).await;
        let e = c.recv_type("error").await;
        assert_eq!(e["data"]["code"], code, "for {msg}");
        assert_eq!(e["data"]["error"], text, "for {msg}");
    }
    c.send(json!({"type":"auth","userId":"alice","roomId":"r1","data":{"token":good}}))
        .await;
    assert_eq!(c.recv_type("auth").await["data"]["status"], "authenticated");
    server.stop().await;
}

#[tokio::test]
async fn production_closes_a_socket_that_never_authenticates() {
    let config = Config {
        production: true,
        auth_secret: "a-production-secret-of-some-length".into(),
        admin_api_key: Some("k".into()),
        auth_timeout: Duration::from_millis(300).into(),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let mut c = Client::connect(&server.signaling_url()).await;
    assert_eq!(
        c.recv_close().await,
        Some((1008, "authentication timeout".into()))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_full_room_refuses_the_next_peer() {
    let server = TestServer::with(Config {
        max_peers_per_room: 2,
        ..test_config()
    })
    .await;
    let (_a, _b) = pair(&server).await;
    let mut c = authed(&server, "carol", "r1").await;
    c.send(json!({"type":"join-room","roomId":"r1","userId":"carol"}))
        .await;
    let e = c.recv_type("error").await;
    assert_eq!(e["data"]["code"], "room_full");
    assert_eq!(e["data"]["error"], "Room is full (2 peers)");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_an_error_and_the_connection_and_others_keep_working() {
    let server = TestServer::with(Config {
        max_frame_bytes: switchboard::config::Size(4096),
        ..test_config()
    })
    .await;
    let (mut a, mut b) = pair(&server).await;
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "bad_json"),
        ("42".into(), "bad_message"),
        ("[1,2,3]".into(), "bad_message"),
        ("null".into(), "bad_message"),
        (r#"{"type":5}"#.into(), "bad_message"),
        (r#"{"roomId":"r1"}"#.into(), "missing_type"),
        (r#"{"type":"teleport"}"#.into(), "unknown_type"),
        (
            format!(r#"{{"type":"sdp-offer","data":"{}"}}"#, "x".repeat(5000)),
            "frame_too_large",
        ),
    ];
    for (frame, code) in cases {
        a.send_text(&frame).await;
        let e = a.recv_type("error").await;
        assert_eq!(
            e["data"]["code"],
            code,
            "for {}",
            &frame[..frame.len().min(40)]
        );
    }
    a.send_binary(vec![0, 1, 2]).await;
    assert_eq!(
        a.recv_type("error").await["data"]["code"],
        "binary_unsupported"
    );
    b.expect_silence(Duration::from_millis(100)).await;
    // Still relaying both ways.
    a.send(json!({"type":"sdp-offer","roomId":"r1","userId":"alice","data":{"offer":1}}))
        .await;
    assert_eq!(b.recv_type("sdp-offer").await["data"]["offer"], 1);
    b.send(json!({"type":"sdp-answer","roomId":"r1","userId":"bob","data":{"answer":2}}))
        .await;
    assert_eq!(a.recv_type("sdp-answer").await["data"]["answer"], 2);
    server.stop().await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_with_errors_then_closed() {
    let server = TestServer::with(Config {
        max_messages_per_second: 5,
        ..test_config()
    })
    .await;
    let (mut a, mut b) = pair(&server).await;
    for i in 0..100 {
        a.send(json!({"type":"presence","roomId":"r1","userId":"alice","data":{"i":i}}))
            .await;
    }
    let mut delivered = 0;
    let mut limited = 0;
    loop {
        let v = a.inner();
        let msg = tokio::time::timeout(PATIENCE, futures_util::StreamExt::next(v))
            .await
            .unwrap();
        match msg {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["data"]["code"], "rate_limited");
                limited += 1;
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                assert_eq!(u16::from(f.unwrap().code), 1008);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    while let Ok(v) = tokio::time::timeout(Duration::from_millis(200), b.recv()).await {
        if v["type"] == "presence" {
            delivered += 1;
        }
    }
    // The burst (twice the rate, less alice's auth and create-room) got through, and every
    // refused message was answered before the 50th consecutive one closed the socket.
    assert!(
        (8..=10).contains(&delivered),
        "burst delivered: {delivered}"
    );
    assert!(
        limited >= 49,
        "each refused message got an error: {limited}"
    );
    assert!(
        delivered + limited < 100,
        "the rest were cut off by the close"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_silent_peer_is_removed_and_the_room_told() {
    let config = Config {
        ping_interval: Duration::from_millis(100).into(),
        peer_heartbeat_timeout: Duration::from_millis(400).into(),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let (mut a, b) = pair(&server).await;
    // bob stops reading, so his client never answers pings; alice keeps reading.
    let started = tokio::time::Instant::now();
    let left = a.recv_type("peer-left").await;
    assert_eq!(left["userId"], "bob");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    a.expect_silence(Duration::from_millis(600)).await;
    drop(b);
    server.stop().await;
}

#[tokio::test]
async fn the_json_heartbeat_is_answered() {
    let server = TestServer::start().await;
    let (mut a, _b) = pair(&server).await;
    a.send(json!({"type":"heartbeat","roomId":"r1","userId":"alice"}))
        .await;
    assert_eq!(
        stable(a.recv().await),
        json!({"type":"heartbeat","roomId":"r1","userId":"alice","timestamp":"N"})
    );
    server.stop().await;
}

#[tokio::test]
async fn a_closed_socket_produces_peer_left_exactly_once() {
    let server = TestServer::start().await;
    let (mut a, b) = pair(&server).await;
    b.close().await;
    assert_eq!(a.recv_type("peer-left").await["userId"], "bob");
    a.expect_silence(Duration::from_millis(300)).await;
    server.stop().await;
}

#[tokio::test]
async fn empty_rooms_are_removed_after_the_grace_and_idle_rooms_closed() {
    let config = Config {
        cleanup_check_interval: Duration::from_millis(50).into(),
        empty_room_grace: Duration::from_millis(200).into(),
        room_inactivity_timeout: Duration::from_millis(700).into(),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let (mut a, b) = pair(&server).await;
    b.close().await;
    assert_eq!(a.recv_type("peer-left").await["userId"], "bob");
    // Idle: nobody says anything more; the room closes and its remaining member is told.
    let v = a.recv().await;
    assert_eq!(v["type"], "room-closed", "{v}");
    assert_eq!(v["data"]["reason"], "inactive");
    eventually(|| server.app.registry.stats_now().rooms == 0).await;

    // Empty: a room whose last peer left goes after the grace, not before.
    let mut c = authed(&server, "carol", "r3").await;
    c.send(json!({"type":"create-room","roomId":"r3","userId":"carol"}))
        .await;
    c.recv_type("room-created").await;
    c.send(json!({"type":"leave-room","roomId":"r3","userId":"carol"}))
        .await;
    c.recv_type("peer-left").await;
    assert!(server.app.registry.room_now(&"r3".into()).is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        server.app.registry.room_now(&"r3".into()).is_some(),
        "kept during the grace"
    );
    eventually(|| server.app.registry.room_now(&"r3".into()).is_none()).await;
    server.stop().await;
}

#[tokio::test]
async fn the_http_port_serves_signaling_too() {
    let server = TestServer::start().await;
    let mut a = Client::connect(&format!("ws://{}/signaling", server.http)).await;
    a.send(json!({"type":"auth","userId":"u","roomId":"x"}))
        .await;
    assert_eq!(a.recv_type("auth").await["data"]["status"], "authenticated");
    let mut root = Client::connect(&format!("ws://{}/", server.http)).await;
    root.send(json!({"type":"auth","userId":"v","roomId":"x"}))
        .await;
    assert_eq!(root.recv_type("auth").await["userId"], "v");
    server.stop().await;
}
