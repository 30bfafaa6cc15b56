//! matchbox_server: `ws://HOST:PORT/<room>`, server-assigned peer ids.
//!
//! Join: nothing to send; the first frame is `{"IdAssigned":"<uuid>"}`. Peers already in
//! the room get `{"NewPeer":"<uuid>"}`, and `{"PeerLeft":"<uuid>"}` when one goes. Relay:
//! `{"Signal":{"receiver","data"}}` arrives as `{"Signal":{"sender","data"}}`. Leave: just
//! close.

use anyhow::Result;
use serde::Deserialize;

use super::{Dialect, Incoming, JoinStep, OfferPayload, PeerSpec, Probe, ProbeFields, to_json};
use crate::net::with_path_segment;

/// The matchbox dialect.
#[derive(Debug, Clone, Copy)]
pub struct Matchbox;

#[derive(Deserialize)]
enum Event {
    IdAssigned(String),
    NewPeer(String),
    PeerLeft(String),
    Signal { sender: String, data: ProbeFields },
}

#[derive(serde::Serialize)]
enum Request<'a> {
    Signal {
        receiver: &'a str,
        data: OfferPayload<'a>,
    },
}

impl Dialect for Matchbox {
    fn name(&self) -> &'static str {
        "matchbox"
    }

    fn room_capacity(&self) -> Option<usize> {
        None
    }

    fn url(&self, base: &str, room: &str) -> String {
        with_path_segment(base, room)
    }

    fn hello(&self, _peer: &PeerSpec) -> Vec<String> {
        vec![]
    }

    fn on_join_frame(&self, _peer: &PeerSpec, frame: &str) -> Result<JoinStep> {
        Ok(match serde_json::from_str::<Event>(frame) {
            Ok(Event::IdAssigned(id)) => JoinStep::Joined { self_id: id },
            _ => JoinStep::Continue(vec![]),
        })
    }

    fn relay(&self, _room: &str, from: &str, to: &str, probe: Probe) -> String {
        to_json(&Request::Signal {
            receiver: to,
            data: OfferPayload::new(from, probe),
        })
    }

    fn parse(&self, frame: &str) -> Incoming {
        match serde_json::from_str::<Event>(frame) {
            Ok(Event::Signal { sender, data }) => Incoming::Relay {
                from: sender,
                seq: data.seq,
                ts_us: data.ts,
            },
            Ok(Event::NewPeer(id)) => Incoming::PeerJoined(id),
            Ok(Event::PeerLeft(id)) => Incoming::PeerLeft(id),
            Ok(Event::IdAssigned(_)) | Err(_) => Incoming::Other,
        }
    }

    fn leave(&self, _room: &str, _me: &str) -> Vec<String> {
        vec![]
    }

    fn announces_leave(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_is_assigned_by_the_server() {
        let spec = PeerSpec {
            room: "r".into(),
            id: "ignored".into(),
            creates_room: true,
        };
        assert!(Matchbox.hello(&spec).is_empty());
        assert_eq!(
            Matchbox.url("ws://127.0.0.1:3536/", "r"),
            "ws://127.0.0.1:3536/r"
        );
        assert_eq!(
            Matchbox
                .on_join_frame(&spec, r#"{"IdAssigned":"6f1c"}"#)
                .unwrap(),
            JoinStep::Joined {
                self_id: "6f1c".into()
            }
        );
    }

    #[test]
    fn signal_round_trip() {
        let sent: serde_json::Value =
            serde_json::from_str(&Matchbox.relay("r", "aa", "bb", Probe { seq: 5, ts_us: 6 }))
                .unwrap();
        assert_eq!(sent["Signal"]["receiver"], "bb");
        let received = json!({"Signal": {"sender": "aa", "data": sent["Signal"]["data"].clone()}});
        assert_eq!(
            Matchbox.parse(&received.to_string()),
            Incoming::Relay {
                from: "aa".into(),
                seq: 5,
                ts_us: 6
            }
        );
        assert_eq!(
            Matchbox.parse(r#"{"NewPeer":"cc"}"#),
            Incoming::PeerJoined("cc".into())
        );
        assert_eq!(
            Matchbox.parse(r#"{"PeerLeft":"cc"}"#),
            Incoming::PeerLeft("cc".into())
        );
    }
}
