//! Message size limits, the same on every WebSocket dialect: a message over
//! `MAX_FRAME_BYTES` gets an error reply and the connection stays; one over the hard cap
//! (4 × `MAX_FRAME_BYTES`, at least 1 MiB) closes the connection with 1009.

mod support;

use serde_json::json;
use support::*;
use switchboard::Config;

/// Connects to each WebSocket dialect and brings the connection to where it reads
/// messages (authenticated, joined or subscribed).
async fn every_dialect(s: &TestServer) -> Vec<(&'static str, Client)> {
    let mut octate = Client::connect(&s.signaling_url()).await;
    octate
        .send(json!({"type":"auth","userId":"o","roomId":"r"}))
        .await;
    octate.recv_type("auth").await;
    let mut rdv = Client::connect(&format!("ws://{}/ws?room=big", s.http)).await;
    rdv.send(json!({"type":"join","peerId":"p"})).await;
    rdv.recv_type("ready").await;
    let nt = Client::connect(&format!(
        "ws://{}/ws?appID=0b6e8c1e-1111-4c2a-9a57-7f3f2d1c0b9e&side=A",
        s.http
    ))
    .await;
    let yw = Client::connect(&format!("ws://{}/y-webrtc", s.http)).await;
    let signaling_on_http = Client::connect(&format!("ws://{}/signaling", s.http)).await;
    vec![
        ("octate", octate),
        ("rendezvous", rdv),
        ("nt", nt),
        ("ywebrtc", yw),
        ("octate on /signaling", signaling_on_http),
    ]
}

#[tokio::test]
async fn a_message_over_the_hard_cap_closes_with_1009_in_every_dialect() {
    let s = TestServer::with(Config {
        max_messages_per_second: 0,
        ..test_config()
    })
    .await;
    let cap = s.app.config.hard_frame_cap();
    assert_eq!(cap, 1 << 20);
    let too_big = format!("{{\"type\":\"x\",\"pad\":\"{}\"}}", "a".repeat(cap));
    for (name, mut c) in every_dialect(&s).await {
        c.send_text(&too_big).await;
        let close = c.recv_close().await;
        assert_eq!(close.map(|c| c.0), Some(1009), "{name}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_message_between_the_limit_and_the_cap_gets_an_error_and_the_connection_stays() {
    let s = TestServer::with(Config {
        max_messages_per_second: 0,
        ..test_config()
    })
    .await;
    let big = format!(
        "{{\"type\":\"x\",\"pad\":\"{}\"}}",
        "a".repeat(s.app.config.max_frame_bytes.get())
    );
    for (name, mut c) in every_dialect(&s).await {
        c.send_text(&big).await;
        let e = c.recv().await;
        assert_eq!(e["type"], "error", "{name}: {e}");
        // Still open and still reading: the next one gets its own error.
        c.send_text(&big).await;
        assert_eq!(c.recv().await["type"], "error", "{name}");
        let counted = scrape(&s).await;
        assert!(
            series(
                &counted,
                r#"switchboard_limit_hits_total{limit="frame_size"}"#
            ) >= 1.0
        );
    }
    s.stop().await;
}
