//! The production security model (issue 14): every dialect authenticates, a room's access
//! follows its creator, and token holders' ids and rooms cannot be taken or read by
//! anonymous peers of another dialect. Real server on port 0, real clients; a bystander
//! pair keeps signaling throughout.

mod support;

use serde_json::json;
use support::*;
use switchboard::Config;

fn production(require_token: &str) -> Config {
    Config {
        production: true,
        auth_secret: "a-production-secret-of-some-length".into(),
        admin_api_key: Some("admin-key".into()),
        require_token: require_token.parse().unwrap(),
        ..test_config()
    }
}

/// Alice and Bob authenticate with tokens and meet in an OctateCode room.
async fn alice_and_bob(s: &TestServer, room: &str) -> (Client, Client) {
    let mut a = Client::connect(&s.signaling_url()).await;
    let ta = s.app.auth.issue("alice", room).token;
    a.send(json!({"type":"auth","userId":"alice","roomId":room,"data":{"token":ta}}))
        .await;
    a.recv_type("auth").await;
    a.send(json!({"type":"create-room","roomId":room})).await;
    a.recv_type("room-created").await;
    let tb = s.app.auth.issue("bob", room).token;
    // The token may ride in the URL instead of the auth message.
    let mut b = Client::connect(&format!("{}?token={tb}", s.signaling_url())).await;
    b.send(json!({"type":"auth","userId":"bob","roomId":room}))
        .await;
    b.recv_type("auth").await;
    b.send(json!({"type":"join-room","roomId":room})).await;
    b.recv_type("room-joined").await;
    a.recv_type("peer-joined").await;
    (a, b)
}

/// The bystanders still signal, both ways.
async fn still_signaling(a: &mut Client, b: &mut Client, room: &str) {
    a.send(json!({"type":"sdp-offer","roomId":room,"data":{"peer":"bob","offer":{"sdp":"x"}}}))
        .await;
    let got = b.recv_type("sdp-offer").await;
    assert_eq!(got["userId"], "alice");
    b.send(json!({"type":"sdp-answer","roomId":room,"data":{"peer":"alice","answer":{"sdp":"y"}}}))
        .await;
    assert_eq!(a.recv_type("sdp-answer").await["userId"], "bob");
}

#[tokio::test]
async fn in_production_every_websocket_dialect_needs_a_token_for_its_room() {
    let s = TestServer::with(production("auto")).await;
    let room = "6a1f2e3d-4c5b-4a69-8877-665544332211";
    let (mut a, mut b) = alice_and_bob(&s, room).await;
    let http = s.http;
    // Anonymous, every dialect: refused before the upgrade.
    for url in [
        format!("ws://{http}/ws?room={room}"),
        format!("ws://{http}/ws?appID={room}&side=A"),
        format!("ws://{http}/y-webrtc"),
    ] {
        assert_eq!(ws_status(&url).await, 401, "{url}");
    }
    // A token for another room, or a forged one: refused too.
    let other = s.app.auth.issue("mallory", "elsewhere").token;
    assert_eq!(
        ws_status(&format!("ws://{http}/ws?room={room}&token={other}")).await,
        403
    );
    let forged = format!("{}x", &other[..other.len() - 1]);
    assert_eq!(
        ws_status(&format!("ws://{http}/ws?room={room}&token={forged}")).await,
        401
    );
    // OctateCode without a token: refused at auth, learns nothing.
    let mut anon = Client::connect(&s.signaling_url()).await;
    anon.send(json!({"type":"auth","userId":"dave","roomId":room}))
        .await;
    assert_eq!(
        anon.recv_type("error").await["data"]["code"],
        "missing_token"
    );
    anon.send(json!({"type":"join-room","roomId":room})).await;
    assert_eq!(
        anon.recv_type("error").await["data"]["code"],
        "not_authenticated"
    );

    // Dave holds a token for the room: his rendezvous connection joins as dave.
    let td = s.app.auth.issue("dave", room).token;
    let mut dave = Client::connect(&format!("ws://{http}/ws?room={room}&token={td}")).await;
    // His token is his id: he cannot join as alice...
    dave.send(json!({"type":"join","peerId":"alice"})).await;
    assert_eq!(dave.recv_type("error").await["code"], "user_mismatch");
    assert_eq!(dave.recv_close().await.map(|c| c.0), Some(1008));
    let mut dave = Client::connect(&format!("ws://{http}/ws?room={room}&token={td}")).await;
    dave.send(json!({"type":"join"})).await;
    let ready = dave.recv_type("ready").await;
    assert_eq!(ready["selfId"], "dave");
    // (RENDEZVOUS_MAX_PEERS does not apply: the OctateCode host made the room.)
    a.recv_type("peer-joined").await;
    b.recv_type("peer-joined").await;
    // y-webrtc with a token may use the token's room as its topic, and no other.
    let ty = s.app.auth.issue("yuki", "doc-1").token;
    let mut y = Client::connect(&format!("ws://{http}/y-webrtc?token={ty}")).await;
    y.send(json!({"type":"subscribe","topics":["doc-2"]})).await;
    assert_eq!(y.recv_type("error").await["code"], "room_mismatch");
    y.send(json!({"type":"subscribe","topics":["doc-1"]})).await;
    y.send(json!({"type":"ping"})).await;
    y.recv_type("pong").await;
    still_signaling(&mut a, &mut b, room).await;
    s.stop().await;
}

/// With a dialect opened for anonymous clients (`REQUIRE_TOKEN` without it), its anonymous
/// peers still cannot enter a room a token holder made: they are refused and see nothing.
/// Anonymous rooms and token rooms never mix.
#[tokio::test]
async fn an_opened_dialect_cannot_enter_a_token_room_and_token_holders_stay_out_of_anonymous_rooms()
{
    let s = TestServer::with(production("octate")).await;
    let room = "9b8a7c6d-5e4f-4a3b-9c2d-1e0f0a0b0c0d";
    let (mut a, mut b) = alice_and_bob(&s, room).await;
    let http = s.http;
    let mut dave = Client::connect(&format!("ws://{http}/ws?room={room}")).await;
    dave.send(json!({"type":"join","peerId":"dave"})).await;
    assert_eq!(dave.recv_type("error").await["code"], "token_required");
    assert_eq!(dave.recv_close().await.map(|c| c.0), Some(1008));
    let mut nt = Client::connect(&format!("ws://{http}/ws?appID={room}&side=B")).await;
    assert_eq!(nt.recv_close().await, Some((1008, "unauthorized".into())));
    // Nothing of the room reached them, and the room did not hear of them.
    a.expect_silence(std::time::Duration::from_millis(100))
        .await;
    still_signaling(&mut a, &mut b, room).await;

    // An anonymous rendezvous room; a token holder is kept out of it.
    let mut anon = Client::connect(&format!("ws://{http}/ws?room=open-room")).await;
    anon.send(json!({"type":"join","peerId":"x"})).await;
    anon.recv_type("ready").await;
    let tc = s.app.auth.issue("carol", "open-room").token;
    let mut carol = Client::connect(&format!("ws://{http}/ws?room=open-room&token={tc}")).await;
    carol.send(json!({"type":"join"})).await;
    assert_eq!(carol.recv_type("error").await["code"], "room_not_secured");
    anon.expect_silence(std::time::Duration::from_millis(100))
        .await;
    s.stop().await;
}

/// In development tokens are optional, but a room made with one still admits token holders
/// only: a token holder's id and room cannot be taken by anonymous peers of any dialect.
#[tokio::test]
async fn a_token_room_is_closed_to_anonymous_peers_in_development_too() {
    let s = TestServer::start().await;
    let room = "dev-room";
    let (mut a, mut b) = alice_and_bob(&s, room).await;
    let mut dave = Client::connect(&format!("ws://{}/ws?room={room}", s.http)).await;
    dave.send(json!({"type":"join","peerId":"bob"})).await;
    assert_eq!(dave.recv_type("error").await["code"], "token_required");
    let mut oc = Client::connect(&s.signaling_url()).await;
    oc.send(json!({"type":"auth","userId":"eve","roomId":room}))
        .await;
    oc.recv_type("auth").await;
    oc.send(json!({"type":"join-room","roomId":room})).await;
    assert_eq!(
        oc.recv_type("error").await["data"]["code"],
        "token_required"
    );
    still_signaling(&mut a, &mut b, room).await;
    s.stop().await;
}

/// The admin key matches exactly, tokens from the future are refused, and guessing either
/// is throttled per client address — a right answer included, once the budget is spent —
/// while another address and the peers already in a room carry on.
#[tokio::test]
async fn admin_keys_match_exactly_future_tokens_are_refused_and_guessing_is_throttled() {
    let s = TestServer::with(Config {
        auth_failures_per_minute: 5,
        ..production("auto")
    })
    .await;
    let room = "c0ffee00-1111-4222-8333-444455556666";
    let (mut a, mut b) = alice_and_bob(&s, room).await;
    let api = s.http;
    let stats = |key: &'static str| async move {
        http("GET", api, "/api/stats", None, &[("authorization", key)])
            .await
            .0
    };
    assert_eq!(stats("Bearer admin-key").await, 200);
    // (A space at the end of the header line is not the key's: HTTP strips it, RFC 9110
    // section 5.5; inside the value nothing is trimmed.)
    assert_eq!(stats("Bearer  admin-key").await, 403, "two spaces");

    // nbf a day ahead, iat a year ahead: refused; a few seconds of skew: accepted.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |iat: u64, nbf: Option<u64>| {
        let claims = switchboard::auth::Claims {
            sub: "zed".into(),
            room: room.into(),
            iat,
            exp: now + 3600,
            nbf,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"a-production-secret-of-some-length"),
        )
        .unwrap()
    };
    for (iat, nbf) in [(now, Some(now + 86_400)), (now + 365 * 86_400, None)] {
        let url = format!("ws://{api}/ws?room={room}&token={}", sign(iat, nbf));
        assert_eq!(ws_status(&url).await, 401);
    }
    let skewed = format!(
        "ws://{api}/ws?room={room}&token={}",
        sign(now + 5, Some(now + 5))
    );
    Client::connect(&skewed).await.close().await;

    // Four more wrong keys (five with the one above) spend the budget...
    for _ in 0..4 {
        assert_eq!(stats("Bearer guess").await, 403);
    }
    // ...then every attempt from this address is refused, the right key and tokens too.
    assert_eq!(stats("Bearer admin-key").await, 429);
    let tz = s.app.auth.issue("zed", room).token;
    assert_eq!(
        ws_status(&format!("ws://{api}/ws?room={room}&token={tz}")).await,
        429
    );
    // The validate route says so too (it answered 401 "invalid" for a valid token).
    let (status, body) = http(
        "POST",
        api,
        "/api/auth/validate",
        Some(&json!({"token": tz, "userId": "zed", "roomId": room})),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("auth_throttled"))
    );
    // Another address is not affected.
    let other = "127.0.0.2".parse().unwrap();
    let (status, _) = http_from(
        other,
        "GET",
        api,
        "/api/stats",
        None,
        &[("authorization", "Bearer admin-key")],
    )
    .await;
    assert_eq!(status, 200);
    still_signaling(&mut a, &mut b, room).await;
    s.stop().await;
}

/// In production every dialect's first step has a deadline (AUTH_TIMEOUT): nt and y-webrtc
/// sockets that never send anything were kept for ever. An nt socket may instead be paired
/// in time; one that is, or that speaks, stays.
#[tokio::test]
async fn in_production_a_silent_connection_of_any_dialect_is_closed_at_the_deadline() {
    let s = TestServer::with(Config {
        auth_timeout: switchboard::config::Span::millis(500),
        ..production("auto")
    })
    .await;
    let http = s.http;
    let app_id = "3b1f2e3d-4c5b-4a69-8877-665544332299";
    let t = |user: &str, room: &str| s.app.auth.issue(user, room).token;
    // nt alone and silent: closed.
    let mut lone = Client::connect(&format!(
        "ws://{http}/ws?appID={app_id}&side=A&token={}",
        t("a", app_id)
    ))
    .await;
    assert_eq!(
        lone.recv_close().await,
        Some((1008, "no message in time".into()))
    );
    // nt paired in time: both stay, silent or not.
    let other = "4c2f2e3d-4c5b-4a69-8877-665544332299";
    let mut a = Client::connect(&format!(
        "ws://{http}/ws?appID={other}&side=A&token={}",
        t("a", other)
    ))
    .await;
    let mut b = Client::connect(&format!(
        "ws://{http}/ws?appID={other}&side=B&token={}",
        t("b", other)
    ))
    .await;
    assert_eq!(a.recv_type("room_full").await["type"], "room_full");
    b.recv_type("room_full").await;
    // y-webrtc silent: closed; y-webrtc that subscribes: stays.
    let mut quiet = Client::connect(&format!("ws://{http}/y-webrtc?token={}", t("y", "doc"))).await;
    assert_eq!(
        quiet.recv_close().await,
        Some((1008, "no message in time".into()))
    );
    let mut talker =
        Client::connect(&format!("ws://{http}/y-webrtc?token={}", t("z", "doc"))).await;
    talker
        .send(json!({"type":"subscribe","topics":["doc"]}))
        .await;
    // Socket.io connected with a token but never joining: told, then disconnected.
    let mut sio =
        support::process::SioClient::connect(s.socketio, Some(json!({"token": t("s", "doc")})))
            .await;
    let err = sio.event_named("error").await;
    assert_eq!(err[0]["message"], "No room joined in time");
    // Well past the deadline, the ones that spoke or paired are still there.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    a.send_text(r#"{"type":"offer","sdp":"x"}"#).await;
    assert_eq!(b.recv_text().await, r#"{"type":"offer","sdp":"x"}"#);
    talker.send(json!({"type":"ping"})).await;
    talker.recv_type("pong").await;
    s.stop().await;
}

/// An `Origin` header that is not readable text (a non-ASCII byte) is refused, not taken
/// for absent.
#[tokio::test]
async fn a_malformed_origin_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await;
    let mut tcp = tcp_from(LOCAL, s.signaling).await;
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://ev"
        .to_vec();
    req.extend_from_slice(&[0xff]);
    req.extend_from_slice(b"l.example\r\n\r\n");
    tcp.write_all(&req).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 403");
    s.stop().await;
}

/// Finding 5: only OctateCode senders were told about a signal that could not be delivered.
/// Rendezvous and y-webrtc senders get an `error` frame naming `undelivered` too, Socket.io
/// senders an `error` event, and nt senders the dialect's one error frame.
#[tokio::test]
async fn every_dialect_tells_the_sender_of_an_undelivered_signal() {
    let s = TestServer::with(Config {
        max_messages_per_second: 0,
        ..test_config()
    })
    .await;
    let http = s.http;
    let pad = "x".repeat(60_000);

    let mut a = Client::connect(&format!("ws://{http}/ws?room=u1")).await;
    a.send(json!({"type":"join","peerId":"a"})).await;
    a.recv_type("ready").await;
    let mut b = Client::connect(&format!("ws://{http}/ws?room=u1")).await;
    b.send(json!({"type":"join","peerId":"b"})).await;
    b.recv_type("ready").await;
    a.recv_type("peer-joined").await;
    // b stops reading.
    let frame = json!({"type":"signal","to":"b","data":{"pad":pad}}).to_string();
    let mut sent = 0;
    let told = loop {
        a.send_text(&frame).await;
        sent += 1;
        if let Ok(v) = tokio::time::timeout(std::time::Duration::from_millis(1), a.recv()).await
            && v["type"] == "error"
        {
            break v;
        }
        assert!(sent < 600, "the rendezvous sender was never told");
    };
    assert_eq!(told["code"], "undelivered", "{told}");
    drop(b);

    let mut y1 = Client::connect(&format!("ws://{http}/y-webrtc")).await;
    y1.send(json!({"type":"subscribe","topics":["t"]})).await;
    let mut y2 = Client::connect(&format!("ws://{http}/y-webrtc")).await;
    y2.send(json!({"type":"subscribe","topics":["t"]})).await;
    y2.send(json!({"type":"ping"})).await;
    y2.recv_type("pong").await;
    // y2 stops reading.
    let frame = json!({"type":"publish","topic":"t","data":{"pad":pad}}).to_string();
    let mut sent = 0;
    let told = loop {
        y1.send_text(&frame).await;
        sent += 1;
        if let Ok(v) = tokio::time::timeout(std::time::Duration::from_millis(1), y1.recv()).await
            && v["type"] == "error"
        {
            break v;
        }
        assert!(sent < 600, "the y-webrtc sender was never told");
    };
    assert_eq!(told["code"], "undelivered", "{told}");
    drop(y2);

    let (_, body) = support::http("POST", s.socketio, "/api/rooms", None, &[]).await;
    let room = body["roomId"].as_str().unwrap().to_owned();
    let mut s1 = support::process::SioClient::connect(s.socketio, None).await;
    s1.emit("join-room", &[json!(room), json!("s1")]).await;
    s1.event_named("room-participants").await;
    let mut s2 = support::process::SioClient::connect(s.socketio, None).await;
    s2.emit("join-room", &[json!(room), json!("s2")]).await;
    s2.event_named("room-participants").await;
    // s2 stops reading.
    let mut sent = 0;
    let told = loop {
        let candidate = json!({"roomId": room, "targetUserId": "s2", "candidate": {"pad": pad}});
        s1.emit("ice-candidate", &[candidate]).await;
        sent += 1;
        if let Some((name, args)) = s1.try_event(std::time::Duration::from_millis(1)).await
            && name == "error"
        {
            break args;
        }
        assert!(sent < 600, "the Socket.io sender was never told");
    };
    let message = told[0]["message"].as_str().unwrap();
    assert!(
        message.contains("not delivered") && message.contains("s2"),
        "{message}"
    );
    drop(s2);
    s.stop().await;
}

/// `/api/info` shows every effective limit and deadline to the admin, and to no one else
/// in production.
#[tokio::test]
async fn the_effective_limits_are_shown_to_the_admin_only() {
    let s = TestServer::with(production("auto")).await;
    let (status, info) = http("GET", s.http, "/api/info", None, &[]).await;
    assert_eq!(status, 200);
    assert!(info["limits"].is_null(), "{info}");
    let (_, info) = http(
        "GET",
        s.http,
        "/api/info",
        None,
        &[("authorization", "Bearer admin-key")],
    )
    .await;
    let limits = &info["limits"];
    assert_eq!(limits["MESSAGE_TIMEOUT"], "10s");
    assert_eq!(limits["MAX_CONNECTIONS_PER_IP"], "1000");
    assert_eq!(limits["AUTH_SECRET"], "(set)");
    assert!(
        limits["MAX_CONNECTIONS"]
            .as_str()
            .unwrap()
            .starts_with("auto ("),
        "{limits}"
    );
    s.stop().await;
}

/// Issue 22: a user whose access is withdrawn loses every open connection. The admin route
/// closes each connection that is the user, in any room and any dialect (1008 `access
/// revoked`); its rooms hear it left, everyone else carries on. Without the admin key it is
/// refused.
#[tokio::test]
async fn revoking_a_user_closes_every_connection_of_theirs_and_nobody_else_s() {
    let s = TestServer::with(production("none")).await;
    let (mut alice, mut bob) = alice_and_bob(&s, "rv").await;
    // Alice also holds a rendezvous seat elsewhere.
    let token = s.app.auth.issue("alice", "rv-code").token;
    let mut alice_too =
        Client::connect(&format!("ws://{}/ws?room=rv-code&token={token}", s.http)).await;
    alice_too
        .send(json!({"type":"join","peerId":"alice"}))
        .await;
    alice_too.recv_type("ready").await;

    let (status, _) = http("POST", s.http, "/api/users/alice/revoke", None, &[]).await;
    assert_eq!(status, 401, "the admin key is required");
    let key = [("authorization", "Bearer admin-key")];
    let (status, body) = http("POST", s.http, "/api/users/alice/revoke", None, &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["closedConnections"], 2, "{body}");
    assert_eq!(
        alice.recv_close().await,
        Some((1008, "access revoked".into()))
    );
    assert_eq!(
        alice_too.recv_close().await,
        Some((1008, "access revoked".into()))
    );
    assert_eq!(bob.recv_type("peer-left").await["userId"], "alice");
    // Bob is untouched: he still talks to the server.
    bob.send(json!({"type":"heartbeat","roomId":"rv","userId":"bob"}))
        .await;
    bob.recv_type("heartbeat").await;
    s.stop().await;
}
