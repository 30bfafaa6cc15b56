//! The y-webrtc dialect at `/y-webrtc`, end to end: the real server on port 0, real
//! WebSocket clients.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use switchboard_core::RoomId;

fn url(server: &TestServer) -> String {
    format!("ws://{}/y-webrtc", server.http)
}

async fn subscribed(server: &TestServer, topics: &[&str]) -> Client {
    let mut c = Client::connect(&url(server)).await;
    c.send(json!({"type":"subscribe","topics":topics})).await;
    // Subscribing has no reply; a ping round trip orders it before what follows.
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.recv().await, json!({"type":"pong"}));
    c
}

#[tokio::test]
async fn publish_reaches_the_other_subscribers_with_the_client_count() {
    let server = TestServer::start().await;
    let mut a = subscribed(&server, &["doc-1"]).await;
    let mut b = subscribed(&server, &["doc-1", "doc-2"]).await;
    let mut c = subscribed(&server, &["doc-2"]).await;

    let data = json!({"type":"announce","from":"peer-a"});
    a.send(json!({"type":"publish","topic":"doc-1","data":data}))
        .await;
    assert_eq!(
        b.recv().await,
        json!({"type":"publish","topic":"doc-1","data":data,"clients":2})
    );
    a.expect_silence(Duration::from_millis(200)).await;
    c.expect_silence(Duration::from_millis(50)).await;

    // Targeted signalling is the client's business: the data goes through untouched.
    let signal = json!({"type":"signal","from":"b","to":"c","token":0.5,"signal":{"type":"offer","sdp":"v=0"}});
    b.send(json!({"type":"publish","topic":"doc-2","data":signal}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"type":"publish","topic":"doc-2","data":signal,"clients":2})
    );
    a.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn unsubscribe_and_close_leave_topics_and_empty_topics_are_removed() {
    let server = TestServer::start().await;
    let mut a = subscribed(&server, &["t"]).await;
    let mut b = subscribed(&server, &["t"]).await;
    let room = RoomId::new("y-webrtc/t");
    assert_eq!(server.app.registry.room(&room).unwrap().members.len(), 2);

    b.send(json!({"type":"unsubscribe","topics":["t"]})).await;
    b.send(json!({"type":"ping"})).await;
    b.recv_type("pong").await;
    a.send(json!({"type":"publish","topic":"t","data":1})).await;
    b.expect_silence(Duration::from_millis(200)).await;
    // Publishing to a topic not subscribed is refused with an error frame.
    b.send(json!({"type":"publish","topic":"t","data":2})).await;
    let e = b.recv_type("error").await;
    assert_eq!(e["code"], "not_subscribed");

    a.close().await;
    let app = server.app.clone();
    eventually(|| app.registry.room(&room).is_none()).await;
    b.close().await;
    server.stop().await;
}

#[tokio::test]
async fn topics_never_collide_with_rooms_of_other_dialects() {
    let server = TestServer::start().await;
    let _a = subscribed(&server, &["r1"]).await;
    assert!(server.app.registry.room(&RoomId::new("r1")).is_none());
    assert!(
        server
            .app
            .registry
            .room(&RoomId::new("y-webrtc/r1"))
            .is_some()
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_frames_get_error_frames_and_the_connection_survives() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&url(&server)).await;
    for (frame, code) in [
        ("not json", "bad_json"),
        ("[1,2]", "bad_message"),
        ("{}", "missing_type"),
        (r#"{"type":"launch"}"#, "unknown_type"),
        (r#"{"type":"subscribe"}"#, "missing_topics"),
        (r#"{"type":"subscribe","topics":"t"}"#, "bad_topics"),
        (r#"{"type":"publish","data":1}"#, "missing_topic"),
        (
            r#"{"type":"publish","topic":"x","data":1}"#,
            "not_subscribed",
        ),
    ] {
        c.send_text(frame).await;
        let e = c.recv_type("error").await;
        assert_eq!(e["code"], code, "{frame}: {e}");
    }
    // Non-string topics are skipped; the valid ones still subscribe.
    c.send(json!({"type":"subscribe","topics":[1, null, "", "ok"]}))
        .await;
    c.send(json!({"type":"ping"})).await;
    c.recv_type("pong").await;
    assert!(
        server
            .app
            .registry
            .room(&RoomId::new("y-webrtc/ok"))
            .is_some()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_connection_may_hold_at_most_64_topics() {
    // Sixty-four new topics in a second: more than one client's room creation budget, which
    // is not what this test is about.
    let server = TestServer::with(switchboard::Config {
        room_creations_per_minute: 0,
        ..test_config()
    })
    .await;
    let mut c = Client::connect(&url(&server)).await;
    let topics: Vec<String> = (0..64).map(|i| format!("t{i}")).collect();
    c.send(json!({"type":"subscribe","topics":topics})).await;
    c.send(json!({"type":"ping"})).await;
    c.recv_type("pong").await;
    // Subscribing again to a held topic is a no-op, not an error.
    c.send(json!({"type":"subscribe","topics":["t0"]})).await;
    c.send(json!({"type":"subscribe","topics":["one-too-many"]}))
        .await;
    let e = c.recv_type("error").await;
    assert_eq!(e["code"], "too_many_topics");
    assert_eq!(server.app.registry.stats().rooms, 64);
    server.stop().await;
}
