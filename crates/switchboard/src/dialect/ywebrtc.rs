//! The y-webrtc signaling dialect (`yjs/y-webrtc` `bin/server.js`), served as a WebSocket at
//! `/y-webrtc` on the HTTP port.
//!
//! Client frames (JSON text): `{type:"subscribe",topics:[..]}`,
//! `{type:"unsubscribe",topics:[..]}`, `{type:"publish",topic,data}`, `{type:"ping"}`.
//! Server frames: `{type:"publish",topic,data,clients:N}` (N = the topic's subscriber count
//! when it was published, sender included), `{type:"pong"}`, and
//! `{type:"error",code,message}` (the original has no error frame; y-webrtc clients ignore
//! types they do not know, so these are safe to send).
//!
//! Each topic is a core room named `y-webrtc/<topic>` (so topics never collide with the
//! rooms of the other dialects), created on first subscribe and removed when its last
//! subscriber leaves. One connection holds up to [`MAX_TOPICS`] topics.
//!
//! Departures from the original, on purpose: a publish reaches the topic's *other*
//! subscribers (the original echoed it to the sender too); publishing to a topic the
//! connection has not subscribed to is refused with an error frame (the original delivered
//! it to the subscribers); malformed JSON, a missing `type`, an unknown `type`, and
//! non-array `topics` get an error frame instead of crashing the process. Non-string or
//! empty entries in `topics` are skipped.

use std::borrow::Cow;
use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::{
    CreateOptions, DialectTag, Envelope, Event, JoinMode, RoomId, Signal, SignalKind, Target,
};

use super::{Codec, Decoded, NULL, Out, push_json_str, raw_slice, signal_body, tags};
use crate::command::{
    Claim, Command, CommandError, Join, Leave, PeerChoice, Relay, Reply, Scope, truncate,
};

/// Topics one connection may subscribe to at once.
pub const MAX_TOPICS: usize = 64;
/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// The room-id prefix of y-webrtc topics.
pub const ROOM_PREFIX: &str = "y-webrtc/";

/// One y-webrtc connection's codec.
#[derive(Debug, Default)]
pub struct YWebrtc {
    /// A valid message has arrived (in production the first must come within
    /// `AUTH_TIMEOUT`).
    spoke: bool,
}

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "super::opt_str")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    topics: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "super::opt_str")]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The room that holds `topic`.
pub fn topic_room(topic: &str) -> RoomId {
    RoomId::new(&format!("{ROOM_PREFIX}{topic}"))
}

/// The string entries of `topics` (non-strings and empty strings skipped).
fn topics(msg: &Inbound<'_>) -> Result<Vec<String>, CommandError> {
    let usage = "Expected \"topics\": an array of strings";
    let raw = msg.topics.ok_or(CommandError::MissingFields(usage))?;
    let list: Vec<serde_json::Value> =
        serde_json::from_str(raw.get()).map_err(|_| CommandError::BadPayload(usage.to_owned()))?;
    Ok(list
        .into_iter()
        .filter_map(|v| match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        })
        .collect())
}

fn subscribe(topic: String) -> Command {
    if topic.len() > MAX_TOPIC_LEN {
        return Command::Refuse(CommandError::RoomNameTooLong(MAX_TOPIC_LEN));
    }
    Command::Join(Join {
        room: Some(topic_room(&topic)),
        peer: PeerChoice::Connection,
        claim: Claim::None,
        mode: JoinMode::CreateOrJoin,
        name: None,
        create: CreateOptions {
            name: Some(topic.into()),
            empty_grace: Some(Duration::ZERO),
            ..CreateOptions::default()
        },
        scope: Scope::Many { max: MAX_TOPICS },
        rejoin: false,
    })
}

fn decode(frame: &Bytes) -> Decoded {
    let Ok(text) = std::str::from_utf8(frame) else {
        return Decoded::err("unknown", CommandError::BadJson);
    };
    let msg: Inbound<'_> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) if e.is_data() => return Decoded::err("unknown", CommandError::BadMessage),
        Err(_) => return Decoded::err("unknown", CommandError::BadJson),
    };
    let Some(kind) = msg.kind.as_deref() else {
        return Decoded::err("unknown", CommandError::MissingType);
    };
    match kind {
        "subscribe" => Decoded {
            label: "subscribe",
            command: topics(&msg).map(|t| Command::Each(t.into_iter().map(subscribe).collect())),
        },
        "unsubscribe" => Decoded {
            label: "unsubscribe",
            command: topics(&msg).map(|t| {
                Command::Each(
                    t.iter()
                        .map(|topic| {
                            Command::Leave(Leave {
                                room: Some(topic_room(topic)),
                                claim: Claim::None,
                                quiet: true,
                            })
                        })
                        .collect(),
                )
            }),
        },
        "publish" => Decoded {
            label: "publish",
            command: match msg.topic.as_deref() {
                None => Err(CommandError::MissingFields(
                    "publish needs a string \"topic\"",
                )),
                Some(topic) => Ok(Command::Relay(Relay {
                    room: Some(topic_room(topic)),
                    target: Target::Room,
                    kind: SignalKind::Publish,
                    payload: msg.data.map_or(NULL, |d| raw_slice(frame, d)),
                    claim: Claim::None,
                })),
            },
        },
        "ping" => Decoded::ok("ping", Command::Heartbeat { claim: Claim::None }),
        other => Decoded::err(
            "unknown",
            CommandError::UnknownType(truncate(other).to_owned()),
        ),
    }
}

impl Codec for YWebrtc {
    const NAME: &'static str = "ywebrtc";
    const TAG: DialectTag = tags::YWEBRTC;

    fn decode(&mut self, frame: &Bytes, _binary: bool) -> Decoded {
        let d = decode(frame);
        self.spoke |= d.command.is_ok();
        d
    }

    fn encode_event(&mut self, env: &Envelope) -> Out {
        match &env.event {
            Event::Signal(s) if s.room.as_str().starts_with(ROOM_PREFIX) => {
                Out::Frame(env.render(Self::TAG, render_event))
            }
            // y-webrtc has no membership frames; a closed topic just stops.
            _ => Out::None,
        }
    }

    fn encode_reply(&mut self, reply: &Reply) -> Out {
        match reply {
            Reply::Heartbeat { .. } => Out::Frame(Bytes::from_static(br#"{"type":"pong"}"#)),
            _ => Out::None,
        }
    }

    fn encode_error(&mut self, e: &CommandError) -> Out {
        let (code, message): (&str, Cow<'_, str>) = match e {
            CommandError::TooManyRoomsPerConnection(n) => (
                "too_many_topics",
                format!("A connection may subscribe to at most {n} topics").into(),
            ),
            CommandError::RoomFull { capacity } => (
                "topic_full",
                format!("Topic is full ({capacity} subscribers)").into(),
            ),
            CommandError::RoomNameTooLong(n) => (
                "topic_too_long",
                format!("Topic names are limited to {n} bytes").into(),
            ),
            CommandError::NotInRoom(room) => (
                "not_subscribed",
                format!(
                    "Not subscribed to topic {}",
                    truncate(room.as_ref().map_or("", |r| topic_of(r)))
                )
                .into(),
            ),
            CommandError::Overloaded => (
                "overloaded",
                "Server is not accepting new topics right now".into(),
            ),
            CommandError::MissingFields(m) if m.contains("topics") => {
                ("missing_topics", (*m).into())
            }
            CommandError::BadPayload(m) => ("bad_topics", m.as_str().into()),
            CommandError::MissingFields(m) => ("missing_topic", (*m).into()),
            CommandError::BadJson => ("bad_json", "Invalid JSON".into()),
            CommandError::BadMessage => (
                "bad_message",
                "Expected a JSON object with a string \"type\"".into(),
            ),
            other => (other.code(), other.to_string().into()),
        };
        Out::Frame(error_frame(code, &message))
    }

    fn established(&self) -> bool {
        self.spoke
    }

    fn establish_timeout_reason(&self) -> &'static str {
        "no message in time"
    }
}

fn topic_of(room: &RoomId) -> &str {
    room.as_str()
        .strip_prefix(ROOM_PREFIX)
        .unwrap_or(room.as_str())
}

fn error_frame(code: &str, message: &str) -> Bytes {
    let mut buf = Vec::with_capacity(64 + message.len());
    buf.extend_from_slice(br#"{"type":"error","code":"#);
    push_json_str(&mut buf, code);
    buf.extend_from_slice(br#","message":"#);
    push_json_str(&mut buf, message);
    buf.push(b'}');
    Bytes::from(buf)
}

/// A publish frame: `{"type":"publish","topic":T,"data":D,"clients":N}`. A y-webrtc
/// publisher's `data` goes as it came; another dialect's signal (one that named a
/// `y-webrtc/` room) goes as its body.
fn render_event(event: &Event) -> Bytes {
    let Event::Signal(s) = event else {
        return Bytes::new();
    };
    publish_frame(s)
}

fn publish_frame(s: &Signal) -> Bytes {
    let data = if s.origin == tags::YWEBRTC {
        Cow::Borrowed(&s.payload[..])
    } else {
        signal_body(s)
    };
    let mut buf = Vec::with_capacity(data.len() + 64);
    buf.extend_from_slice(br#"{"type":"publish","topic":"#);
    push_json_str(&mut buf, topic_of(&s.room));
    buf.extend_from_slice(br#","data":"#);
    buf.extend_from_slice(&data);
    buf.extend_from_slice(br#","clients":"#);
    let _ = write!(buf, "{}", s.audience);
    buf.push(b'}');
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_decodes_one_join_per_topic_and_refuses_long_names_in_place() {
        let long = "x".repeat(MAX_TOPIC_LEN + 1);
        let frame = Bytes::from(format!(
            r#"{{"type":"subscribe","topics":["a",3,"",{long:?},"b"]}}"#
        ));
        let Ok(Command::Each(cmds)) = decode(&frame).command else {
            panic!()
        };
        assert_eq!(cmds.len(), 3, "non-strings and empty names are skipped");
        assert!(matches!(&cmds[0], Command::Join(j) if j.room == Some(RoomId::new("y-webrtc/a"))));
        assert!(matches!(
            &cmds[1],
            Command::Refuse(CommandError::RoomNameTooLong(256))
        ));
        assert!(matches!(&cmds[2], Command::Join(_)));
    }

    #[test]
    fn a_publish_renders_with_topic_data_and_clients() {
        let s = Signal {
            room: topic_room("doc"),
            from: "y-c1".into(),
            to: None,
            kind: SignalKind::Publish,
            payload: Bytes::from_static(br#"{"x":1}"#),
            origin: tags::YWEBRTC,
            audience: 3,
        };
        assert_eq!(
            publish_frame(&s),
            r#"{"type":"publish","topic":"doc","data":{"x":1},"clients":3}"#
        );
        assert_eq!(
            YWebrtc::default().encode_error(&CommandError::NotInRoom(Some(topic_room("doc")))),
            Out::Frame(Bytes::from_static(
                br#"{"type":"error","code":"not_subscribed","message":"Not subscribed to topic doc"}"#
            ))
        );
    }
}
