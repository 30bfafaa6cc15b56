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
use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::{
    CreateOptions, DialectTag, Envelope, Event, JoinError, JoinMode, JoinOptions, Membership,
    PeerId, RelayError, RoomId, SignalKind, Target,
};

use super::{Context, Flow, Session, push_json_str, raw_slice, tags};

/// Topics one connection may subscribe to at once.
pub const MAX_TOPICS: usize = 64;
/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// The room-id prefix of y-webrtc topics.
pub const ROOM_PREFIX: &str = "y-webrtc/";

/// One y-webrtc connection.
#[derive(Debug, Default)]
pub struct YWebrtcSession {
    /// Topic name → the membership of its room.
    topics: HashMap<String, Membership>,
}

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    topics: Option<&'a RawValue>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The room that holds `topic`.
pub fn topic_room(topic: &str) -> RoomId {
    RoomId::new(&format!("{ROOM_PREFIX}{topic}"))
}

fn error(code: &str, message: &str) -> Bytes {
    let mut buf = Vec::with_capacity(64 + message.len());
    buf.extend_from_slice(br#"{"type":"error","code":"#);
    push_json_str(&mut buf, code);
    buf.extend_from_slice(br#","message":"#);
    push_json_str(&mut buf, message);
    buf.push(b'}');
    Bytes::from(buf)
}

impl YWebrtcSession {
    /// A connection with no topics.
    pub fn new() -> Self {
        Self::default()
    }

    /// The topics this connection is subscribed to.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    fn handle(&mut self, cx: &Context<'_>, frame: &Bytes) -> Result<(), (&'static str, String)> {
        let text =
            std::str::from_utf8(frame).map_err(|_| ("bad_json", "Invalid JSON".to_owned()))?;
        let msg: Inbound<'_> = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                (
                    "bad_message",
                    "Expected a JSON object with a string \"type\"".to_owned(),
                )
            } else {
                ("bad_json", "Invalid JSON".to_owned())
            }
        })?;
        let Some(kind) = msg.kind.as_deref() else {
            return Err(("missing_type", "Missing message type".to_owned()));
        };
        let label = match kind {
            "subscribe" => "subscribe",
            "unsubscribe" => "unsubscribe",
            "publish" => "publish",
            "ping" => "ping",
            _ => "unknown",
        };
        cx.app.metrics.message(Self::NAME, label);
        match kind {
            "subscribe" => self.subscribe(cx, &msg),
            "unsubscribe" => {
                for topic in topics(&msg)? {
                    if let Some(m) = self.topics.remove(&topic) {
                        drop(m);
                    }
                }
                Ok(())
            }
            "publish" => self.publish(cx, &msg, frame),
            "ping" => {
                cx.reply(Bytes::from_static(br#"{"type":"pong"}"#));
                Ok(())
            }
            other => Err((
                "unknown_type",
                format!("Unknown message type: {}", truncate(other)),
            )),
        }
    }

    fn subscribe(
        &mut self,
        cx: &Context<'_>,
        msg: &Inbound<'_>,
    ) -> Result<(), (&'static str, String)> {
        let peer = PeerId::new(&format!("y-{}", cx.handle.conn()));
        for topic in topics(msg)? {
            if self.topics.contains_key(&topic) {
                continue;
            }
            if topic.len() > MAX_TOPIC_LEN {
                return Err((
                    "topic_too_long",
                    format!("Topic names are limited to {MAX_TOPIC_LEN} bytes"),
                ));
            }
            if self.topics.len() >= MAX_TOPICS {
                cx.app.metrics.limit("topics");
                return Err((
                    "too_many_topics",
                    format!("A connection may subscribe to at most {MAX_TOPICS} topics"),
                ));
            }
            let opts = JoinOptions {
                mode: JoinMode::CreateOrJoin,
                name: None,
                create: CreateOptions {
                    name: Some(topic.as_str().into()),
                    empty_grace: Some(Duration::ZERO),
                    creator: Some(cx.client),
                    ..CreateOptions::default()
                },
            };
            match cx
                .app
                .registry
                .join(topic_room(&topic), peer.clone(), cx.handle.clone(), opts)
            {
                Ok(m) => {
                    self.topics.insert(topic, m);
                }
                Err(e) => {
                    let (code, message) = match e {
                        JoinError::RoomFull { capacity, .. } => {
                            cx.app.metrics.limit("room_full");
                            (
                                "topic_full",
                                format!("Topic is full ({capacity} subscribers)"),
                            )
                        }
                        JoinError::TooManyRooms(n) => {
                            cx.app.metrics.limit("rooms");
                            ("too_many_rooms", format!("Room limit reached ({n} rooms)"))
                        }
                        JoinError::NotAdmitting => {
                            cx.app.metrics.limit("memory");
                            (
                                "overloaded",
                                "Server is not accepting new topics right now".to_owned(),
                            )
                        }
                        JoinError::CreationRateLimited => {
                            cx.app.metrics.limit("room_creations");
                            ("creation_rate_limited", e.to_string())
                        }
                        other => ("subscribe_failed", other.to_string()),
                    };
                    return Err((code, message));
                }
            }
        }
        Ok(())
    }

    fn publish(
        &mut self,
        cx: &Context<'_>,
        msg: &Inbound<'_>,
        frame: &Bytes,
    ) -> Result<(), (&'static str, String)> {
        let Some(topic) = msg.topic.as_deref() else {
            return Err((
                "missing_topic",
                "publish needs a string \"topic\"".to_owned(),
            ));
        };
        let Some(m) = self.topics.get(topic) else {
            return Err((
                "not_subscribed",
                format!("Not subscribed to topic {}", truncate(topic)),
            ));
        };
        let clients = cx
            .app
            .registry
            .room(m.room())
            .map_or(1, |r| r.members.len());
        // The payload is the finished y-webrtc frame: every recipient gets the same bytes.
        let data = msg
            .data
            .map_or(Bytes::from_static(b"null"), |d| raw_slice(frame, d));
        let mut buf = Vec::with_capacity(data.len() + topic.len() + 64);
        buf.extend_from_slice(br#"{"type":"publish","topic":"#);
        push_json_str(&mut buf, topic);
        buf.extend_from_slice(br#","data":"#);
        buf.extend_from_slice(&data);
        buf.extend_from_slice(br#","clients":"#);
        buf.extend_from_slice(clients.to_string().as_bytes());
        buf.push(b'}');
        match cx.app.registry.relay(
            m,
            Target::Room,
            SignalKind::Publish,
            Bytes::from(buf),
            tags::YWEBRTC,
        ) {
            Ok(_) | Err(RelayError::Undelivered(_)) => Ok(()),
            Err(RelayError::NotInRoom(_)) => {
                self.topics.remove(topic);
                Err((
                    "not_subscribed",
                    format!("Not subscribed to topic {}", truncate(topic)),
                ))
            }
            Err(RelayError::PeerNotFound(_)) => Ok(()),
        }
    }
}

/// The string entries of `topics` (non-strings and empty strings skipped).
fn topics(msg: &Inbound<'_>) -> Result<Vec<String>, (&'static str, String)> {
    let raw = msg.topics.ok_or((
        "missing_topics",
        "Expected \"topics\": an array of strings".to_owned(),
    ))?;
    let list: Vec<serde_json::Value> = serde_json::from_str(raw.get()).map_err(|_| {
        (
            "bad_topics",
            "Expected \"topics\": an array of strings".to_owned(),
        )
    })?;
    Ok(list
        .into_iter()
        .filter_map(|v| match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        })
        .collect())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Session for YWebrtcSession {
    const NAME: &'static str = "ywebrtc";
    const TAG: DialectTag = tags::YWEBRTC;

    fn on_text(&mut self, cx: &Context<'_>, text: Bytes) -> Flow {
        if let Err((code, message)) = self.handle(cx, &text) {
            cx.app.metrics.error(code);
            cx.reply(error(code, &message));
        }
        Flow::Continue
    }

    fn render(&mut self, env: &Envelope) -> Option<Bytes> {
        match &env.event {
            Event::Signal(s) if s.origin == tags::YWEBRTC => Some(s.payload.clone()),
            Event::Signal(s) => {
                // Only y-webrtc connections join `y-webrtc/` rooms, but render anything else
                // as a publish of its body rather than drop it.
                let topic = s.room.as_str().strip_prefix(ROOM_PREFIX)?;
                let body = super::signal_body(s);
                let mut buf = Vec::with_capacity(body.len() + 64);
                buf.extend_from_slice(br#"{"type":"publish","topic":"#);
                push_json_str(&mut buf, topic);
                buf.extend_from_slice(br#","data":"#);
                buf.extend_from_slice(&body);
                buf.push(b'}');
                Some(Bytes::from(buf))
            }
            Event::RoomClosed { room, .. } => {
                if let Some(topic) = room.as_str().strip_prefix(ROOM_PREFIX) {
                    self.topics.remove(topic);
                }
                None
            }
            // y-webrtc has no membership frames.
            Event::Joined { .. } | Event::PeerJoined { .. } | Event::PeerLeft { .. } => None,
        }
    }

    fn error_frame(&self, code: &'static str, message: &str) -> Bytes {
        error(code, message)
    }

    fn is_established(&self) -> bool {
        true
    }

    fn needs_establishing(&self, _app: &crate::state::AppState) -> bool {
        false
    }
}
