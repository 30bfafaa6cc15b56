//! Regressions found by the fuzz targets (fuzz/, FUZZING.md) that need a whole server; the
//! ones a codec or a parser shows alone are unit tests next to their code.

mod support;

use serde_json::json;
use support::*;
use switchboard::Config;

/// The config target: settings of thousands of years were accepted, then overflowed where
/// the server adds them to the clock (`POST /rendezvous/code` panicked formatting an expiry
/// past year 9999 with `ROOM_TTL=9000years`; `POST /api/auth/token` overflowed computing
/// `expiresAt` with `TOKEN_TTL=600000000years`; a connection's deadlines overflow an
/// `Instant` further out). Durations are now at most 100 years; a server with every
/// duration at that bound issues codes and tokens and keeps a WebSocket peer.
#[tokio::test]
async fn a_server_with_every_duration_at_its_bound_serves() {
    for over in ["--room-ttl=9000years", "--token-ttl=600000000years"] {
        let e = Config::parse_without_env(["switchboard", over]).expect_err(over);
        assert!(e.to_string().contains("at most 100years"), "{e}");
    }
    let bound = Config::parse_without_env([
        "switchboard",
        "--room-ttl=100years",
        "--token-ttl=100years",
        "--turn-ttl=100years",
        "--auth-timeout=100years",
        "--room-inactivity-timeout=100years",
        "--peer-heartbeat-timeout=100years",
        "--ping-interval=99years",
        "--heartbeat=99years",
        "--empty-room-grace=100years",
        "--unjoined-room-ttl=100years",
        "--cleanup-check-interval=100years",
        "--memory-check-interval=100years",
        "--shutdown-timeout=100years",
    ])
    .expect("100 years is accepted");
    let server = TestServer::with(Config {
        host: "127.0.0.1".parse().unwrap(),
        port: 0,
        signaling_port: 0,
        socketio_port: 0,
        ..bound
    })
    .await;
    let (status, code) = http("POST", server.http, "/rendezvous/code", None, &[]).await;
    assert_eq!(status, 200, "{code}");
    assert!(
        code["expiresAt"]
            .as_str()
            .is_some_and(|t| t.starts_with("21")),
        "{code}"
    );
    let body = json!({"userId":"alice","roomId":"r1"});
    let (status, token) = http("POST", server.http, "/api/auth/token", Some(&body), &[]).await;
    assert_eq!(status, 200, "{token}");
    assert!(
        token["expiresAt"]
            .as_u64()
            .is_some_and(|ms| ms > 4_000_000_000_000),
        "{token}"
    );
    let mut peer = Client::connect(&format!("ws://{}/ws?room=far", server.http)).await;
    peer.send(json!({"type":"join","peerId":"p"})).await;
    assert_eq!(peer.recv_type("ready").await["selfId"], "p");
    server.stop().await;
}
