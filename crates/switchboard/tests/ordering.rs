//! Signals from one sender to one receiver arrive in the order sent, in every dialect and
//! across dialects in one room: a thousand signals back to back per pair, the exact
//! sequence compared. (Socket.io's pairs are in the Node test, with the real client.)

mod support;

use serde_json::{Value, json};
use support::*;
use switchboard::Config;

const N: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Octate,
    Rendezvous,
    Nt,
    YWebrtc,
}

struct Peer {
    dialect: Dialect,
    id: &'static str,
    room: String,
    client: Client,
}

/// Joins `room` as `id` (for nt, `id` is the side; for y-webrtc, `room` is
/// `y-webrtc/<topic>` and `id` is not seen by others).
async fn join(s: &TestServer, dialect: Dialect, room: &str, id: &'static str) -> Peer {
    let mut client = match dialect {
        Dialect::Octate => {
            let mut c = Client::connect(&s.signaling_url()).await;
            c.send(json!({"type":"auth","userId":id,"roomId":room}))
                .await;
            c.recv_type("auth").await;
            c.send(json!({"type":"join-room","roomId":room})).await;
            let r = c.recv().await;
            if r["type"] == "error" {
                c.send(json!({"type":"create-room","roomId":room})).await;
                c.recv_type("room-created").await;
            } else {
                assert_eq!(r["type"], "room-joined", "{r}");
            }
            c
        }
        Dialect::Rendezvous => {
            let mut c = Client::connect(&format!("ws://{}/ws?room={room}", s.http)).await;
            c.send(json!({"type":"join","peerId":id})).await;
            c.recv_type("ready").await;
            c
        }
        Dialect::Nt => Client::connect(&format!("ws://{}/ws?appID={room}&side={id}", s.http)).await,
        Dialect::YWebrtc => {
            let topic = room.strip_prefix("y-webrtc/").expect("a topic room");
            let mut c = Client::connect(&format!("ws://{}/y-webrtc", s.http)).await;
            c.send(json!({"type":"subscribe","topics":[topic]})).await;
            c.send(json!({"type":"ping"})).await;
            c.recv_type("pong").await;
            c
        }
    };
    // A connection is in its room once the server has answered something after the join;
    // for nt (joined on open) a y-webrtc-style round trip is not available, so wait until
    // the registry shows it.
    if dialect == Dialect::Nt {
        let room_id = room.to_owned();
        eventually(|| {
            s.app
                .registry
                .room(&room_id.as_str().into())
                .is_some_and(|r| r.members.iter().any(|m| m.id.as_str() == id))
        })
        .await;
    }
    let _ = &mut client;
    Peer {
        dialect,
        id,
        room: room.to_owned(),
        client,
    }
}

/// The candidate object every dialect carries: its `candidate` names the sequence number.
fn candidate(n: usize) -> Value {
    json!({"candidate": format!("seq {n} candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"), "sdpMid": "0", "sdpMLineIndex": 0})
}

/// Sends signal `n` from `p` to `to` (or the room when the dialect cannot name peers).
async fn send(p: &mut Peer, to: &str, n: usize) {
    let frame = match p.dialect {
        Dialect::Octate => json!({"type":"ice-candidate","roomId":p.room,"userId":p.id,
            "data":{"peer":to,"candidate":candidate(n)}}),
        Dialect::Rendezvous => json!({"type":"signal","to":to,"data":candidate(n)}),
        Dialect::Nt => json!({"type":"ice","cand":candidate(n)}),
        Dialect::YWebrtc => json!({"type":"publish",
            "topic":p.room.strip_prefix("y-webrtc/").unwrap(),"data":candidate(n)}),
    };
    p.client.send(frame).await;
}

/// The sequence numbers `p` receives, in arrival order, until it has `N` of them.
async fn receive(p: &mut Peer) -> Vec<usize> {
    let mut got = Vec::with_capacity(N);
    while got.len() < N {
        let text = p.client.recv_text().await;
        assert!(
            !text.contains("\"error\""),
            "{:?} got an error: {text}",
            p.dialect
        );
        if let Some(at) = text.find("seq ") {
            let digits: String = text[at + 4..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            got.push(digits.parse().unwrap());
        }
    }
    got
}

async fn in_order(
    from: Dialect,
    from_id: &'static str,
    to: Dialect,
    to_id: &'static str,
    room: &str,
) {
    let s = TestServer::with(Config {
        max_messages_per_second: 0,
        outbox_capacity: 4 * N,
        ..test_config()
    })
    .await;
    let mut receiver = join(&s, to, room, to_id).await;
    let mut sender = join(&s, from, room, from_id).await;
    // y-webrtc peers have no id others can name: signals to them go to the room.
    let target = if to == Dialect::YWebrtc {
        ""
    } else {
        receiver.id
    };
    let recv = tokio::spawn(async move {
        let got = receive(&mut receiver).await;
        (got, receiver)
    });
    for n in 0..N {
        send(&mut sender, target, n).await;
    }
    let (got, _receiver) = recv.await.unwrap();
    // No error came back to the sender for any of the thousand.
    while let Ok(text) = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        sender.client.recv_text(),
    )
    .await
    {
        assert!(!text.contains("\"error\""), "{from:?} sender got {text}");
    }
    let expected: Vec<usize> = (0..N).collect();
    if got != expected {
        let inversions = got.windows(2).filter(|w| w[0] > w[1]).count();
        panic!(
            "{from:?} → {to:?}: {inversions} inversions, first differences: {:?}",
            got.iter()
                .zip(&expected)
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .take(5)
                .collect::<Vec<_>>()
        );
    }
    s.stop().await;
}

const NT_ROOM: &str = "7d5e2f64-8b1c-4a3e-9f0d-2c6b1a8e4d37";
const TOPIC_ROOM: &str = "y-webrtc/ordering";

#[tokio::test]
async fn octate_to_octate() {
    in_order(Dialect::Octate, "alice", Dialect::Octate, "bob", "r").await;
}

#[tokio::test]
async fn rendezvous_to_rendezvous() {
    in_order(Dialect::Rendezvous, "a", Dialect::Rendezvous, "b", "r").await;
}

#[tokio::test]
async fn nt_to_nt() {
    in_order(Dialect::Nt, "A", Dialect::Nt, "B", NT_ROOM).await;
}

#[tokio::test]
async fn ywebrtc_to_ywebrtc() {
    in_order(Dialect::YWebrtc, "y1", Dialect::YWebrtc, "y2", TOPIC_ROOM).await;
}

#[tokio::test]
async fn octate_to_rendezvous_and_back() {
    in_order(Dialect::Octate, "alice", Dialect::Rendezvous, "b", "x").await;
    in_order(Dialect::Rendezvous, "b", Dialect::Octate, "alice", "x").await;
}

#[tokio::test]
async fn rendezvous_to_nt_and_back() {
    in_order(Dialect::Rendezvous, "B", Dialect::Nt, "A", NT_ROOM).await;
    in_order(Dialect::Nt, "A", Dialect::Rendezvous, "B", NT_ROOM).await;
}

#[tokio::test]
async fn nt_to_octate_and_back() {
    in_order(Dialect::Nt, "A", Dialect::Octate, "bob", NT_ROOM).await;
    in_order(Dialect::Octate, "bob", Dialect::Nt, "A", NT_ROOM).await;
}

#[tokio::test]
async fn rendezvous_to_ywebrtc_and_back() {
    in_order(Dialect::Rendezvous, "r", Dialect::YWebrtc, "y", TOPIC_ROOM).await;
    in_order(Dialect::YWebrtc, "y", Dialect::Rendezvous, "r", TOPIC_ROOM).await;
}

#[tokio::test]
async fn octate_to_ywebrtc_and_back() {
    in_order(Dialect::Octate, "o", Dialect::YWebrtc, "y", TOPIC_ROOM).await;
    in_order(Dialect::YWebrtc, "y", Dialect::Octate, "o", TOPIC_ROOM).await;
}
