//! Cluster mode with real components: Debian's `redis-server` on a free loopback port, two or
//! three `switchboard` processes (this package's binary) sharing it, and real WebSocket
//! clients of every dialect on different nodes: shared rooms, order across nodes, a stalled
//! Redis, subscriptions, atomic joins and secured rooms. Failures (kill -9, Redis restarts,
//! partitions, SIGTERM) are in `cluster_failover.rs`; what a node does with a signal it
//! cannot deliver, mailboxes and join gates in `cluster_delivery.rs`. Socket.io across nodes
//! is in the Node test (the real socket.io-client); a browser pair across nodes is in the
//! e2e suite.

mod cluster_support;
mod support;

use std::time::Duration;

use cluster_support::peers::{next_of, next_of_any, octate, peer_ids};
use cluster_support::{Node, Redis};
use serde_json::{Value, json};
use support::{Client, http};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_different_nodes_share_rooms_in_every_dialect() {
    let redis = Redis::start().await;
    let cap = [("MAX_PEERS_PER_ROOM", "3")];
    let n1 = Node::start("n1", &redis.url(), &cap).await;
    let n2 = Node::start("n2", &redis.url(), &cap).await;
    let n3 = Node::start("n3", &redis.url(), &cap).await;

    // OctateCode: alice creates on n1, bob joins on n2 and sees her in his room-joined.
    let mut alice = octate(&n1, "r1", "alice", true).await;
    let mut bob = Client::connect(&n2.signaling_url()).await;
    bob.send(json!({"type":"auth","userId":"bob","roomId":"r1"}))
        .await;
    bob.recv_type("auth").await;
    bob.send(json!({"type":"join-room","roomId":"r1","data":{"userName":"Bob"}}))
        .await;
    let joined = bob.recv_type("room-joined").await;
    assert_eq!(peer_ids(&joined["data"]["room"]), ["alice", "bob"]);
    assert_eq!(joined["data"]["room"]["hostId"], "alice");
    let host = &joined["data"]["room"]["peers"][0];
    assert_eq!(
        (host["userId"].clone(), host["isHost"].clone()),
        (json!("alice"), json!(true))
    );
    let pj = alice.recv_type("peer-joined").await;
    assert_eq!(pj["userId"], "bob");
    assert_eq!(pj["data"]["peer"]["userName"], "Bob");

    // Targeted both ways, byte for byte, and room-wide.
    alice
        .send(json!({"type":"sdp-offer","roomId":"r1","data":{"peer":"bob","offer":{"type":"offer","sdp":"v=0 a"}}}))
        .await;
    let got = bob.recv_type("sdp-offer").await;
    assert_eq!(got["userId"], "alice");
    assert_eq!(got["data"]["offer"]["sdp"], "v=0 a");
    bob.send(json!({"type":"sdp-answer","roomId":"r1","targetUserId":"alice","data":{"answer":{"type":"answer","sdp":"v=0 b"}}}))
        .await;
    assert_eq!(
        alice.recv_type("sdp-answer").await["data"]["answer"]["sdp"],
        "v=0 b"
    );
    alice
        .send(json!({"type":"presence","roomId":"r1","data":{"status":"here"}}))
        .await;
    assert_eq!(bob.recv_type("presence").await["data"]["status"], "here");

    // A third peer through the third node; listings and detail are cluster-wide.
    let mut carol = octate(&n3, "r1", "carol", false).await;
    assert_eq!(alice.recv_type("peer-joined").await["userId"], "carol");
    assert_eq!(bob.recv_type("peer-joined").await["userId"], "carol");
    let (status, detail) = http("GET", n2.http, "/api/rooms/r1", None, &[]).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(peer_ids(&detail), ["alice", "bob", "carol"]);
    let (_, list) = http("GET", n3.http, "/api/rooms", None, &[]).await;
    assert!(
        list["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["roomId"] == "r1"),
        "{list}"
    );
    let (_, stats) = http("GET", n1.http, "/api/stats", None, &[]).await;
    assert_eq!(stats["server"]["backplane"], "redis");
    assert!(
        stats["server"]["totalConnections"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    let (_, info) = http("GET", n1.http, "/api/info", None, &[]).await;
    assert_eq!(info["node"], "n1");
    let (_, metrics) = support::http_raw("GET", n2.http, "/metrics", None, &[]).await;
    assert!(
        metrics.contains("switchboard_node{node=\"n2\",backplane=\"redis\"} 1"),
        "{metrics}"
    );

    // Capacity (3) and peer-id uniqueness hold cluster-wide.
    let mut dave = Client::connect(&n2.signaling_url()).await;
    dave.send(json!({"type":"auth","userId":"dave","roomId":"r1"}))
        .await;
    dave.recv_type("auth").await;
    dave.send(json!({"type":"join-room","roomId":"r1"})).await;
    assert_eq!(dave.recv_type("error").await["data"]["code"], "room_full");
    let mut alice2 = Client::connect(&n3.signaling_url()).await;
    alice2
        .send(json!({"type":"auth","userId":"alice","roomId":"r2"}))
        .await;
    alice2.recv_type("auth").await;
    alice2
        .send(json!({"type":"create-room","roomId":"r2"}))
        .await;
    alice2.recv_type("room-created").await;
    let mut alice3 = Client::connect(&n1.signaling_url()).await;
    alice3
        .send(json!({"type":"auth","userId":"alice","roomId":"r2"}))
        .await;
    alice3.recv_type("auth").await;
    alice3.send(json!({"type":"join-room","roomId":"r2"})).await;
    assert_eq!(
        alice3.recv_type("error").await["data"]["code"],
        "peer_id_taken"
    );

    // Leaving is heard on the other nodes.
    carol.send(json!({"type":"leave-room","roomId":"r1"})).await;
    assert_eq!(alice.recv_type("peer-left").await["userId"], "carol");
    assert_eq!(bob.recv_type("peer-left").await["userId"], "carol");

    // DELETE through another node closes the room for members on every node.
    let (status, _) = http("DELETE", n3.http, "/api/rooms/r1", None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        next_of(&mut alice, "room-closed").await["data"]["reason"],
        "deleted"
    );
    assert_eq!(
        next_of(&mut bob, "room-closed").await["data"]["reason"],
        "deleted"
    );
    let (status, _) = http("GET", n1.http, "/api/rooms/r1", None, &[]).await;
    assert_eq!(status, 404);

    // Rendezvous across nodes, and OctateCode ⇄ rendezvous across nodes.
    let mut ra = Client::connect(&format!("ws://{}/ws?room=code1", n1.http)).await;
    ra.send(json!({"type":"join","peerId":"ra"})).await;
    assert_eq!(ra.recv_type("ready").await["peers"], json!([]));
    let mut rb = Client::connect(&format!("ws://{}/ws?room=code1", n2.http)).await;
    rb.send(json!({"type":"join","peerId":"rb"})).await;
    assert_eq!(
        rb.recv_type("ready").await["peers"],
        json!([{"peerId":"ra"}])
    );
    assert_eq!(ra.recv_type("peer-joined").await["peerId"], "rb");
    rb.send(json!({"type":"signal","to":"ra","data":{"type":"offer","sdp":"x"}}))
        .await;
    let s = ra.recv_type("signal").await;
    assert_eq!(
        (s["from"].clone(), s["data"]["sdp"].clone()),
        (json!("rb"), json!("x"))
    );
    // Two is the rendezvous room's capacity, wherever the third comes from.
    let mut rc = Client::connect(&format!("ws://{}/ws?room=code1", n3.http)).await;
    rc.send(json!({"type":"join","peerId":"rc"})).await;
    assert_eq!(rc.recv_type("error").await["code"], "room_full");

    // nt across nodes: sides are unique cluster-wide; signals and the mailbox cross.
    let app = "5b0e8f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b";
    let mut side_a = Client::connect(&format!("ws://{}/ws?appID={app}&side=A", n1.http)).await;
    let mut side_b = Client::connect(&format!("ws://{}/ws?appID={app}&side=B", n2.http)).await;
    assert_eq!(side_b.recv_text().await, "{\"type\":\"room_full\"}\n");
    assert_eq!(side_a.recv_text().await, "{\"type\":\"room_full\"}\n");
    let mut busy = Client::connect(&format!("ws://{}/ws?appID={app}&side=A", n3.http)).await;
    assert_eq!(busy.recv_close().await, Some((1008, "side A busy".into())));
    side_a.send_text(r#"{"type":"offer","sdp":"v=0 nt"}"#).await;
    assert_eq!(
        side_b.recv_text().await,
        r#"{"type":"offer","sdp":"v=0 nt"}"#
    );
    side_a
        .send(json!({"type":"send","to":"B","payload":{"n":1}}))
        .await;
    let item: Value = serde_json::from_str(side_b.recv_text().await.trim()).unwrap();
    assert_eq!(item, json!({"payload":{"n":1},"seq":0,"type":"send"}));
    side_b.send(json!({"type":"hello","deliveredUpTo":0})).await;
    let again: Value = serde_json::from_str(side_b.recv_text().await.trim()).unwrap();
    assert_eq!(again["seq"], 0, "replayed from Redis");

    // y-webrtc across nodes: a publish reaches the other node's subscriber with the
    // cluster-wide audience.
    let mut y1 = Client::connect(&format!("ws://{}/y-webrtc", n1.http)).await;
    let mut y2 = Client::connect(&format!("ws://{}/y-webrtc", n3.http)).await;
    for y in [&mut y1, &mut y2] {
        y.send(json!({"type":"subscribe","topics":["doc"]})).await;
        y.send(json!({"type":"ping"})).await;
        y.recv_type("pong").await;
    }
    y1.send(json!({"type":"publish","topic":"doc","data":{"hello":1}}))
        .await;
    let p = y2.recv_type("publish").await;
    assert_eq!(
        (p["data"]["hello"].clone(), p["clients"].clone()),
        (json!(1), json!(2))
    );

    // Rendezvous codes: issued on one node, redeemed once on another.
    let (status, issued) = http("POST", n1.http, "/rendezvous/code", Some(&json!({})), &[]).await;
    assert_eq!(status, 200, "{issued}");
    let code = issued["code"].as_str().unwrap().to_owned();
    let body = json!({"code": code});
    let (status, redeemed) = http("POST", n2.http, "/rendezvous/redeem", Some(&body), &[]).await;
    assert_eq!(status, 200, "{redeemed}");
    assert_eq!(redeemed["appID"], issued["appID"]);
    let (status, _) = http("POST", n3.http, "/rendezvous/redeem", Some(&body), &[]).await;
    assert_eq!(status, 410);
}

/// The sequence numbers in the next `n` signal frames `c` receives.
async fn seqs(c: &mut Client, n: usize) -> Vec<usize> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let t = c.recv_text().await;
        assert!(!t.contains("\"error\""), "error frame: {t}");
        if let Some(at) = t.find("seq ") {
            let d: String = t[at + 4..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            got.push(d.parse().unwrap());
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_senders_signals_arrive_in_order_across_nodes() {
    const N: usize = 2000;
    let redis = Redis::start().await;
    let env = [("OUTBOX_CAPACITY", "8192")];
    let n1 = Node::start("o1", &redis.url(), &env).await;
    let n2 = Node::start("o2", &redis.url(), &env).await;
    let mut alice = octate(&n1, "ord", "alice", true).await;
    let mut bob = octate(&n2, "ord", "bob", false).await;
    alice.recv_type("peer-joined").await;
    // Targeted and room-wide signals interleaved: two channels, one order.
    let recv = tokio::spawn(async move { (seqs(&mut bob, N).await, bob) });
    for n in 0..N {
        let frame = if n % 3 == 0 {
            json!({"type":"presence","roomId":"ord","data":{"s":format!("seq {n}")}})
        } else {
            json!({"type":"ice-candidate","roomId":"ord","data":{"peer":"bob","candidate":{"candidate":format!("seq {n}")}}})
        };
        alice.send(frame).await;
    }
    let (got, _bob) = recv.await.unwrap();
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "octate → octate across nodes"
    );

    // Rendezvous → nt across nodes (cross-dialect, targeted by side).
    let app = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
    let mut side_a = Client::connect(&format!("ws://{}/ws?appID={app}&side=A", n1.http)).await;
    let mut rv = Client::connect(&format!("ws://{}/ws?room={app}", n2.http)).await;
    rv.send(json!({"type":"join","peerId":"B"})).await;
    rv.recv_type("ready").await;
    assert!(side_a.recv_text().await.contains("room_full"));
    let recv = tokio::spawn(async move { (seqs(&mut side_a, N).await, side_a) });
    for n in 0..N {
        rv.send(json!({"type":"signal","to":"A","data":{"candidate":format!("seq {n}")}}))
            .await;
    }
    let (got, _a) = recv.await.unwrap();
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "rendezvous → nt across nodes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_bounds_what_a_node_queues_and_every_signal_still_arrives_in_order() {
    // ~96 MB of signals against a frozen Redis: a node queues at most 8 MiB of them without
    // anyone waiting; past that, the sender waits for its own publish and stops being read.
    // (Measured on the 2-core test machine: the node grows 8 MB; with no bound, 25-27 MB in
    // the same 600 ms, and more the longer the stall.)
    const N: usize = 1600;
    let redis = Redis::start().await;
    let env = [
        ("OUTBOX_CAPACITY", "8192"),
        ("OUTBOX_MAX_BYTES", "268435456"),
    ];
    let n1 = Node::start("p1", &redis.url(), &env).await;
    let n2 = Node::start("p2", &redis.url(), &env).await;
    let mut alice = octate(&n1, "stall", "alice", true).await;
    let mut bob = octate(&n2, "stall", "bob", false).await;
    alice.recv_type("peer-joined").await;
    let recv = tokio::spawn(async move { (seqs(&mut bob, N).await, bob) });
    let before = n1.rss();
    redis.pause();
    let pad = "x".repeat(60_000);
    let send = tokio::spawn(async move {
        for n in 0..N {
            alice.send(json!({"type":"ice-candidate","roomId":"stall","data":{"peer":"bob","candidate":{"candidate":format!("seq {n}"),"pad":pad}}}))
                .await;
        }
        alice
    });
    // The stall itself: well inside the node's 1 s Redis response timeout, so nothing fails.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let grown = n1.rss().saturating_sub(before);
    redis.resume();
    let (got, _bob) = recv.await.unwrap();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every signal, in order");
    let mut alice = send.await.unwrap();
    alice.expect_silence(Duration::from_millis(300)).await;
    eprintln!(
        "a node's growth during a 600 ms Redis stall: {} MB",
        grown >> 20
    );
    assert!(
        grown < 20 << 20,
        "the node grew by {} MB while Redis was frozen",
        grown >> 20
    );
}

/// How many nodes are subscribed to `room`'s channel (`redis-cli PUBSUB NUMSUB`).
async fn room_subscribers(redis: &Redis, room: &str) -> usize {
    let out = tokio::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "PUBSUB", "NUMSUB"])
        .arg(format!("sb:{{{room}}}:ev"))
        .output()
        .await
        .expect("redis-cli (Debian's redis-tools, installed with redis-server)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_back_within_moments_reuses_its_node_s_subscription_which_ends_later() {
    let redis = Redis::start().await;
    let n1 = Node::start("l1", &redis.url(), &[]).await;
    let n2 = Node::start("l2", &redis.url(), &[]).await;
    let mut alice = octate(&n1, "lg", "alice", true).await;
    let bob = octate(&n2, "lg", "bob", false).await;
    assert_eq!(alice.recv_type("peer-joined").await["userId"], "bob");
    assert_eq!(room_subscribers(&redis, "lg").await, 2);
    // Bob reloads: gone, and back through the same node at once (its channel still
    // subscribed there, no SUBSCRIBE needed). Everything flows both ways as before.
    bob.close().await;
    assert_eq!(next_of(&mut alice, "peer-left").await["userId"], "bob");
    assert_eq!(
        room_subscribers(&redis, "lg").await,
        2,
        "still subscribed on bob's node"
    );
    let mut bob = octate(&n2, "lg", "bob", false).await;
    assert_eq!(next_of(&mut alice, "peer-joined").await["userId"], "bob");
    alice
        .send(
            json!({"type":"sdp-offer","roomId":"lg","data":{"peer":"bob","offer":{"sdp":"again"}}}),
        )
        .await;
    assert_eq!(
        next_of(&mut bob, "sdp-offer").await["data"]["offer"]["sdp"],
        "again"
    );
    bob.send(json!({"type":"presence","roomId":"lg","data":{"s":"back"}}))
        .await;
    assert_eq!(next_of(&mut alice, "presence").await["data"]["s"], "back");
    // Bob leaves for good: the node lets the channel go after a while.
    bob.close().await;
    assert_eq!(next_of(&mut alice, "peer-left").await["userId"], "bob");
    let left = Instant::now();
    while room_subscribers(&redis, "lg").await != 1 {
        assert!(
            left.elapsed() < Duration::from_secs(6),
            "the room's channel stayed subscribed on the node nobody is in"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then a join there subscribes anew, and events reach it.
    let mut carol = octate(&n2, "lg", "carol", false).await;
    assert_eq!(next_of(&mut alice, "peer-joined").await["userId"], "carol");
    alice
        .send(json!({"type":"presence","roomId":"lg","data":{"s":"hi carol"}}))
        .await;
    assert_eq!(
        next_of(&mut carol, "presence").await["data"]["s"],
        "hi carol"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_on_three_nodes_respect_capacity_and_identity_atomically() {
    let redis = Redis::start().await;
    let env = [("MAX_PEERS_PER_ROOM", "3")];
    let nodes = [
        Node::start("c1", &redis.url(), &env).await,
        Node::start("c2", &redis.url(), &env).await,
        Node::start("c3", &redis.url(), &env).await,
    ];
    let _host = octate(&nodes[0], "cap", "host", true).await;
    // Twelve joiners, four per node, all at once: exactly two get in.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let url = nodes[i % 3].signaling_url();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            let user = format!("u{i}");
            c.send(json!({"type":"auth","userId":user,"roomId":"cap"}))
                .await;
            c.recv_type("auth").await;
            c.send(json!({"type":"join-room","roomId":"cap"})).await;
            let v = next_of_any(&mut c, &["room-joined", "error"]).await;
            (v, c)
        }));
    }
    let mut joined = 0;
    let mut full = 0;
    let mut keep = Vec::new();
    for t in tasks {
        let (v, c) = t.await.unwrap();
        match v["type"].as_str() {
            Some("room-joined") => joined += 1,
            _ if v["data"]["code"] == "room_full" => full += 1,
            _ => panic!("unexpected: {v}"),
        }
        keep.push(c);
    }
    assert_eq!((joined, full), (2, 10), "capacity 3 with the host");
    // The same user id from two nodes at once: one wins.
    let mut tasks = Vec::new();
    for n in &nodes[1..] {
        let url = n.signaling_url();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            c.send(json!({"type":"auth","userId":"same","roomId":"ids"}))
                .await;
            c.recv_type("auth").await;
            c.send(json!({"type":"create-room","roomId":"ids"})).await;
            let first = c.recv().await;
            if first["type"] == "error" && first["data"]["code"] == "room_exists" {
                c.send(json!({"type":"join-room","roomId":"ids"})).await;
                return (c.recv().await, c);
            }
            (first, c)
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        let (v, c) = t.await.unwrap();
        outcomes.push(v);
        keep.push(c);
    }
    let winners = outcomes
        .iter()
        .filter(|v| v["type"] == "room-created" || v["type"] == "room-joined")
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|v| v["data"]["code"] == "peer_id_taken"),
        "{outcomes:?}"
    );
}

/// A room's access follows its creator across nodes: a room a token holder made on one node
/// admits token holders only on every node, and in production a token holder cannot enter
/// an anonymous room through another node either (issue 14, in cluster mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_room_made_on_one_node_is_closed_to_anonymous_peers_on_another() {
    let redis = Redis::start().await;
    let env = [
        ("NODE_ENV", "production"),
        ("AUTH_SECRET", "a-production-secret-of-some-length"),
        ("ADMIN_API_KEY", "admin-key"),
        ("REQUIRE_TOKEN", "octate"),
    ];
    let n1 = Node::start("n1", &redis.url(), &env).await;
    let n2 = Node::start("n2", &redis.url(), &env).await;
    let token = |node: &Node, user: &str, room: &str| {
        let (api, user, room) = (node.http, user.to_owned(), room.to_owned());
        async move {
            let (status, body) = http(
                "POST",
                api,
                "/api/auth/token",
                Some(&json!({"userId": user, "roomId": room})),
                &[("authorization", "Bearer admin-key")],
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let room = "5e1f2e3d-4c5b-4a69-8877-665544332211";
    let ta = token(&n1, "alice", room).await;
    let mut alice = Client::connect(&n1.signaling_url()).await;
    alice
        .send(json!({"type":"auth","userId":"alice","roomId":room,"data":{"token":ta}}))
        .await;
    alice.recv_type("auth").await;
    alice
        .send(json!({"type":"create-room","roomId":room}))
        .await;
    alice.recv_type("room-created").await;

    // Anonymous rendezvous peer on the other node: refused, and alice hears nothing.
    let mut dave = Client::connect(&format!("ws://{}/ws?room={room}", n2.http)).await;
    dave.send(json!({"type":"join","peerId":"dave"})).await;
    assert_eq!(dave.recv_type("error").await["code"], "token_required");
    alice.expect_silence(Duration::from_millis(200)).await;
    // With a token for the room, on the other node: in, as the token's user.
    let td = token(&n2, "dave", room).await;
    let mut dave = Client::connect(&format!("ws://{}/ws?room={room}&token={td}", n2.http)).await;
    dave.send(json!({"type":"join"})).await;
    assert_eq!(dave.recv_type("ready").await["selfId"], "dave");
    assert_eq!(alice.recv_type("peer-joined").await["userId"], "dave");

    // An anonymous rendezvous room on n1; a token holder on n2 is kept out of it.
    let mut anon = Client::connect(&format!("ws://{}/ws?room=open-room", n1.http)).await;
    anon.send(json!({"type":"join","peerId":"x"})).await;
    anon.recv_type("ready").await;
    let tc = token(&n2, "carol", "open-room").await;
    let mut carol =
        Client::connect(&format!("ws://{}/ws?room=open-room&token={tc}", n2.http)).await;
    carol.send(json!({"type":"join"})).await;
    assert_eq!(carol.recv_type("error").await["code"], "room_not_secured");
    anon.expect_silence(Duration::from_millis(200)).await;
}
