//! Rendezvous (nt-backend-wrtc seed): `ws://HOST:PORT/ws?room=<CODE>`.
//!
//! Join: `{"type":"join","peerId"}` → `{"type":"ready","selfId","peers"}`. Relay:
//! `{"type":"signal","to","data"}` arrives as `{"type":"signal","from","data"}` with `data`
//! as sent. Leave: `{"type":"leave"}`. Rooms hold 2 peers by default.

use std::borrow::Cow;

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::{Dialect, Incoming, JoinStep, OfferPayload, PeerSpec, Probe, ProbeFields, to_json};
use crate::net::with_query;

/// The rendezvous dialect.
#[derive(Debug, Clone, Copy)]
pub struct Rendezvous;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(rename = "selfId", borrow, default)]
    self_id: Option<Cow<'a, str>>,
    #[serde(rename = "peerId", borrow, default)]
    peer_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

impl Frame<'_> {
    fn error_text(&self) -> String {
        format!(
            "{}: {}",
            self.code.as_deref().unwrap_or("error"),
            self.message.as_deref().unwrap_or("")
        )
    }
}

#[derive(serde::Serialize)]
struct SignalFrame<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    to: &'a str,
    data: OfferPayload<'a>,
}

impl Dialect for Rendezvous {
    fn name(&self) -> &'static str {
        "rendezvous"
    }

    fn room_capacity(&self) -> Option<usize> {
        Some(2)
    }

    fn url(&self, base: &str, room: &str) -> String {
        with_query(base, "room", room)
    }

    fn hello(&self, peer: &PeerSpec) -> Vec<String> {
        vec![json!({"type": "join", "peerId": peer.id}).to_string()]
    }

    fn on_join_frame(&self, peer: &PeerSpec, frame: &str) -> Result<JoinStep> {
        let Ok(f) = serde_json::from_str::<Frame<'_>>(frame) else {
            return Ok(JoinStep::Continue(vec![]));
        };
        Ok(match &*f.ty {
            "ready" => JoinStep::Joined {
                self_id: f.self_id.as_deref().unwrap_or(&peer.id).to_owned(),
            },
            "error" => bail!("server error while joining: {}", f.error_text()),
            _ => JoinStep::Continue(vec![]),
        })
    }

    fn relay(&self, _room: &str, from: &str, to: &str, probe: Probe) -> String {
        to_json(&SignalFrame {
            ty: "signal",
            to,
            data: OfferPayload::new(from, probe),
        })
    }

    fn parse(&self, frame: &str) -> Incoming {
        let Ok(f) = serde_json::from_str::<Frame<'_>>(frame) else {
            return Incoming::Other;
        };
        let peer = || f.peer_id.as_deref().unwrap_or_default().to_owned();
        match &*f.ty {
            "signal" => {
                let probe = f
                    .data
                    .and_then(|d| serde_json::from_str::<ProbeFields>(d.get()).ok());
                match probe {
                    Some(p) => Incoming::Relay {
                        from: f.from.as_deref().unwrap_or_default().to_owned(),
                        seq: p.seq,
                        ts_us: p.ts,
                    },
                    None => Incoming::Other,
                }
            }
            "peer-joined" => Incoming::PeerJoined(peer()),
            "peer-left" => Incoming::PeerLeft(peer()),
            "error" => Incoming::Error(f.error_text()),
            _ => Incoming::Other,
        }
    }

    fn leave(&self, _room: &str, _me: &str) -> Vec<String> {
        vec![json!({"type": "leave"}).to_string()]
    }

    fn announces_leave(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PeerSpec {
        PeerSpec {
            room: "ABC-123".into(),
            id: "p1".into(),
            creates_room: true,
        }
    }

    #[test]
    fn url_carries_the_room() {
        assert_eq!(
            Rendezvous.url("ws://127.0.0.1:3000/ws", "ABC-123"),
            "ws://127.0.0.1:3000/ws?room=ABC-123"
        );
    }

    #[test]
    fn join_is_acknowledged_by_ready() {
        let d = Rendezvous;
        let hello: serde_json::Value = serde_json::from_str(&d.hello(&spec())[0]).unwrap();
        assert_eq!(hello, json!({"type": "join", "peerId": "p1"}));
        assert_eq!(
            d.on_join_frame(&spec(), r#"{"type":"ready","selfId":"p1","peers":[]}"#)
                .unwrap(),
            JoinStep::Joined {
                self_id: "p1".into()
            }
        );
        let err = d
            .on_join_frame(
                &spec(),
                r#"{"type":"error","code":"room_full","message":"room is full"}"#,
            )
            .unwrap_err();
        assert!(err.to_string().contains("room_full: room is full"), "{err}");
    }

    #[test]
    fn signal_round_trip() {
        let d = Rendezvous;
        let sent: serde_json::Value =
            serde_json::from_str(&d.relay("r", "p1", "p2", Probe { seq: 3, ts_us: 4 })).unwrap();
        assert_eq!(sent["type"], "signal");
        assert_eq!(sent["to"], "p2");
        assert_eq!(sent["data"]["type"], "offer");
        let received =
            json!({"type": "signal", "from": "p1", "data": sent["data"].clone()}).to_string();
        assert_eq!(
            d.parse(&received),
            Incoming::Relay {
                from: "p1".into(),
                seq: 3,
                ts_us: 4
            }
        );
        assert_eq!(
            d.parse(r#"{"type":"peer-left","peerId":"p2"}"#),
            Incoming::PeerLeft("p2".into())
        );
        assert_eq!(
            d.parse(r#"{"type":"peer-joined","peerId":"p2"}"#),
            Incoming::PeerJoined("p2".into())
        );
        assert_eq!(d.leave("r", "p1"), vec![r#"{"type":"leave"}"#]);
    }
}
