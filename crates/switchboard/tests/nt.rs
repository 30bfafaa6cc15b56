//! The deployed nt-backend-wrtc dialect on `/ws?appID=&side=` and the rendezvous code
//! endpoints, end to end: the real server on port 0, real WebSocket clients.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::*;
use switchboard::Config;
use tokio_tungstenite::tungstenite::Message;

const APP: &str = "5f0c7a9e-3b1d-4c2a-9e8f-0123456789ab";
const ROOM_FULL: &str = "{\"type\":\"room_full\"}\n";

fn url(server: &TestServer, side: &str) -> String {
    format!("ws://{}/ws?appID={APP}&side={side}", server.http)
}

/// A and B connected; both have seen `room_full`.
async fn pair(server: &TestServer) -> (Client, Client) {
    let mut a = Client::connect(&url(server, "A")).await;
    a.expect_silence(Duration::from_millis(100)).await;
    let mut b = Client::connect(&url(server, "B")).await;
    assert_eq!(a.recv_text().await, ROOM_FULL);
    assert_eq!(b.recv_text().await, ROOM_FULL);
    (a, b)
}

#[tokio::test]
async fn room_full_goes_to_both_sides_and_again_on_reconnect() {
    let server = TestServer::start().await;
    let (a, mut b) = pair(&server).await;
    a.close().await;
    b.expect_silence(Duration::from_millis(150)).await;
    let mut a = Client::connect(&url(&server, "A")).await;
    assert_eq!(a.recv_text().await, ROOM_FULL);
    assert_eq!(b.recv_text().await, ROOM_FULL);
    server.stop().await;
}

#[tokio::test]
async fn signals_are_relayed_byte_for_byte() {
    let server = TestServer::start().await;
    let (mut a, mut b) = pair(&server).await;
    let offer = r#"{"type":"offer","sdp":{"type":"offer","sdp":"v=0"}}"#;
    a.send_text(offer).await;
    assert_eq!(b.recv_text().await, offer);
    a.expect_silence(Duration::from_millis(100)).await;
    let answer = r#"{ "type" : "ANSWER", "sdp":"x" }"#;
    b.send_text(answer).await;
    assert_eq!(a.recv_text().await, answer);
    // Binary in, text out, same bytes.
    let bin = r#"{"type":"ice","cand":null}"#;
    a.send_binary(bin.as_bytes().to_vec()).await;
    assert_eq!(b.recv_text().await, bin);
    a.send_text(r#"{"type":"sender_ready"}"#).await;
    assert_eq!(b.recv_text().await, r#"{"type":"sender_ready"}"#);
    // Ignored: other types, malformed JSON; the connection stays open.
    for ignored in [
        r#"{"type":"signal","to":"B","data":{"x":1}}"#,
        "not json",
        r#"{"type":"offer""#,
        "[1,2]",
        r#"{"type":5}"#,
        r#"{"type":"telemetry","event":"ice-connected"}"#,
    ] {
        a.send_text(ignored).await;
    }
    b.expect_silence(Duration::from_millis(150)).await;
    a.send_text(offer).await;
    assert_eq!(b.recv_text().await, offer);
    server.stop().await;
}

#[tokio::test]
async fn a_signal_with_nobody_there_is_dropped_and_counted() {
    let server = TestServer::start().await;
    let mut a = Client::connect(&url(&server, "A")).await;
    a.send_text(r#"{"type":"offer","sdp":"lost"}"#).await;
    a.expect_silence(Duration::from_millis(100)).await;
    let (status, text) = http_raw("GET", server.http, "/metrics", None, &[]).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("nt_signal_dropped_total{type=\"offer\"} 1"),
        "{text}"
    );
    assert!(text.contains("nt_ws_connections_total 1"), "{text}");
    assert!(text.contains("nt_ws_errors_total 0"), "{text}");
    assert!(
        text.contains("nt_ws_messages_total{type=\"offer\"} 1"),
        "{text}"
    );
    assert!(text.contains("nt_rooms_active 1"), "{text}");
    assert!(text.contains("nt_peers_active 1"), "{text}");
    assert!(
        text.contains("nt_signal_bytes_total{dir=\"in\",type=\"offer\"}"),
        "{text}"
    );
    assert_eq!(text.matches("# EOF").count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_busy_side_is_closed_with_1008_and_the_holder_kept() {
    let server = TestServer::start().await;
    let (mut a, mut b) = pair(&server).await;
    let mut again = Client::connect(&format!("{}&sid=x", url(&server, "A"))).await;
    assert_eq!(again.recv_close().await, Some((1008, "side A busy".into())));
    a.send_text(r#"{"type":"offer","sdp":"still"}"#).await;
    assert_eq!(b.recv_text().await, r#"{"type":"offer","sdp":"still"}"#);
    server.stop().await;
}

#[tokio::test]
async fn mailbox_send_and_hello_replay_without_off_by_one() {
    let server = TestServer::start().await;
    let (mut a, mut b) = pair(&server).await;
    a.send(json!({"type":"send","to":"b","payload":{"note":"hi"}}))
        .await;
    assert_eq!(
        b.recv_text().await,
        "{\"payload\":{\"note\":\"hi\"},\"seq\":0,\"type\":\"send\"}\n"
    );
    a.send_text(r#"{"type":"send","to":"B","payload":"{\"n\":2}"}"#)
        .await;
    assert_eq!(
        b.recv_text().await,
        "{\"payload\":\"{\\\"n\\\":2}\",\"seq\":1,\"type\":\"send\"}\n"
    );
    // deliveredUpTo 0: B has nothing, so both come again.
    b.send(json!({"type":"hello","deliveredUpTo":0})).await;
    let seqs = [b.recv().await["seq"].clone(), b.recv().await["seq"].clone()];
    assert_eq!(seqs, [json!(0), json!(1)]);
    // deliveredUpTo 1: B has seq 0; seq 1 comes again.
    b.send(json!({"type":"hello","deliveredUpTo":1})).await;
    assert_eq!(b.recv().await["seq"], 1);
    b.expect_silence(Duration::from_millis(100)).await;
    // deliveredUpTo 2: nothing left; the CLI's bare hello replays what is left (nothing).
    b.send(json!({"type":"hello","deliveredUpTo":2})).await;
    b.send(json!({"type":"hello","side":"B"})).await;
    b.expect_silence(Duration::from_millis(150)).await;
    // Queued while B is away, replayed on B's hello after reconnecting.
    b.close().await;
    a.send(json!({"type":"send","to":"B","payload":3})).await;
    let mut b = Client::connect(&url(&server, "B")).await;
    assert_eq!(b.recv_text().await, ROOM_FULL);
    assert_eq!(a.recv_text().await, ROOM_FULL);
    b.send(json!({"type":"hello","deliveredUpTo":2})).await;
    assert_eq!(
        b.recv_text().await,
        "{\"payload\":3,\"seq\":2,\"type\":\"send\"}\n"
    );
    // The mailbox goes with the room's last connection.
    assert_eq!(server.app.nt.mailbox_rooms(), 1);
    a.close().await;
    b.close().await;
    let app = server.app.clone();
    eventually(|| app.nt.mailbox_rooms() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn upgrade_query_is_validated_in_order() {
    let server = TestServer::start().await;
    for (path, body) in [
        ("/ws?appID=nope&side=A", "invalid appID\n"),
        ("/ws?appID=&side=Q", "invalid appID\n"),
        (&format!("/ws?appID={APP}&side=a") as &str, "invalid side\n"),
        (&format!("/ws?appID={APP}") as &str, "invalid side\n"),
    ] {
        let (status, text) = http_raw("GET", server.http, path, None, &[]).await;
        assert_eq!((status, text.as_str()), (400, body), "{path}");
    }
    server.stop().await;

    let config = Config {
        cors_origins: switchboard::config::List(vec!["https://app.example".into()]),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url(
        &server, "B",
    ))
    .map(|mut r| {
        r.headers_mut()
            .insert("Origin", "http://localhost:3000".parse().unwrap());
        r
    })
    .unwrap();
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn rendezvous_codes_are_single_use() {
    let server = TestServer::start().await;
    let (status, text) = http_raw("POST", server.http, "/rendezvous/code", None, &[]).await;
    assert_eq!(status, 200);
    assert!(text.ends_with("}\n"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let code = v["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 4);
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    let app_id = v["appID"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&app_id).unwrap().get_version_num(), 4);
    assert!(v["expiresAt"].as_str().unwrap().ends_with('Z'));

    let body = json!({ "code": code }).to_string();
    let (status, text) =
        http_raw("POST", server.http, "/rendezvous/redeem", Some(&body), &[]).await;
    assert_eq!(status, 200, "{text}");
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["appID"], app_id);
    assert_eq!(r["expiresAt"], v["expiresAt"]);
    // Single use.
    let (status, text) =
        http_raw("POST", server.http, "/rendezvous/redeem", Some(&body), &[]).await;
    assert_eq!((status, text.as_str()), (410, "gone\n"));

    for bad in [
        "not json",
        "{}",
        r#"{"code":123}"#,
        r#"{"code":"12"}"#,
        r#"{"code":" 1234"}"#,
    ] {
        let (status, text) =
            http_raw("POST", server.http, "/rendezvous/redeem", Some(bad), &[]).await;
        assert_eq!((status, text.as_str()), (400, "bad request\n"), "{bad}");
    }
    let (status, text) = http_raw(
        "POST",
        server.http,
        "/rendezvous/redeem",
        Some(&body),
        &[("Content-Type", "text/plain")],
    )
    .await;
    assert_eq!((status, text.as_str()), (415, "bad content-type\n"));
    for path in ["/rendezvous/code", "/rendezvous/redeem"] {
        let (status, text) = http_raw("GET", server.http, path, None, &[]).await;
        assert_eq!((status, text.as_str()), (405, "method not allowed\n"));
    }
    server.stop().await;
}

#[tokio::test]
async fn rendezvous_codes_expire_after_room_ttl() {
    let config = Config {
        room_ttl: Duration::from_millis(100).into(),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let (_, text) = http_raw("POST", server.http, "/rendezvous/code", None, &[]).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body = json!({ "code": v["code"] }).to_string();
    let (status, _) = http_raw("POST", server.http, "/rendezvous/redeem", Some(&body), &[]).await;
    assert_eq!(status, 410);
    server.stop().await;
}

#[tokio::test]
async fn raw_client_sees_text_frames_only() {
    // A binary offer arrives as a text frame, checked on the raw stream.
    let server = TestServer::start().await;
    let (mut a, mut b) = pair(&server).await;
    a.inner()
        .send(Message::binary(
            b"{\"type\":\"offer\",\"sdp\":\"bin\"}".to_vec(),
        ))
        .await
        .unwrap();
    let msg = loop {
        match tokio::time::timeout(PATIENCE, b.inner().next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => break m,
        }
    };
    assert_eq!(msg, Message::text("{\"type\":\"offer\",\"sdp\":\"bin\"}"));
    server.stop().await;
}

#[tokio::test]
async fn telemetry_and_ping_round_trips_fill_the_session_series() {
    let config = Config {
        ping_interval: Duration::from_millis(100).into(),
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let (mut a, mut b) = pair(&server).await;
    b.send_text(r#"{"type":"telemetry","event":"ice-connected","mode":"P2P"}"#)
        .await;
    // The room is established once, whoever reports it next.
    a.send_text(r#"{"type":"TELEMETRY","event":"ice-connected","mode":"relay"}"#)
        .await;
    a.send_text(r#"{"type":"telemetry","event":"ice-failed","reason":"timeout"}"#)
        .await;
    a.send_text(r#"{"type":"telemetry","event":"ice-failed"}"#)
        .await;
    // Reading answers the server's pings (every 100 ms here); telemetry gets no reply.
    a.expect_silence(Duration::from_millis(400)).await;
    b.expect_silence(Duration::from_millis(200)).await;

    let (status, text) = http_raw("GET", server.http, "/metrics", None, &[]).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("nt_session_established_total{mode=\"p2p\"} 1"),
        "{text}"
    );
    assert!(!text.contains("mode=\"relay\""), "{text}");
    assert!(
        text.contains("nt_session_failed_total{reason=\"timeout\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("nt_session_failed_total{reason=\"ice-failed\"} 1"),
        "{text}"
    );
    assert_eq!(
        series(&text, "nt_session_time_to_first_flow_seconds_count"),
        1.0
    );
    assert!(
        text.contains("nt_ws_frame_bytes_count{dir=\"in\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("nt_ws_frame_bytes_count{dir=\"out\"} 2"),
        "two room_full frames: {text}"
    );
    assert!(series(&text, "nt_ws_rtt_seconds_count") >= 1.0, "{text}");
    assert!(
        series(&text, "switchboard_ws_rtt_seconds_count") >= 1.0,
        "{text}"
    );
    server.stop().await;
}
