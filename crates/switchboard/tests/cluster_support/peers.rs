//! Clients the cluster tests share: an OctateCode peer on a node, frames of a kind, the
//! waits that bound each test.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Node;
use crate::support::Client;

/// Connects an OctateCode peer to `node` and joins (creating when `create`) `room`.
pub async fn octate(node: &Node, room: &str, user: &str, create: bool) -> Client {
    let mut c = Client::connect(&node.signaling_url()).await;
    c.send(json!({"type":"auth","userId":user,"roomId":room}))
        .await;
    c.recv_type("auth").await;
    let kind = if create { "create-room" } else { "join-room" };
    c.send(json!({"type":kind,"roomId":room})).await;
    let r = c.recv().await;
    assert!(
        r["type"] == "room-created" || r["type"] == "room-joined",
        "{user} on {}: {r}",
        node.name
    );
    c
}

/// The next frame of `kind`, skipping others (bounded by the client's patience per frame
/// and by `limit` frames).
pub async fn next_of(c: &mut Client, kind: &str) -> Value {
    for _ in 0..50 {
        let v = c.recv().await;
        if v["type"] == kind {
            return v;
        }
    }
    panic!("no {kind} within 50 frames");
}

pub fn peer_ids(room: &Value) -> Vec<String> {
    let mut ids: Vec<String> = room["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["userId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The next frame whose type is one of `kinds`.
pub async fn next_of_any(c: &mut Client, kinds: &[&str]) -> Value {
    for _ in 0..50 {
        let v = c.recv().await;
        if kinds.iter().any(|k| v["type"] == *k) {
            return v;
        }
    }
    panic!("none of {kinds:?} within 50 frames");
}

pub trait ClientExt {
    async fn recv_timeout_or_none(&mut self, d: Duration) -> Option<Value>;
    async fn recv_close_within(&mut self, d: Duration) -> Option<(u16, String)>;
    async fn expect_no_membership_event(&mut self, d: Duration);
}

impl ClientExt for Client {
    async fn recv_timeout_or_none(&mut self, d: Duration) -> Option<Value> {
        tokio::time::timeout(d, self.recv()).await.ok()
    }

    async fn recv_close_within(&mut self, d: Duration) -> Option<(u16, String)> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = Instant::now() + d;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("a close in time");
            match tokio::time::timeout(left, self.inner().next()).await {
                Err(_) => panic!("no close within {d:?}"),
                Ok(Some(Ok(Message::Close(f)))) => {
                    return f.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => return None,
            }
        }
    }

    async fn expect_no_membership_event(&mut self, d: Duration) {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, self.inner().next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(t)))) => {
                    assert!(
                        !t.contains("\"peer-joined\"") && !t.contains("\"peer-left\""),
                        "unexpected membership event: {t}"
                    );
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    }
}
