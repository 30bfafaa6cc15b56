//! Cluster failures with real processes: kill -9 of a node, Redis stopped and restarted
//! empty, a partition longer than the lease (through a loopback TCP proxy the test cuts),
//! SIGTERM.

mod cluster_support;
mod support;

use std::time::Duration;

use cluster_support::peers::{ClientExt, next_of, octate, peer_ids};
use cluster_support::{Node, Proxy, Redis, http_quick};
use serde_json::{Value, json};
use support::{Client, http};
use tokio::time::Instant;

/// Waits until `c` has seen `peer-left` for each of `ids` (any order); returns when.
async fn wait_left(c: &mut Client, ids: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    let mut missing: Vec<&str> = ids.to_vec();
    while !missing.is_empty() {
        let left = within
            .checked_sub(start.elapsed())
            .expect("peer-left in time");
        let v: Value = tokio::time::timeout(left, c.recv())
            .await
            .unwrap_or_else(|_| panic!("peer-left for {missing:?} within {within:?}"));
        if v["type"] == "peer-left" {
            missing.retain(|m| v["userId"] != *m);
        }
    }
    start.elapsed()
}

/// Sends `to` (a peer of a killed node) an ICE candidate every 200 ms until the sender gets
/// an error (Redis may take a moment to notice the dead subscriber); returns the error and
/// any `peer-left` seen meanwhile.
async fn probe_dead_peer(c: &mut Client, room: &str, to: &str) -> (Value, Vec<String>) {
    let mut left = Vec::new();
    for n in 0..10 {
        c.send(
            json!({"type":"ice-candidate","roomId":room,"data":{"peer":to,"candidate":{"n":n}}}),
        )
        .await;
        let until = Instant::now() + Duration::from_millis(200);
        while let Some(v) = c
            .recv_timeout_or_none(until.saturating_duration_since(Instant::now()))
            .await
        {
            match v["type"].as_str() {
                Some("error") => return (v, left),
                Some("peer-left") => left.push(v["userId"].to_string()),
                _ => {}
            }
        }
    }
    panic!("no error for signals to {to} on a killed node within 2 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_peers_leave_every_room_within_five_seconds() {
    let redis = Redis::start().await;
    // The default lease, as deployed.
    let lease = [("CLUSTER_LEASE", "3s")];
    let n1 = Node::start("k1", &redis.url(), &lease).await;
    let n2 = Node::start("k2", &redis.url(), &lease).await;
    let mut n3 = Node::start("k3", &redis.url(), &lease).await;
    let mut a = octate(&n1, "kr", "a", true).await;
    let mut b = octate(&n2, "kr", "b", false).await;
    let _c = octate(&n3, "kr", "c", false).await;
    let _d = octate(&n3, "kr", "d", false).await;
    for who in ["b", "c", "d"] {
        assert_eq!(a.recv_type("peer-joined").await["userId"], who);
    }
    let started = Instant::now();
    n3.kill9().await;
    // Until the dead node's lease runs out its peers are still in the room, but a signal to
    // one of them reaches no subscriber: the sender hears so, after its relay was answered.
    let (refused, left_early) = probe_dead_peer(&mut a, "kr", "c").await;
    assert_eq!(refused["data"]["code"], "unavailable", "{refused}");
    assert!(
        refused
            .to_string()
            .contains("the node holding c is unreachable"),
        "{refused}"
    );
    assert!(
        left_early.is_empty(),
        "reaped before the probe: {left_early:?}"
    );
    // A room-wide signal reaches fewer nodes than hold members: an error too.
    a.send(json!({"type":"presence","roomId":"kr","data":{"s":"here"}}))
        .await;
    let e = next_of(&mut a, "error").await;
    assert_eq!(e["data"]["code"], "unavailable", "{e}");
    assert_eq!(
        next_of(&mut b, "presence").await["data"]["s"],
        "here",
        "the live node's peers still get it"
    );
    let ta = wait_left(&mut a, &["c", "d"], Duration::from_secs(5)).await;
    let tb = wait_left(&mut b, &["c", "d"], Duration::from_secs(5))
        .await
        .max(ta);
    eprintln!("kill -9: peer-left after {:?}", started.elapsed().max(tb));
    // Nothing of them remains in the listings.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, room) = http("GET", n2.http, "/api/rooms/kr", None, &[]).await;
        if peer_ids(&room) == ["a", "b"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead node's peers still listed: {room}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The survivors still talk across nodes.
    a.send(json!({"type":"sdp-offer","roomId":"kr","data":{"peer":"b","offer":{"sdp":"after"}}}))
        .await;
    assert_eq!(
        b.recv_type("sdp-offer").await["data"]["offer"]["sdp"],
        "after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_local_rooms_refuses_cross_node_signals_and_converges() {
    let mut redis = Redis::start().await;
    let n1 = Node::start("s1", &redis.url(), &[]).await;
    let n2 = Node::start("s2", &redis.url(), &[]).await;
    let mut a1 = octate(&n1, "rr", "a1", true).await;
    let mut a2 = octate(&n1, "rr", "a2", false).await;
    let mut b1 = octate(&n2, "rr", "b1", false).await;
    assert_eq!(a1.recv_type("peer-joined").await["userId"], "a2");
    assert_eq!(a1.recv_type("peer-joined").await["userId"], "b1");
    assert_eq!(a2.recv_type("peer-joined").await["userId"], "b1");

    // An nt pair and a rendezvous pair across the two nodes, for their dialects' errors.
    let app = "3c2b1a09-8f7e-4d6c-9b5a-493827160504";
    let mut side_a = Client::connect(&format!("ws://{}/ws?appID={app}&side=A", n1.http)).await;
    let mut side_b = Client::connect(&format!("ws://{}/ws?appID={app}&side=B", n2.http)).await;
    assert!(side_a.recv_text().await.contains("room_full"));
    assert!(side_b.recv_text().await.contains("room_full"));
    let mut ra = Client::connect(&format!("ws://{}/ws?room=rz", n1.http)).await;
    ra.send(json!({"type":"join","peerId":"ra"})).await;
    ra.recv_type("ready").await;
    let mut rb = Client::connect(&format!("ws://{}/ws?room=rz", n2.http)).await;
    rb.send(json!({"type":"join","peerId":"rb"})).await;
    rb.recv_type("ready").await;
    ra.recv_type("peer-joined").await;

    redis.stop().await;
    n1.wait_ready(false).await;
    n2.wait_ready(false).await;
    let down = Instant::now();
    // For ten seconds: peers on one node keep signaling; a cross-node signal is an error.
    let mut rounds = 0;
    while down.elapsed() < Duration::from_secs(10) {
        a1.send(json!({"type":"ice-candidate","roomId":"rr","data":{"peer":"a2","candidate":{"n":rounds}}}))
            .await;
        assert_eq!(
            a2.recv_type("ice-candidate").await["data"]["candidate"]["n"],
            rounds
        );
        a1.send(json!({"type":"ice-candidate","roomId":"rr","data":{"peer":"b1","candidate":{"n":rounds}}}))
            .await;
        let e = a1.recv_type("error").await;
        assert_eq!(e["data"]["code"], "unavailable", "{e}");
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, _) = http_quick(n1.http, "/readyz").await;
    assert_eq!(status, 503);
    // Every dialect says so: nt's error frame, rendezvous' error code.
    side_a.send_text(r#"{"type":"offer","sdp":"during"}"#).await;
    assert_eq!(side_a.recv_text().await, "{\"type\":\"error\"}\n");
    ra.send(json!({"type":"signal","to":"rb","data":{"n":1}}))
        .await;
    assert_eq!(ra.recv_type("error").await["code"], "unavailable");

    redis.restart().await;
    let back = Instant::now();
    n1.wait_ready(true).await;
    n2.wait_ready(true).await;
    // Cross-node signaling works again within 5 s of Redis returning.
    loop {
        a1.send(json!({"type":"ice-candidate","roomId":"rr","data":{"peer":"b1","candidate":{"n":"back"}}}))
            .await;
        let v = a1.recv_timeout_or_none(Duration::from_millis(300)).await;
        match v {
            Some(e) if e["type"] == "error" => {}
            _ => break,
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "cross-node signaling not back in 5 s"
        );
    }
    assert_eq!(
        next_of(&mut b1, "ice-candidate").await["data"]["candidate"]["n"],
        "back"
    );
    eprintln!(
        "redis restart: cross-node signaling back after {:?}",
        back.elapsed()
    );
    // Membership is rebuilt: the room lists all three again.
    loop {
        let (_, room) = http("GET", n2.http, "/api/rooms/rr", None, &[]).await;
        if room["peers"].is_array() && peer_ids(&room) == ["a1", "a2", "b1"] {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "membership not rebuilt: {room}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The other dialects' pairs work across nodes again too.
    side_a.send_text(r#"{"type":"offer","sdp":"after"}"#).await;
    assert_eq!(
        side_b.recv_text().await,
        r#"{"type":"offer","sdp":"after"}"#
    );
    ra.send(json!({"type":"signal","to":"rb","data":{"n":2}}))
        .await;
    assert_eq!(rb.recv_type("signal").await["data"]["n"], 2);
    // Nobody saw a duplicate join (or a leave) through the outage.
    for c in [&mut a1, &mut a2, &mut b1, &mut ra, &mut rb] {
        c.expect_no_membership_event(Duration::from_millis(3000))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_past_its_lease_closes_its_peers_who_reconnect_elsewhere() {
    let redis = Redis::start().await;
    let proxy = Proxy::start(redis.addr()).await;
    let n1 = Node::start("p1", &redis.url(), &[]).await;
    let n2 = Node::start("p2", &proxy.url(), &[]).await;
    let mut a = octate(&n1, "pr", "a", true).await;
    let mut b = octate(&n2, "pr", "b", false).await;
    assert_eq!(a.recv_type("peer-joined").await["userId"], "b");

    let cut = Instant::now();
    proxy.cut();
    // The lease (2 s) lapses: the survivor removes b.
    let t = wait_left(&mut a, &["b"], Duration::from_secs(6)).await;
    eprintln!("partition: the survivor's peers heard peer-left after {t:?}");
    assert!(
        cut.elapsed() > Duration::from_secs(2),
        "not before the lease"
    );
    proxy.heal();
    // b's node finds its lease gone: b is closed with a reason.
    let closed = b.recv_close_within(Duration::from_secs(10)).await;
    assert_eq!(
        closed,
        Some((1001, "node lost contact with the cluster: reconnect".into()))
    );
    eprintln!(
        "partition: the cut-off node closed its peers {:?} after the cut",
        cut.elapsed()
    );
    // b reconnects through the other node and is back in the room with a.
    let mut b2 = octate(&n1, "pr", "b", false).await;
    assert_eq!(next_of(&mut a, "peer-joined").await["userId"], "b");
    b2.send(json!({"type":"sdp-offer","roomId":"pr","data":{"peer":"a","offer":{"sdp":"again"}}}))
        .await;
    assert_eq!(
        a.recv_type("sdp-offer").await["data"]["offer"]["sdp"],
        "again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_with_a_reconnect_hint_and_others_hear_within_a_second() {
    const ROOMS: usize = 10;
    const PER_ROOM: usize = 10;
    let redis = Redis::start().await;
    let n1 = Node::start("t1", &redis.url(), &[]).await;
    let mut n2 = Node::start("t2", &redis.url(), &[]).await;
    // Ten rooms, each with an observer on t1 and ten peers on t2.
    let mut observers = Vec::new();
    let mut leaving = Vec::new();
    for r in 0..ROOMS {
        let room = format!("tr{r}");
        let mut o = octate(&n1, &room, "o", true).await;
        for p in 0..PER_ROOM {
            leaving.push(octate(&n2, &room, &format!("p{p}"), false).await);
            o.recv_type("peer-joined").await;
        }
        observers.push(o);
    }
    let started = Instant::now();
    let term = tokio::spawn(async move { (n2.term().await, n2) });
    // Every room hears every one of its t2 peers left within a second of the signal.
    let ids: Vec<String> = (0..PER_ROOM).map(|p| format!("p{p}")).collect();
    let mut waits = Vec::new();
    for mut o in observers {
        let ids = ids.clone();
        waits.push(tokio::spawn(async move {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            wait_left(&mut o, &refs, Duration::from_secs(1)).await;
            o
        }));
    }
    let mut observers = Vec::new();
    for w in waits {
        observers.push(w.await.unwrap());
    }
    eprintln!(
        "SIGTERM: {} peers in {ROOMS} rooms heard leaving after {:?}",
        ROOMS * PER_ROOM,
        started.elapsed()
    );
    // Each of them got close 1001 with the reconnect hint.
    for c in &mut leaving {
        let closed = c.recv_close_within(Duration::from_secs(5)).await;
        assert_eq!(
            closed,
            Some((1001, "server shutting down: reconnect".into()))
        );
    }
    let (status, _n2) = term.await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "exit 0 after SIGTERM");
    // Listings forget them at once.
    let (_, room) = http("GET", n1.http, "/api/rooms/tr0", None, &[]).await;
    assert_eq!(peer_ids(&room), ["o"]);
}
