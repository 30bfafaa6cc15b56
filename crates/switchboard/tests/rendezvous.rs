//! The rendezvous dialect (seed 004 README) on `/ws?room=`, end to end: the real server on
//! port 0, real WebSocket clients.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use switchboard::Config;

fn url(server: &TestServer, query: &str) -> String {
    format!("ws://{}/ws?{query}", server.http)
}

async fn joined(server: &TestServer, room: &str, peer: &str) -> Client {
    let mut c = Client::connect(&url(server, &format!("room={room}"))).await;
    c.send(json!({"type":"join","peerId":peer})).await;
    let ready = c.recv_type("ready").await;
    assert_eq!(ready["selfId"], peer);
    c
}

#[tokio::test]
async fn ready_peer_joined_signal_leave_peer_left_frames_are_exact() {
    let server = TestServer::start().await;
    let mut a = Client::connect(&url(&server, "room=ABC-123")).await;
    a.send_text(r#"{"type":"join","peerId":"sender"}"#).await;
    assert_eq!(
        a.recv_text().await,
        r#"{"type":"ready","selfId":"sender","peers":[]}"#
    );
    let mut b = Client::connect(&url(&server, "room=ABC-123")).await;
    b.send_text(r#"{"type":"join","peerId":"receiver"}"#).await;
    assert_eq!(
        b.recv_text().await,
        r#"{"type":"ready","selfId":"receiver","peers":[{"peerId":"sender"}]}"#
    );
    assert_eq!(
        a.recv_text().await,
        r#"{"type":"peer-joined","peerId":"receiver"}"#
    );

    // Targeted: data byte for byte (odd spacing and key order kept).
    a.send_text(r#"{"type":"signal","to":"receiver","data":{ "sdp":"v=0","type":"offer" }}"#)
        .await;
    assert_eq!(
        b.recv_text().await,
        r#"{"type":"signal","from":"sender","data":{ "sdp":"v=0","type":"offer" }}"#
    );
    // Untargeted: every other member, not the sender.
    b.send_text(r#"{"type":"signal","data":{"candidate":"c1","sdpMid":"0"}}"#)
        .await;
    assert_eq!(
        a.recv_text().await,
        r#"{"type":"signal","from":"receiver","data":{"candidate":"c1","sdpMid":"0"}}"#
    );
    b.expect_silence(Duration::from_millis(150)).await;

    b.send(json!({"type":"leave"})).await;
    assert_eq!(b.recv_close().await, Some((1000, "left".into())));
    assert_eq!(
        a.recv_text().await,
        r#"{"type":"peer-left","peerId":"receiver"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn self_id_is_generated_when_peer_id_is_omitted() {
    let server = TestServer::start().await;
    let mut a = Client::connect(&url(&server, "room=r")).await;
    a.send(json!({"type":"join"})).await;
    let ready = a.recv_type("ready").await;
    let id = ready["selfId"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(ready["peers"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn bad_or_missing_key_is_refused_with_1008() {
    let config = Config {
        rendezvous_ws_key: Some("dev-secret".into()),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    for query in ["room=r", "room=r&key=wrong"] {
        let mut c = Client::connect(&url(&server, query)).await;
        let e = c.recv_type("error").await;
        assert_eq!(e["code"], "invalid_key");
        assert_eq!(c.recv_close().await, Some((1008, "invalid key".into())));
    }
    let mut ok = Client::connect(&url(&server, "room=r&key=dev-secret")).await;
    ok.send(json!({"type":"join","peerId":"p"})).await;
    ok.recv_type("ready").await;
    server.stop().await;
}

#[tokio::test]
async fn full_room_duplicate_peer_and_non_join_first_are_refused() {
    let server = TestServer::start().await;
    let _a = joined(&server, "full", "a").await;
    // Duplicate peerId.
    let mut dup = Client::connect(&url(&server, "room=full")).await;
    dup.send(json!({"type":"join","peerId":"a"})).await;
    let e = dup.recv_type("error").await;
    assert_eq!(e["code"], "peer_id_taken");
    assert_eq!(dup.recv_close().await, Some((1008, "peer id taken".into())));
    let _b = joined(&server, "full", "b").await;
    // Third peer: RENDEZVOUS_MAX_PEERS defaults to 2.
    let mut c = Client::connect(&url(&server, "room=full")).await;
    c.send(json!({"type":"join","peerId":"c"})).await;
    let e = c.recv_type("error").await;
    assert_eq!(e["code"], "room_full");
    assert_eq!(c.recv_close().await, Some((1008, "room full".into())));
    // First message not a join.
    for first in [r#"{"type":"signal","data":{}}"#, "not json"] {
        let mut d = Client::connect(&url(&server, "room=other")).await;
        d.send_text(first).await;
        let e = d.recv_type("error").await;
        assert_eq!(e["code"], "join_required");
        assert_eq!(d.recv_close().await, Some((1008, "join required".into())));
    }
    server.stop().await;
}

#[tokio::test]
async fn join_deadline_applies() {
    let config = Config {
        auth_timeout: Duration::from_millis(200).into(),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let mut c = Client::connect(&url(&server, "room=slow")).await;
    assert_eq!(
        c.recv_close().await,
        Some((1008, "authentication timeout".into()))
    );
    server.stop().await;
}

#[tokio::test]
async fn errors_that_keep_the_connection() {
    let server = TestServer::start().await;
    let mut a = joined(&server, "e", "a").await;
    a.send(json!({"type":"signal","to":"ghost","data":{}}))
        .await;
    let e = a.recv_type("error").await;
    assert_eq!(e["code"], "peer_not_found");
    assert!(e["message"].as_str().unwrap().contains("ghost"));
    a.send_text("{oops").await;
    assert_eq!(a.recv_type("error").await["code"], "bad_json");
    a.send(json!({"type":"dance"})).await;
    assert_eq!(a.recv_type("error").await["code"], "unknown_type");
    a.send(json!({"type":"join","peerId":"a"})).await;
    assert_eq!(a.recv_type("error").await["code"], "already_joined");
    // Still in the room and working.
    let mut b = joined(&server, "e", "b").await;
    a.recv_type("peer-joined").await;
    a.send(json!({"type":"signal","data":{"x":1}})).await;
    assert_eq!(b.recv_type("signal").await["data"], json!({"x":1}));
    server.stop().await;
}

#[tokio::test]
async fn idle_room_expires_after_room_ttl() {
    let config = Config {
        room_ttl: Duration::from_millis(300).into(),
        cleanup_check_interval: Duration::from_millis(50).into(),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let mut a = joined(&server, "ttl", "a").await;
    assert_eq!(
        a.recv_close().await,
        Some((1000, "room closed for inactivity".into()))
    );
    let app = server.app.clone();
    eventually(|| app.registry.room(&"ttl".into()).is_none()).await;
    server.stop().await;
}

#[tokio::test]
async fn rooms_are_shared_with_octatecode() {
    let server = TestServer::start().await;
    let mut r = joined(&server, "shared", "rv").await;
    let mut o = Client::connect(&server.signaling_url()).await;
    o.send(json!({"type":"auth","userId":"oc","roomId":"shared"}))
        .await;
    o.recv_type("auth").await;
    o.send(json!({"type":"join-room","roomId":"shared","userId":"oc"}))
        .await;
    o.recv_type("room-joined").await;
    assert_eq!(
        r.recv_text().await,
        r#"{"type":"peer-joined","peerId":"oc"}"#
    );
    o.send_text(r#"{"type":"sdp-offer","roomId":"shared","userId":"oc","data":{"offer":{"type":"offer","sdp":"v=0"}}}"#)
        .await;
    assert_eq!(
        r.recv_text().await,
        r#"{"type":"signal","from":"oc","data":{"type":"offer","sdp":"v=0"}}"#
    );
    r.send(json!({"type":"signal","to":"oc","data":{"type":"answer","sdp":"v=1"}}))
        .await;
    let got = o.recv_type("sdp-answer").await;
    assert_eq!(got["userId"], "rv");
    o.close().await;
    assert_eq!(r.recv_text().await, r#"{"type":"peer-left","peerId":"oc"}"#);
    server.stop().await;
}

#[tokio::test]
async fn ws_without_room_or_app_id_is_400() {
    let server = TestServer::start().await;
    let (status, body) = http_raw("GET", server.http, "/ws", None, &[]).await;
    assert_eq!((status, body.as_str()), (400, "missing room or appID\n"));
    let (status, _) = http_raw("GET", server.http, "/ws?room=", None, &[]).await;
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test]
async fn pings_every_heartbeat() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let config = Config {
        heartbeat: Duration::from_millis(100).into(),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let mut a = joined(&server, "hb", "a").await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(700);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, a.inner().next()).await {
        if matches!(m, Message::Ping(_)) {
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} pings in 700 ms at a 100 ms heartbeat");
    server.stop().await;
}

#[tokio::test]
async fn an_nt_side_and_a_rendezvous_peer_share_a_room() {
    let server = TestServer::start().await;
    let app_id = "0f0c7a9e-3b1d-4c2a-9e8f-0123456789ab";
    let mut r = joined(&server, app_id, "rv").await;
    let mut nt = Client::connect(&format!("ws://{}/ws?appID={app_id}&side=A", server.http)).await;
    assert_eq!(nt.recv_text().await, "{\"type\":\"room_full\"}\n");
    assert_eq!(
        r.recv_text().await,
        r#"{"type":"peer-joined","peerId":"A"}"#
    );
    nt.send_text(r#"{"type":"offer","sdp":{"type":"offer","sdp":"v=0"}}"#)
        .await;
    assert_eq!(
        r.recv_text().await,
        r#"{"type":"signal","from":"A","data":{"type":"offer","sdp":"v=0"}}"#
    );
    r.send_text(r#"{"type":"signal","to":"A","data":{"type":"answer","sdp":"v=1"}}"#)
        .await;
    assert_eq!(
        nt.recv_text().await,
        r#"{"type":"answer","sdp":{"type":"answer","sdp":"v=1"}}"#
    );
    server.stop().await;
}

/// Seed 004 documents `nt_ws_connections_total`, `nt_ws_messages_total{type}`,
/// `nt_ws_errors_total`, `nt_rooms_active` and `nt_peers_active` for its `/ws?room=`
/// protocol: each moves with rendezvous joins, messages, errors and leaves.
#[tokio::test]
async fn the_seed_004_series_count_the_rendezvous_protocol() {
    let server = TestServer::start().await;
    let m = scrape(&server).await;
    assert_eq!(series(&m, "nt_ws_connections_total"), 0.0);
    assert_eq!(series(&m, "nt_rooms_active"), 0.0);
    assert_eq!(series(&m, "nt_peers_active"), 0.0);
    // Peers of other dialects are not seed 004's.
    let mut oc = Client::connect(&server.signaling_url()).await;
    oc.send(json!({"type":"auth","userId":"o","roomId":"other"}))
        .await;
    oc.recv_type("auth").await;
    oc.send(json!({"type":"create-room","roomId":"other"}))
        .await;
    oc.recv_type("room-created").await;

    let mut a = joined(&server, "metrics", "a").await;
    let mut b = joined(&server, "metrics", "b").await;
    a.recv_type("peer-joined").await;
    let m = scrape(&server).await;
    assert_eq!(series(&m, "nt_ws_connections_total"), 2.0);
    assert_eq!(series(&m, r#"nt_ws_messages_total{type="join"}"#), 2.0);
    assert_eq!(series(&m, "nt_rooms_active"), 1.0);
    assert_eq!(series(&m, "nt_peers_active"), 2.0);
    let errors = series_or(&m, "nt_ws_errors_total").unwrap_or(0.0);

    a.send(json!({"type":"signal","to":"b","data":{"sdp":"x"}}))
        .await;
    b.recv_type("signal").await;
    a.send(json!({"type":"signal","to":"nobody","data":{}}))
        .await;
    assert_eq!(a.recv_type("error").await["code"], "peer_not_found");
    a.send_text("not json").await;
    a.recv_type("error").await;
    let m = scrape(&server).await;
    assert_eq!(series(&m, r#"nt_ws_messages_total{type="signal"}"#), 2.0);
    assert_eq!(series(&m, "nt_ws_errors_total"), errors + 2.0);

    b.send(json!({"type":"leave"})).await;
    a.recv_type("peer-left").await;
    let m = scrape(&server).await;
    assert_eq!(series(&m, r#"nt_ws_messages_total{type="leave"}"#), 1.0);
    assert_eq!(series(&m, "nt_peers_active"), 1.0);
    drop(a);
    eventually(|| server.app.registry.room(&"metrics".into()).is_none()).await;
    let m = scrape(&server).await;
    assert_eq!(series(&m, "nt_rooms_active"), 0.0);
    assert_eq!(series(&m, "nt_peers_active"), 0.0);
    server.stop().await;
}
