//! y-webrtc's signaling server: topic publish/subscribe.
//!
//! Join: `{"type":"subscribe","topics":[room]}`. The server does not acknowledge a
//! subscription, so the join also sends `{"type":"ping"}` and counts the `pong` as the
//! acknowledgement (the server handles one connection's frames in order). Relay:
//! `{"type":"publish","topic","data"}` goes to every subscriber of the topic, **sender
//! included**, as `{"type":"publish","topic","data","clients"}`; the benchmark puts `from` and
//! `to` in `data`, and a receiver drops its own echoes (rooms hold one pair). There are no peer ids
//! on the wire and no join or leave announcements. Leave: `unsubscribe`.

use std::borrow::Cow;

use anyhow::Result;
use serde::Deserialize;
use serde_json::json;

use super::{Dialect, Incoming, JoinStep, OfferPayload, PeerSpec, Probe};

/// The y-webrtc dialect.
#[derive(Debug, Clone, Copy)]
pub struct YWebrtc;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    ts: Option<u64>,
}

#[derive(serde::Serialize)]
struct PublishFrame<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    topic: &'a str,
    data: PublishData<'a>,
}

#[derive(serde::Serialize)]
struct PublishData<'a> {
    to: &'a str,
    #[serde(flatten)]
    offer: OfferPayload<'a>,
}

impl Dialect for YWebrtc {
    fn name(&self) -> &'static str {
        "ywebrtc"
    }

    fn room_capacity(&self) -> Option<usize> {
        None
    }

    fn url(&self, base: &str, _room: &str) -> String {
        base.to_owned()
    }

    fn hello(&self, peer: &PeerSpec) -> Vec<String> {
        vec![
            json!({"type": "subscribe", "topics": [peer.room]}).to_string(),
            json!({"type": "ping"}).to_string(),
        ]
    }

    fn on_join_frame(&self, peer: &PeerSpec, frame: &str) -> Result<JoinStep> {
        Ok(match serde_json::from_str::<Frame<'_>>(frame) {
            Ok(f) if f.ty == "pong" => JoinStep::Joined {
                self_id: peer.id.clone(),
            },
            _ => JoinStep::Continue(vec![]),
        })
    }

    fn relay(&self, room: &str, from: &str, to: &str, probe: Probe) -> String {
        super::to_json(&PublishFrame {
            ty: "publish",
            topic: room,
            data: PublishData {
                to,
                offer: OfferPayload::new(from, probe),
            },
        })
    }

    fn parse(&self, frame: &str) -> Incoming {
        let Ok(f) = serde_json::from_str::<Frame<'_>>(frame) else {
            return Incoming::Other;
        };
        match (&*f.ty, f.data) {
            (
                "publish",
                Some(Data {
                    from: Some(from),
                    seq: Some(seq),
                    ts: Some(ts),
                }),
            ) => Incoming::Relay {
                from: from.into_owned(),
                seq,
                ts_us: ts,
            },
            _ => Incoming::Other,
        }
    }

    fn leave(&self, room: &str, _me: &str) -> Vec<String> {
        vec![json!({"type": "unsubscribe", "topics": [room]}).to_string()]
    }

    fn announces_leave(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_is_subscribe_then_ping() {
        let d = YWebrtc;
        let spec = PeerSpec {
            room: "t1".into(),
            id: "a".into(),
            creates_room: true,
        };
        let hello: Vec<serde_json::Value> = d
            .hello(&spec)
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        assert_eq!(
            hello,
            vec![
                json!({"type": "subscribe", "topics": ["t1"]}),
                json!({"type": "ping"})
            ]
        );
        assert_eq!(
            d.on_join_frame(&spec, r#"{"type":"pong"}"#).unwrap(),
            JoinStep::Joined {
                self_id: "a".into()
            }
        );
    }

    #[test]
    fn publish_round_trip() {
        let d = YWebrtc;
        let sent: serde_json::Value =
            serde_json::from_str(&d.relay("t1", "a", "b", Probe { seq: 1, ts_us: 2 })).unwrap();
        assert_eq!(sent["type"], "publish");
        assert_eq!(sent["topic"], "t1");
        assert_eq!(sent["data"]["to"], "b");
        let mut received = sent.clone();
        received["clients"] = json!(2);
        assert_eq!(
            d.parse(&received.to_string()),
            Incoming::Relay {
                from: "a".into(),
                seq: 1,
                ts_us: 2
            }
        );
        // A y-webrtc client's own publish (no benchmark fields) is not a probe.
        assert_eq!(
            d.parse(r#"{"type":"publish","topic":"t1","data":{"type":"announce"},"clients":2}"#),
            Incoming::Other
        );
    }
}
