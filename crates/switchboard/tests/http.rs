//! Every HTTP endpoint's status and body, against the real server.

mod support;

use serde_json::json;
use support::*;
use switchboard::Config;

#[tokio::test]
async fn monitoring_endpoints_answer_json() {
    let s = TestServer::start().await;
    let (st, root) = http("GET", s.http, "/", None, &[]).await;
    assert_eq!(
        (st, root["name"].as_str(), root["status"].as_str()),
        (200, Some("Switchboard"), Some("running"))
    );
    for path in ["/api/health", "/health"] {
        let (st, b) = http("GET", s.http, path, None, &[]).await;
        assert_eq!(st, 200, "{path}");
        assert_eq!(b["status"], "ok");
        assert_eq!(b["rooms"], 0);
        assert!(b["memory"]["rss"].as_u64().unwrap() > 0);
    }
    for path in ["/api/stats", "/stats"] {
        let (st, b) = http("GET", s.http, path, None, &[]).await;
        assert_eq!(st, 200, "{path}");
        assert_eq!(b["server"]["activeRooms"], 0);
        assert_eq!(b["thresholds"]["warning"], 200.0);
        assert_eq!(b["thresholds"]["critical"], 300.0);
        assert_eq!(b["memory"]["pressure"], "normal");
        // Every figure is measured: nothing relayed yet, and no heap figure (none is
        // measured; RSS is `rss`).
        assert_eq!(b["operations"]["total"], 0, "{path}");
        assert_eq!(b["operations"].get("perSecond"), None, "{path}");
        assert_eq!(b["memory"].get("heapUsed"), None, "{path}");
    }
    for path in ["/api/info", "/info"] {
        let (st, b) = http("GET", s.http, path, None, &[]).await;
        assert_eq!(st, 200);
        assert!(b["endpoints"].as_array().unwrap().len() > 5);
    }
    let (st, b) = http("GET", s.http, "/nope", None, &[]).await;
    assert_eq!(
        (st, b["error"].as_str(), b["path"].as_str()),
        (404, Some("Not found"), Some("/nope"))
    );
    let (st, b) = http("GET", s.http, "/healthz", None, &[]).await;
    assert_eq!((st, b), (200, json!({"ok": true})));
    let (st, b) = http("GET", s.http, "/readyz", None, &[]).await;
    assert_eq!((st, b), (200, json!({"ready": true})));
    s.stop().await;
}

#[tokio::test]
async fn tokens_are_issued_validated_and_refused_with_reasons() {
    let s = TestServer::start().await;
    let (st, b) = http(
        "POST",
        s.http,
        "/api/auth/token",
        Some(&json!({"userId":"alice"})),
        &[],
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(b["error"], "Missing required fields");
    assert_eq!(b["required"], json!(["userId", "roomId"]));
    let (st, b) = http(
        "POST",
        s.http,
        "/api/auth/token",
        Some(&json!({"userId":"alice","roomId":"r1"})),
        &[],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(b["status"], "success");
    assert_eq!(b["expiresIn"], 3600);
    let token = b["token"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let (st, b) = http(
        "POST",
        s.http,
        "/api/auth/validate",
        Some(&json!({"token": token})),
        &[],
    )
    .await;
    assert_eq!(
        (
            st,
            b["valid"].as_bool(),
            b["userId"].as_str(),
            b["roomId"].as_str()
        ),
        (200, Some(true), Some("alice"), Some("r1"))
    );
    let (st, b) = http(
        "POST",
        s.http,
        "/api/auth/validate",
        Some(&json!({"token": token, "roomId": "r2"})),
        &[],
    )
    .await;
    assert_eq!(
        (st, b["valid"].as_bool(), b["code"].as_str()),
        (401, Some(false), Some("room_mismatch"))
    );
    let (st, b) = http(
        "POST",
        s.http,
        "/api/auth/validate",
        Some(&json!({"token": "x.y.z"})),
        &[],
    )
    .await;
    assert_eq!((st, b["code"].as_str()), (401, Some("invalid_token")));
    let (st, _) = http("POST", s.http, "/api/auth/validate", Some(&json!({})), &[]).await;
    assert_eq!(st, 400);
    // Malformed and oversized bodies are JSON errors with their status.
    let (st, b) = http_raw("POST", s.http, "/api/auth/token", Some("{nope"), &[]).await;
    assert_eq!(st, 400, "{b}");
    assert!(b.contains("Malformed JSON"));
    let (st, _) = http_raw(
        "POST",
        s.http,
        "/api/auth/token",
        Some("{}"),
        &[("Content-Type", "text/plain")],
    )
    .await;
    assert_eq!(st, 415);
    let big = format!(r#"{{"userId":"{}","roomId":"r"}}"#, "x".repeat(200_000));
    let (st, b) = http_raw("POST", s.http, "/api/auth/token", Some(&big), &[]).await;
    assert_eq!(st, 413, "{b}");
    s.stop().await;
}

#[tokio::test]
async fn rooms_are_created_listed_inspected_and_deleted() {
    let s = TestServer::start().await;
    // The seed's camelCase body returns the room metadata.
    let (st, b) = http(
        "POST",
        s.http,
        "/api/rooms",
        Some(&json!({"roomId":"r1","roomName":"Room 1","hostId":"alice","hostName":"Alice"})),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(
        (
            b["roomId"].as_str(),
            b["roomName"].as_str(),
            b["hostId"].as_str(),
            b["peerCount"].as_u64()
        ),
        (Some("r1"), Some("Room 1"), Some("alice"), Some(0))
    );
    // The original code's snake_case body returns {message, data}.
    let (st, b) = http(
        "POST",
        s.http,
        "/api/rooms",
        Some(&json!({"room_id":"r2","room_name":"Two"})),
        &[],
    )
    .await;
    assert_eq!(
        (st, b["message"].as_str(), b["data"]["roomName"].as_str()),
        (201, Some("Room created"), Some("Two"))
    );
    let (st, b) = http(
        "POST",
        s.http,
        "/api/rooms",
        Some(&json!({"roomId":"r1"})),
        &[],
    )
    .await;
    assert_eq!((st, b["code"].as_str()), (409, Some("room_exists")));
    let (st, _) = http("POST", s.http, "/api/rooms", Some(&json!({})), &[]).await;
    assert_eq!(st, 400);

    // A peer joins r1 over the socket; the API sees it.
    let mut c = Client::connect(&s.signaling_url()).await;
    c.send(json!({"type":"auth","userId":"bob","roomId":"r1"}))
        .await;
    c.recv_type("auth").await;
    c.send(json!({"type":"join-room","roomId":"r1","userId":"bob","data":{"userName":"Bob"}}))
        .await;
    c.recv_type("room-joined").await;

    let (st, b) = http("GET", s.http, "/api/rooms", None, &[]).await;
    assert_eq!((st, b["count"].as_u64()), (200, Some(2)));
    assert_eq!(b["rooms"][0]["roomId"], "r1");
    assert_eq!(b["rooms"][0]["peerCount"], 1);
    let (st, b) = http("GET", s.http, "/api/rooms/r1", None, &[]).await;
    assert_eq!(st, 200);
    assert_eq!(b["roomId"], "r1");
    assert_eq!(b["metadata"]["peers"][0]["userName"], "Bob");
    assert_eq!(b["stats"]["peerCount"], 1);
    let (st, b) = http("GET", s.http, "/api/rooms/r1/stats", None, &[]).await;
    assert_eq!((st, b["peerCount"].as_u64()), (200, Some(1)));
    // No per-room traffic is measured, so none is reported.
    assert_eq!(
        (b.get("operationCount"), b.get("bandwidth")),
        (None, None),
        "{b}"
    );
    let (st, b) = http("GET", s.http, "/api/rooms/r1/peers", None, &[]).await;
    assert_eq!(
        (
            st,
            b["peerCount"].as_u64(),
            b["peers"][0]["userId"].as_str()
        ),
        (200, Some(1), Some("bob"))
    );
    for path in [
        "/api/rooms/ghost",
        "/api/rooms/ghost/stats",
        "/api/rooms/ghost/peers",
    ] {
        let (st, b) = http("GET", s.http, path, None, &[]).await;
        assert_eq!(
            (st, b["error"].as_str(), b["roomId"].as_str()),
            (404, Some("Room not found"), Some("ghost")),
            "{path}"
        );
    }

    // Deleting a room closes it for its members.
    let (st, b) = http("DELETE", s.http, "/api/rooms/r1", None, &[]).await;
    assert_eq!((st, b["disconnectedPeers"].as_u64()), (200, Some(1)));
    let closed = c.recv_type("room-closed").await;
    assert_eq!(closed["data"]["reason"], "deleted");
    let (st, _) = http("DELETE", s.http, "/api/rooms/r1", None, &[]).await;
    assert_eq!(st, 404);
    s.stop().await;
}

#[tokio::test]
async fn maintenance_cleans_up_and_returns_memory() {
    let s = TestServer::start().await;
    http(
        "POST",
        s.http,
        "/api/rooms",
        Some(&json!({"roomId":"empty"})),
        &[],
    )
    .await;
    let (st, b) = http("POST", s.http, "/api/maintenance/cleanup", None, &[]).await;
    assert_eq!(st, 200);
    assert_eq!(b["message"], "Cleanup triggered");
    assert_eq!(
        (
            b["before"]["rooms"].as_u64(),
            b["after"]["rooms"].as_u64(),
            b["cleaned"].as_u64()
        ),
        (Some(1), Some(0), Some(1))
    );
    let (st, b) = http("POST", s.http, "/api/maintenance/gc", None, &[]).await;
    assert_eq!(st, 200);
    assert_eq!(b["message"], "Garbage collection triggered");
    assert!(b["before"].as_f64().unwrap() > 0.0);
    assert!(b["after"].as_f64().is_some());
    s.stop().await;
}

#[tokio::test]
async fn production_guards_tokens_listings_and_maintenance_with_the_admin_key() {
    let config = Config {
        production: true,
        auth_secret: "a-production-secret-of-some-length".into(),
        admin_api_key: Some("admin-key".into()),
        ..test_config()
    };
    let s = TestServer::with(config).await;
    let guarded: [(&str, &str); 6] = [
        ("POST", "/api/auth/token"),
        ("GET", "/api/rooms"),
        ("GET", "/api/stats"),
        ("POST", "/api/maintenance/cleanup"),
        ("POST", "/api/maintenance/gc"),
        ("GET", "/metrics"),
    ];
    let body = json!({"userId":"a","roomId":"r"});
    for (m, p) in guarded {
        let (st, _) = http(m, s.http, p, Some(&body), &[]).await;
        assert_eq!(st, 401, "{m} {p} without a key");
        let (st, _) = http(
            m,
            s.http,
            p,
            Some(&body),
            &[("Authorization", "Bearer admin-key")],
        )
        .await;
        assert!(st == 200, "{m} {p} with the key: {st}");
    }
    let (st, _) = http(
        "GET",
        s.http,
        "/api/rooms",
        None,
        &[("Authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(st, 403);
    // Health stays open for load balancers.
    let (st, _) = http("GET", s.http, "/api/health", None, &[]).await;
    assert_eq!(st, 200);
    s.stop().await;
}

#[tokio::test]
async fn cors_and_websocket_origin_follow_cors_origins() {
    let config = Config {
        cors_origins: switchboard::config::List(vec!["http://app.example".into()]),
        ..test_config()
    };
    let s = TestServer::with(config).await;
    let (_, raw) = http_raw(
        "OPTIONS",
        s.http,
        "/api/health",
        None,
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
    )
    .await;
    let _ = raw;
    let req = tokio_tungstenite::tungstenite::handshake::client::Request::builder()
        .uri(s.signaling_url())
        .header("Host", s.signaling.to_string())
        .header("Origin", "http://evil.example")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let ok = tokio_tungstenite::tungstenite::handshake::client::Request::builder()
        .uri(s.signaling_url())
        .header("Host", s.signaling.to_string())
        .header("Origin", "http://app.example")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    assert!(tokio_tungstenite::connect_async(ok).await.is_ok());
    s.stop().await;
}

#[tokio::test]
async fn the_api_rate_limits_each_client_with_429() {
    let s = TestServer::with(Config {
        http_requests_per_second: 2,
        ..test_config()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(http("GET", s.http, "/api/health", None, &[]).await.0);
    }
    // A burst of twice the rate passes, then the client is told to slow down, in JSON.
    assert_eq!(&statuses[..4], &[200, 200, 200, 200]);
    assert!(statuses[4..].contains(&429), "{statuses:?}");
    let (st, b) = http("GET", s.http, "/api/health", None, &[]).await;
    assert_eq!((st, b["code"].as_str()), (429, Some("rate_limited")));
    s.stop().await;
}

#[tokio::test]
async fn metrics_move_to_metrics_route() {
    let config = Config {
        metrics_route: "/internal/prom".into(),
        ..test_config()
    };
    let s = TestServer::with(config).await;
    let (st, text) = http_raw("GET", s.http, "/internal/prom", None, &[]).await;
    assert_eq!(st, 200);
    assert!(text.contains("# TYPE"), "{text}");
    let (st, _) = http_raw("GET", s.http, "/metrics", None, &[]).await;
    assert_eq!(st, 404, "the default path is free once moved");
    let (_, info) = http("GET", s.http, "/api/info", None, &[]).await;
    let endpoints = info["endpoints"].as_array().unwrap();
    assert!(
        endpoints.iter().any(|e| e == "GET /internal/prom"),
        "{info}"
    );
}

/// `/api/stats`' `operations.total` is the signals this node relayed: a relay to one peer
/// and one to the room count one each, a refused one not at all.
#[tokio::test]
async fn operations_count_the_signals_relayed() {
    let s = TestServer::start().await;
    let mut peers = Vec::new();
    for (user, join, joined) in [
        ("alice", "create-room", "room-created"),
        ("bob", "join-room", "room-joined"),
    ] {
        let mut c = Client::connect(&s.signaling_url()).await;
        c.send(json!({"type":"auth","userId":user,"roomId":"r1"}))
            .await;
        c.recv_type("auth").await;
        c.send(json!({"type":join,"roomId":"r1","userId":user}))
            .await;
        c.recv_type(joined).await;
        peers.push(c);
    }
    let (alice, bob) = peers.split_at_mut(1);
    let (alice, bob) = (&mut alice[0], &mut bob[0]);
    alice.recv_type("peer-joined").await;
    alice
        .send(json!({"type":"sdp-offer","roomId":"r1","userId":"alice","data":{"peer":"bob","offer":{}}}))
        .await;
    bob.recv_type("sdp-offer").await;
    alice
        .send(
            json!({"type":"ice-candidate","roomId":"r1","userId":"alice","data":{"candidate":{}}}),
        )
        .await;
    bob.recv_type("ice-candidate").await;
    alice
        .send(json!({"type":"sdp-offer","roomId":"r1","userId":"alice","data":{"peer":"carol","offer":{}}}))
        .await;
    alice.recv_type("error").await;
    let (st, b) = http("GET", s.http, "/api/stats", None, &[]).await;
    assert_eq!(
        (st, b["operations"]["total"].as_u64()),
        (200, Some(2)),
        "{b}"
    );
    s.stop().await;
}
