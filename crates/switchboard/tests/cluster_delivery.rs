//! What a node does with signals from other nodes it cannot deliver, the nt mailbox's bounds
//! in Redis, and a join's gate on its own room only, with real redis-server and switchboard
//! processes.

mod cluster_support;
mod support;

use std::time::Duration;

use cluster_support::peers::{next_of, octate};
use cluster_support::{Node, Redis};
use serde_json::{Value, json};
use support::Client;

/// Reads `c`'s frames until it has seen `peer-left` for `who` and at least one
/// `undelivered` error naming `who` (they travel on different channels, so either may come
/// first), within 10 s; every error on the way must be such a notice. Returns how many.
async fn undelivered_and_left(c: &mut Client, who: &str) -> usize {
    let (mut told, mut left) = (0, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(left && told > 0) {
        let v = tokio::time::timeout_at(deadline, c.recv())
            .await
            .unwrap_or_else(|_| panic!("within 10 s: left {left}, told {told} times"));
        match v["type"].as_str() {
            Some("peer-left") if v["userId"] == who => left = true,
            Some("error") => {
                assert_eq!(v["data"]["code"], "undelivered", "{v}");
                let message = v["data"]["error"].as_str().unwrap_or_default();
                assert!(message.contains(who), "{v}");
                told += 1;
            }
            _ => {}
        }
    }
    told
}

/// A client on another node that joins and then never reads again fills its outbox: its
/// node closes it as a slow consumer, the room hears it left, a healthy pair across the same
/// nodes is not held up, and the sender is told of the room-wide signals that node could
/// not deliver (it used to be silent: "no signal is silently dropped").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_on_another_node_is_closed_holds_nobody_up_and_its_losses_are_reported() {
    let redis = Redis::start().await;
    let env = [("OUTBOX_CAPACITY", "16")];
    let n1 = Node::start("w1", &redis.url(), &env).await;
    let n2 = Node::start("w2", &redis.url(), &env).await;
    let mut sender = octate(&n1, "slow", "sender", true).await;
    let _stuck = octate(&n2, "slow", "stuck", false).await;
    sender.recv_type("peer-joined").await;
    let mut a = octate(&n1, "fine", "a", true).await;
    let mut b = octate(&n2, "fine", "b", false).await;
    a.recv_type("peer-joined").await;
    let big = "x".repeat(60_000);
    let flood = tokio::spawn(async move {
        for n in 0..400 {
            sender
                .send(json!({"type":"presence","roomId":"slow","data":{"n":n,"pad":big}}))
                .await;
        }
        sender
    });
    for n in 0..50 {
        a.send(
            json!({"type":"ice-candidate","roomId":"fine","data":{"peer":"b","candidate":{"n":n}}}),
        )
        .await;
        let v = tokio::time::timeout(Duration::from_secs(2), next_of(&mut b, "ice-candidate"))
            .await
            .expect("the healthy pair is not held up");
        assert_eq!(v["data"]["candidate"]["n"], n);
    }
    let mut sender = flood.await.unwrap();
    let told = undelivered_and_left(&mut sender, "stuck").await;
    assert!(told >= 1);
}

/// The same for signals addressed to the slow consumer: each one its node could not take
/// comes back to the sender as `undelivered`, until the room hears it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_signals_a_slow_consumer_on_another_node_cannot_take_are_reported() {
    let redis = Redis::start().await;
    let env = [("OUTBOX_CAPACITY", "16")];
    let n1 = Node::start("t1", &redis.url(), &env).await;
    let n2 = Node::start("t2", &redis.url(), &env).await;
    let mut sender = octate(&n1, "slow-t", "sender", true).await;
    let _stuck = octate(&n2, "slow-t", "stuck", false).await;
    sender.recv_type("peer-joined").await;
    let big = "x".repeat(60_000);
    let frame = json!({"type":"ice-candidate","roomId":"slow-t","data":{"peer":"stuck","pad":big}});
    let mut sent = 0;
    let first = loop {
        sender.send(frame.clone()).await;
        sent += 1;
        if let Ok(v) = tokio::time::timeout(Duration::from_millis(2), sender.recv()).await
            && v["type"] == "error"
        {
            break v;
        }
        assert!(sent < 600, "the sender was never told");
    };
    // Once the room has heard that stuck left, a signal to it is refused at once
    // (`peer_not_found`), which may come before the notices for the earlier ones.
    let told = match first["data"]["code"].as_str() {
        Some("undelivered") => first,
        Some("peer_not_found") => tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let v = sender.recv().await;
                if v["type"] == "error" && v["data"]["code"] == "undelivered" {
                    return v;
                }
            }
        })
        .await
        .expect("an undelivered notice"),
        _ => panic!("{first}"),
    };
    assert!(
        told["data"]["error"].as_str().unwrap().contains("stuck"),
        "{told}"
    );
}

/// nt mailboxes in Redis keep what one node keeps: `MAILBOX_MAX_BYTES` per room (the
/// oldest items go first), not only 256 items per recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nt_mailbox_in_redis_is_bounded_in_bytes_as_on_one_node() {
    let redis = Redis::start().await;
    let env = [("MAILBOX_MAX_BYTES", "4k")];
    let n1 = Node::start("m1", &redis.url(), &env).await;
    let n2 = Node::start("m2", &redis.url(), &env).await;
    let app = "0f0e8f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b";
    let side = |node: &Node, s: &str| format!("ws://{}/ws?appID={app}&side={s}", node.http);
    let mut a = Client::connect(&side(&n1, "A")).await;
    let mut b = Client::connect(&side(&n2, "B")).await;
    assert_eq!(b.recv_text().await, "{\"type\":\"room_full\"}\n");
    assert_eq!(a.recv_text().await, "{\"type\":\"room_full\"}\n");
    // Ten items of 1,002 payload bytes each for B, which it receives as they come (so all ten
    // are in Redis): four fit in 4 KiB.
    let pad = "y".repeat(1_000);
    for n in 0..10 {
        a.send(json!({"type":"send","to":"B","payload":format!("{n}{}", &pad[1..])}))
            .await;
    }
    for n in 0..10 {
        let v: Value = serde_json::from_str(b.recv_text().await.trim()).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["seq"].as_u64()),
            (Some("send"), Some(n))
        );
    }
    // B asks for everything again: the mailbox kept the newest four.
    b.send(json!({"type":"hello","deliveredUpTo":0})).await;
    let mut seqs = Vec::new();
    for _ in 0..4 {
        let v: Value = serde_json::from_str(b.recv_text().await.trim()).unwrap();
        assert_eq!(v["type"], "send", "{v}");
        seqs.push(v["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, [6, 7, 8, 9], "the newest four, in order");
    b.expect_silence(Duration::from_millis(300)).await;
}

/// Issue 22: revoking a user through any node closes that user's connections on every node
/// (1008 `access revoked`), and the room on the other node hears it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_user_on_one_node_closes_their_connections_on_every_node() {
    let redis = Redis::start().await;
    let n1 = Node::start("v1", &redis.url(), &[]).await;
    let n2 = Node::start("v2", &redis.url(), &[]).await;
    let mut bob = octate(&n1, "rv", "bob", true).await;
    let mut alice = octate(&n2, "rv", "alice", false).await;
    bob.recv_type("peer-joined").await;
    let (status, body) = support::http("POST", n1.http, "/api/users/alice/revoke", None, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["closedConnections"], 0,
        "none of alice's connections is on n1"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), alice.recv_close())
        .await
        .expect("alice closed within 5 s");
    assert_eq!(closed, Some((1008, "access revoked".into())));
    assert_eq!(next_of(&mut bob, "peer-left").await["userId"], "alice");
}
