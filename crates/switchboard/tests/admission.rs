//! Who may connect, who may create rooms, and how clients are told apart: the room creation
//! budget, the HTTP rate limit on every listener, admin-only listings, rooms that nobody
//! joins, and client addresses behind a trusted proxy. Real server on port 0, real
//! clients; "different clients" are different loopback source addresses.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use support::*;
use switchboard::Config;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The issue's flood: 150 `POST /api/rooms` in a burst on `SOCKETIO_PORT` used to create
/// rooms up to `MAX_ROOMS` and lock every later creation out. Now one client's budget runs
/// out, in every dialect at once, while another client still creates and joins rooms.
#[tokio::test]
async fn a_creation_flood_is_refused_past_the_budget_while_another_client_creates() {
    let s = TestServer::with(Config {
        room_creations_per_minute: 30,
        http_requests_per_second: 0,
        max_rooms: 100,
        ..test_config()
    })
    .await;
    let flood: Vec<_> = (0..150)
        .map(|_| {
            let addr = s.socketio;
            tokio::spawn(async move { http("POST", addr, "/api/rooms", None, &[]).await })
        })
        .collect();
    let mut created = 0;
    for f in flood {
        let (status, body) = f.await.unwrap();
        match status {
            200 => created += 1,
            429 => assert_eq!(body["code"], "creation_rate_limited", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(created, 30, "exactly the budget");
    assert_eq!(s.app.registry.stats_now().rooms, 30);

    // The flooder is out of budget in every dialect.
    let (st, _) = http(
        "POST",
        s.http,
        "/api/rooms",
        Some(&json!({"roomId":"a"})),
        &[],
    )
    .await;
    assert_eq!(st, 429);
    let mut oc = Client::connect(&s.signaling_url()).await;
    oc.send(json!({"type":"auth","userId":"m","roomId":"m1"}))
        .await;
    oc.recv_type("auth").await;
    oc.send(json!({"type":"create-room","roomId":"m1"})).await;
    assert_eq!(
        oc.recv_type("error").await["data"]["code"],
        "creation_rate_limited"
    );
    let mut rdv = Client::connect(&format!("ws://{}/ws?room=m2", s.http)).await;
    rdv.send(json!({"type":"join"})).await;
    assert_eq!(
        rdv.recv_type("error").await["code"],
        "creation_rate_limited"
    );
    assert_eq!(rdv.recv_close().await.map(|c| c.0), Some(1013));
    let mut yw = Client::connect(&format!("ws://{}/y-webrtc", s.http)).await;
    yw.send(json!({"type":"subscribe","topics":["m3"]})).await;
    assert_eq!(yw.recv_type("error").await["code"], "creation_rate_limited");

    // Another client creates, in each dialect, and joins what it created.
    let other = ip("127.0.0.2");
    let (st, body) = http_from(other, "POST", s.socketio, "/api/rooms", None, &[]).await;
    assert_eq!(st, 200, "{body}");
    let vibe_room = body["roomId"].as_str().unwrap().to_owned();
    let mut b = Client::connect_from(other, &s.signaling_url()).await;
    b.send(json!({"type":"auth","userId":"b","roomId":vibe_room}))
        .await;
    b.recv_type("auth").await;
    b.send(json!({"type":"join-room","roomId":vibe_room})).await;
    b.recv_type("room-joined").await;
    let mut b2 = Client::connect_from(other, &s.signaling_url()).await;
    b2.send(json!({"type":"auth","userId":"b2","roomId":"b-room"}))
        .await;
    b2.recv_type("auth").await;
    b2.send(json!({"type":"create-room","roomId":"b-room"}))
        .await;
    b2.recv_type("room-created").await;
    let mut b3 = Client::connect_from(other, &format!("ws://{}/ws?room=b-rdv", s.http)).await;
    b3.send(json!({"type":"join","peerId":"b3"})).await;
    b3.recv_type("ready").await;
    s.stop().await;
}

#[tokio::test]
async fn the_http_rate_limit_applies_on_every_listener() {
    let s = TestServer::with(Config {
        http_requests_per_second: 5,
        ..test_config()
    })
    .await;
    // Burst 10, then 5 a second: 40 requests at once cannot all pass on any port.
    for (port, path) in [
        (s.http, "/api/health"),
        (s.socketio, "/health"),
        (s.socketio, "/api/rooms/nope"),
    ] {
        let mut limited = 0;
        for _ in 0..40 {
            let (st, _) = http_from(ip("127.0.0.3"), "GET", port, path, None, &[]).await;
            limited += usize::from(st == 429);
        }
        assert!(limited >= 20, "{port}{path}: {limited} of 40 limited");
        // Let the bucket refill for the next port (5 a second, burst 10).
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // WebSocket upgrades on the signaling port count too.
    let mut statuses = Vec::new();
    let mut held = Vec::new();
    for _ in 0..30 {
        match Client::try_connect_with(&s.signaling_url(), &[]).await {
            Ok(c) => held.push(c),
            Err(st) => statuses.push(st),
        }
    }
    assert!(
        statuses.len() >= 10 && statuses.iter().all(|&st| st == 429),
        "{statuses:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn in_production_only_the_admin_key_names_participants_on_any_port() {
    let s = TestServer::with(Config {
        production: true,
        auth_secret: "a-production-secret-of-some-length".into(),
        admin_api_key: Some("admin-key".into()),
        ..test_config()
    })
    .await;
    let admin = [("Authorization", "Bearer admin-key")];
    // Socket.io needs tokens here (REQUIRE_TOKEN's production default), so creating a room
    // on its port needs the admin key too.
    let (st, _) = http("POST", s.socketio, "/api/rooms", None, &[]).await;
    assert_eq!(st, 401);
    let (st, body) = http("POST", s.socketio, "/api/rooms", None, &admin).await;
    assert_eq!(st, 200);
    let room = body["roomId"].as_str().unwrap().to_owned();
    let token = s.app.auth.issue("alice", &room).token;
    let mut alice = Client::connect(&s.signaling_url()).await;
    alice
        .send(json!({"type":"auth","userId":"alice","roomId":room,"data":{"token":token}}))
        .await;
    alice.recv_type("auth").await;
    alice.send(json!({"type":"join-room","roomId":room})).await;
    alice.recv_type("room-joined").await;

    for port in [s.socketio, s.http] {
        let (st, _) = http("GET", port, "/api/rooms", None, &[]).await;
        assert_eq!(st, 401, "listing on {port} without the key");
        let (st, body) = http("GET", port, "/api/rooms", None, &admin).await;
        assert_eq!(st, 200, "{body}");
        assert!(body.to_string().contains(&room), "{body}");
    }
    // A room's detail by its unguessable id: existence yes, names no.
    let path = format!("/api/rooms/{room}");
    let (st, body) = http("GET", s.socketio, &path, None, &[]).await;
    assert_eq!(st, 200);
    assert_eq!(body["participants"], json!([]));
    assert_eq!(body["participantCount"], 1);
    assert!(!body.to_string().contains("alice"), "{body}");
    let (_, body) = http("GET", s.socketio, &path, None, &admin).await;
    assert_eq!(body["participants"], json!(["alice"]));
    let (st, _) = http("GET", s.http, &path, None, &[]).await;
    assert_eq!(st, 401, "the OctateCode API's room detail stays admin-only");
    s.stop().await;
}

#[tokio::test]
async fn a_room_nobody_joins_goes_after_unjoined_room_ttl() {
    let s = TestServer::with(Config {
        unjoined_room_ttl: Duration::from_millis(300).into(),
        ..test_config()
    })
    .await;
    let (st, body) = http("POST", s.socketio, "/api/rooms", None, &[]).await;
    assert_eq!(st, 200);
    let lonely = body["roomId"].as_str().unwrap().to_owned();
    let (st, _) = http(
        "POST",
        s.http,
        "/api/rooms",
        Some(&json!({"roomId":"used"})),
        &[],
    )
    .await;
    assert_eq!(st, 201);
    let mut c = Client::connect(&s.signaling_url()).await;
    c.send(json!({"type":"auth","userId":"u","roomId":"used"}))
        .await;
    c.recv_type("auth").await;
    c.send(json!({"type":"join-room","roomId":"used"})).await;
    c.recv_type("room-joined").await;
    let started = std::time::Instant::now();
    eventually(|| s.app.registry.room_now(&lonely.as_str().into()).is_none()).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        s.app.registry.room_now(&"used".into()).is_some(),
        "a joined room is not unjoined"
    );
    s.stop().await;
}

/// Without `TRUSTED_PROXIES` a client's `X-Forwarded-For` is ignored: it cannot spread its
/// requests over made-up addresses.
#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_change_nothing() {
    let s = TestServer::with(Config {
        http_requests_per_second: 2,
        trusted_proxies: "127.0.0.1".parse().unwrap(),
        ..test_config()
    })
    .await;
    let mut ok = 0;
    for i in 0..12 {
        let xff = format!("198.51.100.{i}");
        let fwd = format!("for=203.0.113.{i}");
        let headers = [
            ("X-Forwarded-For", xff.as_str()),
            ("Forwarded", fwd.as_str()),
        ];
        let (st, _) = http_from(
            ip("127.0.0.4"),
            "GET",
            s.http,
            "/api/health",
            None,
            &headers,
        )
        .await;
        ok += usize::from(st == 200);
    }
    assert!(
        ok <= 5,
        "{ok} of 12 passed: the spoofed headers were believed"
    );
    s.stop().await;
}

/// Behind a trusted proxy, every client has its own limits, and a client cannot escape them
/// by prepending addresses to the header the proxy appends to.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_limits() {
    let s = TestServer::with(Config {
        http_requests_per_second: 2,
        max_connections_per_ip: 1,
        trusted_proxies: "127.0.0.0/30".parse().unwrap(),
        ..test_config()
    })
    .await;
    // Twelve clients through the proxy (127.0.0.1): each has its own bucket.
    for i in 0..12 {
        let xff = format!("198.51.100.{i}");
        let (st, _) = http(
            "GET",
            s.http,
            "/api/health",
            None,
            &[("X-Forwarded-For", &xff)],
        )
        .await;
        assert_eq!(st, 200, "client {i}");
    }
    // One client, twelve requests, each claiming another origin before the proxy's hop.
    let mut ok = 0;
    for i in 0..12 {
        let xff = format!("6.6.6.{i}, 198.51.100.200");
        let (st, _) = http(
            "GET",
            s.http,
            "/api/health",
            None,
            &[("X-Forwarded-For", &xff)],
        )
        .await;
        ok += usize::from(st == 200);
    }
    assert!(ok <= 5, "{ok} of 12 passed");
    // Connections per client: one each.
    let a = Client::try_connect_with(&s.signaling_url(), &[("X-Forwarded-For", "192.0.2.1")])
        .await
        .expect("first client");
    let b = Client::try_connect_with(&s.signaling_url(), &[("X-Forwarded-For", "192.0.2.2")])
        .await
        .expect("second client");
    let again =
        Client::try_connect_with(&s.signaling_url(), &[("X-Forwarded-For", "192.0.2.1")]).await;
    assert_eq!(again.err(), Some(429));
    drop((a, b));
    s.stop().await;
}
