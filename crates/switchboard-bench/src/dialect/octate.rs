//! OctateCode: JSON text frames on the signaling port, any path.
//!
//! Join: `auth` → `auth` reply → `create-room` (first peer) or `join-room` → `room-created` /
//! `room-joined`. Relay: `sdp-offer` with `data.peer` naming the target; the benchmark
//! fields ride in `data` (`data.seq`, `data.ts`, `data.from`). Leave: `leave-room`.
//!
//! Parsing is lenient about where the server puts the relayed data: the original Node
//! server nested the incoming `data` under `data.offer`, so `data.offer.seq` is read too.

use std::borrow::Cow;

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::{Dialect, Incoming, JoinStep, PeerSpec, Probe, ProbeFields, SDP, SdpOffer, to_json};

/// The OctateCode dialect.
#[derive(Debug, Clone, Copy)]
pub struct Octate;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// `data` of a relayed frame: the probe at top level, or nested one level down under
/// `offer` by servers that wrap what they relay.
#[derive(Deserialize)]
struct RelayData {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    ts: Option<u64>,
    #[serde(default)]
    offer: Option<Box<RelayData>>,
}

impl RelayData {
    fn probe(&self) -> Option<ProbeFields> {
        match (self.seq, self.ts) {
            (Some(seq), Some(ts)) => Some(ProbeFields { seq, ts }),
            _ => self.offer.as_ref()?.probe(),
        }
    }
}

#[derive(serde::Serialize)]
struct SdpOfferFrame<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(rename = "roomId")]
    room_id: &'a str,
    #[serde(rename = "userId")]
    user_id: &'a str,
    data: SdpOfferData<'a>,
}

#[derive(serde::Serialize)]
struct SdpOfferData<'a> {
    peer: &'a str,
    offer: SdpOffer,
    seq: u64,
    ts: u64,
    from: &'a str,
}

fn error_text(data: Option<&RawValue>) -> String {
    let parsed = data.and_then(|d| serde_json::from_str::<ErrorData>(d.get()).ok());
    match parsed {
        Some(ErrorData {
            error: Some(e),
            code: Some(c),
        }) => format!("{c}: {e}"),
        Some(ErrorData { error: Some(e), .. }) => e,
        _ => "error frame without text".to_owned(),
    }
}

impl Dialect for Octate {
    fn name(&self) -> &'static str {
        "octate"
    }

    fn room_capacity(&self) -> Option<usize> {
        None
    }

    fn url(&self, base: &str, _room: &str) -> String {
        base.to_owned()
    }

    fn hello(&self, peer: &PeerSpec) -> Vec<String> {
        vec![json!({"type": "auth", "userId": peer.id, "roomId": peer.room}).to_string()]
    }

    fn on_join_frame(&self, peer: &PeerSpec, frame: &str) -> Result<JoinStep> {
        let Ok(f) = serde_json::from_str::<Frame<'_>>(frame) else {
            return Ok(JoinStep::Continue(vec![]));
        };
        Ok(match &*f.ty {
            "auth" => {
                let next = if peer.creates_room {
                    json!({
                        "type": "create-room", "roomId": peer.room, "userId": peer.id,
                        "data": {"roomName": peer.room, "userName": peer.id},
                    })
                } else {
                    json!({
                        "type": "join-room", "roomId": peer.room, "userId": peer.id,
                        "data": {"userName": peer.id},
                    })
                };
                JoinStep::Continue(vec![next.to_string()])
            }
            "room-created" | "room-joined" => JoinStep::Joined {
                self_id: peer.id.clone(),
            },
            "error" => bail!("server error while joining: {}", error_text(f.data)),
            _ => JoinStep::Continue(vec![]),
        })
    }

    fn relay(&self, room: &str, from: &str, to: &str, probe: Probe) -> String {
        to_json(&SdpOfferFrame {
            ty: "sdp-offer",
            room_id: room,
            user_id: from,
            data: SdpOfferData {
                peer: to,
                offer: SDP,
                seq: probe.seq,
                ts: probe.ts_us,
                from,
            },
        })
    }

    fn parse(&self, frame: &str) -> Incoming {
        let Ok(f) = serde_json::from_str::<Frame<'_>>(frame) else {
            return Incoming::Other;
        };
        let user = || f.user_id.as_deref().unwrap_or_default().to_owned();
        match &*f.ty {
            "sdp-offer" => {
                let probe = f
                    .data
                    .and_then(|d| serde_json::from_str::<RelayData>(d.get()).ok())
                    .and_then(|d| d.probe());
                match probe {
                    Some(p) => Incoming::Relay {
                        from: user(),
                        seq: p.seq,
                        ts_us: p.ts,
                    },
                    None => Incoming::Other,
                }
            }
            "peer-joined" => Incoming::PeerJoined(user()),
            "peer-left" => Incoming::PeerLeft(user()),
            "error" => Incoming::Error(error_text(f.data)),
            _ => Incoming::Other,
        }
    }

    fn leave(&self, room: &str, me: &str) -> Vec<String> {
        vec![json!({"type": "leave-room", "roomId": room, "userId": me}).to_string()]
    }

    fn announces_leave(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(creates_room: bool) -> PeerSpec {
        PeerSpec {
            room: "r1".into(),
            id: "u1".into(),
            creates_room,
        }
    }

    fn value(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn join_sequence_for_creator_and_joiner() {
        let d = Octate;
        assert_eq!(
            value(&d.hello(&spec(true))[0]),
            json!({"type": "auth", "userId": "u1", "roomId": "r1"})
        );
        let auth_ok = r#"{"type":"auth","roomId":"r1","userId":"u1","data":{"status":"authenticated"},"timestamp":1}"#;
        let JoinStep::Continue(next) = d.on_join_frame(&spec(true), auth_ok).unwrap() else {
            panic!("auth reply is not the end of the join");
        };
        assert_eq!(
            value(&next[0]),
            json!({"type": "create-room", "roomId": "r1", "userId": "u1",
                   "data": {"roomName": "r1", "userName": "u1"}})
        );
        let JoinStep::Continue(next) = d.on_join_frame(&spec(false), auth_ok).unwrap() else {
            panic!()
        };
        assert_eq!(
            value(&next[0]),
            json!({"type": "join-room", "roomId": "r1", "userId": "u1", "data": {"userName": "u1"}})
        );
        for reply in ["room-created", "room-joined"] {
            let frame = format!(
                r#"{{"type":"{reply}","roomId":"r1","userId":"u1","data":{{"room":{{"peers":[]}}}},"timestamp":2}}"#
            );
            assert_eq!(
                d.on_join_frame(&spec(false), &frame).unwrap(),
                JoinStep::Joined {
                    self_id: "u1".into()
                }
            );
        }
        // Unrelated frames while joining are skipped.
        assert_eq!(
            d.on_join_frame(&spec(false), r#"{"type":"peer-joined","userId":"x"}"#)
                .unwrap(),
            JoinStep::Continue(vec![])
        );
        assert_eq!(
            d.on_join_frame(&spec(false), "garbage").unwrap(),
            JoinStep::Continue(vec![])
        );
    }

    #[test]
    fn join_error_is_reported_with_code() {
        let err = Octate
            .on_join_frame(
                &spec(false),
                r#"{"type":"error","roomId":"r1","userId":"u1","data":{"error":"Room not found","code":"room_not_found"},"timestamp":3}"#,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("room_not_found: Room not found"),
            "{err}"
        );
    }

    #[test]
    fn relay_frame_shape_and_parse_back() {
        let d = Octate;
        let probe = Probe { seq: 7, ts_us: 99 };
        let frame = value(&d.relay("r1", "a", "b", probe));
        assert_eq!(frame["type"], "sdp-offer");
        assert_eq!(frame["roomId"], "r1");
        assert_eq!(frame["userId"], "a");
        assert_eq!(frame["data"]["peer"], "b");
        assert_eq!(frame["data"]["offer"]["type"], "offer");
        assert_eq!(frame["data"]["seq"], 7);

        // What the target receives: the data as sent, plus the sender and a timestamp.
        let received = json!({"type": "sdp-offer", "roomId": "r1", "userId": "a",
                              "data": frame["data"], "timestamp": 5})
        .to_string();
        assert_eq!(
            d.parse(&received),
            Incoming::Relay {
                from: "a".into(),
                seq: 7,
                ts_us: 99
            }
        );
        // A server that nests the incoming data under `offer` (the original Node server).
        let nested = json!({"type": "sdp-offer", "roomId": "r1", "userId": "a",
                            "data": {"offer": frame["data"]}, "timestamp": 5})
        .to_string();
        assert_eq!(
            d.parse(&nested),
            Incoming::Relay {
                from: "a".into(),
                seq: 7,
                ts_us: 99
            }
        );
    }

    #[test]
    fn parses_membership_and_errors() {
        let d = Octate;
        assert_eq!(
            d.parse(r#"{"type":"peer-joined","roomId":"r1","userId":"b","data":{"peer":{"userId":"b","userName":"b"}},"timestamp":1}"#),
            Incoming::PeerJoined("b".into())
        );
        assert_eq!(
            d.parse(r#"{"type":"peer-left","roomId":"r1","userId":"b","timestamp":1}"#),
            Incoming::PeerLeft("b".into())
        );
        assert_eq!(
            d.parse(r#"{"type":"error","roomId":"","userId":"","data":{"error":"Not authenticated"},"timestamp":1}"#),
            Incoming::Error("Not authenticated".into())
        );
        assert_eq!(d.parse(r#"{"type":"heartbeat"}"#), Incoming::Other);
        assert_eq!(d.parse("[1,2]"), Incoming::Other);
        assert_eq!(
            value(&d.leave("r1", "a")[0]),
            json!({"type": "leave-room", "roomId": "r1", "userId": "a"})
        );
    }
}
