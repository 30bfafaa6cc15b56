//! Socket.io v4 (Engine.IO v4 over its WebSocket transport): Switchboard's Vibe dialect
//! (seed 003) at `ws://HOST:PORT/socket.io/?EIO=4&transport=websocket`.
//!
//! Rooms exist only once made with `POST /api/rooms` on the same listener, which names them
//! (`{"roomId":"<uuid>"}`); the scenarios do that before the first peer joins
//! ([`Dialect::needs_room_created`]) and the peers join the returned id.
//!
//! Join: the server opens with Engine.IO's `0{"sid",...}`; the client connects to the
//! default namespace with `40`, the server answers `40{"sid"}` (or `44{"message"}`, a
//! refusal), the client emits `42["join-room",{"roomId","userId"}]` and the server
//! acknowledges with `42["room-users",{"participants","roomId"}]` (then the same as
//! `room-participants`). The others get `42["user-joined",{"userId","roomId"}]`, and
//! `user-left` when one goes. Relay: `42["offer",{"roomId","targetUserId","offer"}]`
//! arrives as `42["offer",{"userId","targetUserId","roomId","offer"}]`; the benchmark fields
//! ride in `offer`. Errors: `42["error",{"message"}]`. Leave: `leave-room {roomId}`.
//!
//! Engine.IO's heartbeat: the server sends `2` every 25 s and drops a client that has not
//! answered `3` within 20 s more, so held connections answer it ([`Dialect::reply`]).

use std::borrow::Cow;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{Dialect, Incoming, JoinStep, OfferPayload, PeerSpec, Probe, ProbeFields, to_json};
use crate::net::{with_path_segment, with_query};

/// The Socket.io dialect.
#[derive(Debug, Clone, Copy)]
pub struct SocketIo;

/// Engine.IO packet types (the first character of a frame).
const EIO_OPEN: &str = "0";
const EIO_PING: &str = "2";
const EIO_PONG: &str = "3";
/// Engine.IO message + Socket.io packet type.
const SIO_CONNECT: &str = "40";
const SIO_DISCONNECT: &str = "41";
const SIO_EVENT: &str = "42";
const SIO_CONNECT_ERROR: &str = "44";

/// A server event's single argument, as far as the benchmark reads it.
#[derive(Deserialize)]
struct Args<'a> {
    #[serde(rename = "userId", borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(default)]
    offer: Option<ProbeFields>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// `["event", {args}]`: every event the server emits has one argument.
#[derive(Deserialize)]
struct Event<'a>(#[serde(borrow)] Cow<'a, str>, #[serde(borrow)] Args<'a>);

#[derive(Serialize)]
struct RoomArgs<'a> {
    #[serde(rename = "roomId")]
    room: &'a str,
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct OfferArgs<'a> {
    #[serde(rename = "roomId")]
    room: &'a str,
    #[serde(rename = "targetUserId")]
    target: &'a str,
    offer: OfferPayload<'a>,
}

/// `42["name",args]`.
fn emit(name: &str, args: &impl Serialize) -> String {
    format!("{SIO_EVENT}[\"{name}\",{}]", to_json(args))
}

/// The event in a `42[...]` frame, if it is one the benchmark can read.
fn event(frame: &str) -> Option<Event<'_>> {
    serde_json::from_str(frame.strip_prefix(SIO_EVENT)?).ok()
}

/// The `message` of a `44{...}` connect error (or the frame itself when unreadable).
fn connect_error(frame: &str) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        message: String,
    }
    let body = frame.strip_prefix(SIO_CONNECT_ERROR).unwrap_or(frame);
    serde_json::from_str::<Refusal>(body).map_or_else(|_| frame.to_owned(), |r| r.message)
}

impl Dialect for SocketIo {
    fn name(&self) -> &'static str {
        "socketio"
    }

    fn room_capacity(&self) -> Option<usize> {
        None
    }

    fn needs_room_created(&self) -> bool {
        true
    }

    /// `base` as given when it already names Engine.IO (`EIO=`), else `base` with
    /// `socket.io/?EIO=4&transport=websocket` appended.
    fn url(&self, base: &str, _room: &str) -> String {
        if base.contains("EIO=") {
            return base.to_owned();
        }
        let path = with_path_segment(base, "socket.io/");
        with_query(&with_query(&path, "EIO", "4"), "transport", "websocket")
    }

    fn hello(&self, _peer: &PeerSpec) -> Vec<String> {
        // The server speaks first (Engine.IO open).
        vec![]
    }

    fn on_join_frame(&self, peer: &PeerSpec, frame: &str) -> Result<JoinStep> {
        if frame.starts_with(SIO_EVENT) {
            return Ok(match event(frame) {
                Some(Event(name, _)) if name == "room-users" => JoinStep::Joined {
                    self_id: peer.id.clone(),
                },
                Some(Event(name, args)) if name == "error" => {
                    bail!("join refused: {}", args.message.as_deref().unwrap_or(frame))
                }
                _ => JoinStep::Continue(vec![]),
            });
        }
        if frame.starts_with(SIO_CONNECT_ERROR) {
            bail!("connect refused: {}", connect_error(frame));
        }
        Ok(JoinStep::Continue(if frame.starts_with(SIO_CONNECT) {
            // Connected to the namespace: now the room.
            let join = RoomArgs {
                room: &peer.room,
                user: Some(&peer.id),
            };
            vec![emit("join-room", &join)]
        } else if frame.starts_with(EIO_OPEN) {
            vec![SIO_CONNECT.to_owned()]
        } else if frame == EIO_PING {
            vec![EIO_PONG.to_owned()]
        } else {
            vec![]
        }))
    }

    fn relay(&self, room: &str, from: &str, to: &str, probe: Probe) -> String {
        let offer = OfferArgs {
            room,
            target: to,
            offer: OfferPayload::new(from, probe),
        };
        emit("offer", &offer)
    }

    fn reply(&self, frame: &str) -> Option<String> {
        (frame == EIO_PING).then(|| EIO_PONG.to_owned())
    }

    fn parse(&self, frame: &str) -> Incoming {
        let Some(Event(name, args)) = event(frame) else {
            return if frame.starts_with(SIO_DISCONNECT) {
                Incoming::Error("disconnected from the namespace by the server".to_owned())
            } else {
                Incoming::Other
            };
        };
        match (&*name, args) {
            (
                "offer",
                Args {
                    user: Some(from),
                    offer: Some(ProbeFields { seq, ts }),
                    ..
                },
            ) => Incoming::Relay {
                from: from.into_owned(),
                seq,
                ts_us: ts,
            },
            ("user-joined", Args { user: Some(id), .. }) => Incoming::PeerJoined(id.into_owned()),
            ("user-left", Args { user: Some(id), .. }) => Incoming::PeerLeft(id.into_owned()),
            ("error", args) => Incoming::Error(
                args.message
                    .map_or_else(|| frame.to_owned(), Cow::into_owned),
            ),
            _ => Incoming::Other,
        }
    }

    fn leave(&self, room: &str, _me: &str) -> Vec<String> {
        vec![emit("leave-room", &RoomArgs { room, user: None })]
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
            room: "6f1c".into(),
            id: "alice".into(),
            creates_room: false,
        }
    }

    #[test]
    fn url_names_the_websocket_transport() {
        let d = SocketIo;
        assert_eq!(
            d.url("ws://127.0.0.1:4000/", "r"),
            "ws://127.0.0.1:4000/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            d.url("ws://127.0.0.1:4000", "r"),
            "ws://127.0.0.1:4000/socket.io/?EIO=4&transport=websocket"
        );
        let full = "ws://127.0.0.1:4000/socket.io/?EIO=4&transport=websocket";
        assert_eq!(d.url(full, "r"), full);
    }

    #[test]
    fn join_is_open_connect_join_room() {
        let d = SocketIo;
        let spec = spec();
        assert!(d.hello(&spec).is_empty());
        let step = |frame: &str| d.on_join_frame(&spec, frame).unwrap();
        assert_eq!(
            step(
                r#"0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
            ),
            JoinStep::Continue(vec!["40".into()])
        );
        let JoinStep::Continue(frames) = step(r#"40{"sid":"y"}"#) else {
            panic!("joined too early")
        };
        assert_eq!(frames.len(), 1);
        let join: serde_json::Value = serde_json::from_str(&frames[0][2..]).unwrap();
        assert!(frames[0].starts_with("42"));
        assert_eq!(
            join,
            serde_json::json!(["join-room", {"roomId": "6f1c", "userId": "alice"}])
        );
        assert_eq!(step("2"), JoinStep::Continue(vec!["3".into()]));
        assert_eq!(
            step(r#"42["user-joined",{"userId":"bob","roomId":"6f1c"}]"#),
            JoinStep::Continue(vec![])
        );
        assert_eq!(
            step(r#"42["room-users",{"participants":["bob"],"roomId":"6f1c"}]"#),
            JoinStep::Joined {
                self_id: "alice".into()
            }
        );
    }

    #[test]
    fn refusals_fail_the_join() {
        let d = SocketIo;
        let e = d
            .on_join_frame(&spec(), r#"42["error",{"message":"Room not found"}]"#)
            .unwrap_err();
        assert!(e.to_string().contains("Room not found"), "{e}");
        let e = d
            .on_join_frame(&spec(), r#"44{"message":"Too many connections"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("Too many connections"), "{e}");
    }

    #[test]
    fn offer_round_trip() {
        let d = SocketIo;
        let sent = d.relay("6f1c", "alice", "bob", Probe { seq: 7, ts_us: 99 });
        assert!(sent.starts_with(r#"42["offer",{"roomId":"6f1c","targetUserId":"bob","offer":"#));
        let mut v: serde_json::Value = serde_json::from_str(&sent[2..]).unwrap();
        assert_eq!(v[1]["offer"]["type"], "offer");
        assert_eq!(v[1]["offer"]["seq"], 7);
        assert_eq!(v[1]["offer"]["ts"], 99);
        // The server relays it with the sender's name as `userId`.
        v[1]["userId"] = "alice".into();
        let received = format!("42{v}");
        assert_eq!(
            d.parse(&received),
            Incoming::Relay {
                from: "alice".into(),
                seq: 7,
                ts_us: 99
            }
        );
        // An offer from a real client (no benchmark fields) is not a probe.
        assert_eq!(
            d.parse(
                r#"42["offer",{"userId":"x","roomId":"r","offer":{"type":"offer","sdp":"v=0"}}]"#
            ),
            Incoming::Other
        );
    }

    #[test]
    fn announcements_errors_and_pings() {
        let d = SocketIo;
        assert_eq!(
            d.parse(r#"42["user-joined",{"userId":"bob","roomId":"r"}]"#),
            Incoming::PeerJoined("bob".into())
        );
        assert_eq!(
            d.parse(r#"42["user-left",{"userId":"bob","roomId":"r"}]"#),
            Incoming::PeerLeft("bob".into())
        );
        assert_eq!(
            d.parse(r#"42["error",{"message":"User bob not found in room"}]"#),
            Incoming::Error("User bob not found in room".into())
        );
        assert!(matches!(d.parse("41"), Incoming::Error(_)));
        assert_eq!(
            d.parse(r#"42["room-participants",{"participants":[],"roomId":"r"}]"#),
            Incoming::Other
        );
        assert_eq!(d.parse("2"), Incoming::Other);
        assert_eq!(d.reply("2"), Some("3".into()));
        assert_eq!(d.reply(r#"42["user-left",{"userId":"2"}]"#), None);
        assert_eq!(
            d.leave("6f1c", "alice"),
            vec![r#"42["leave-room",{"roomId":"6f1c"}]"#.to_owned()]
        );
    }
}
