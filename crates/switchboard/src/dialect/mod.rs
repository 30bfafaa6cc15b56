//! Dialect codecs: one module per wire dialect, each turning its frames into
//! [`Command`]s and rendering [`Reply`]s, [`CommandError`]s and core [`Event`]s back into its
//! frames. No sockets, no HTTP, no registry calls: the transports
//! ([`crate::transport`]) feed them frames and write what they return, and the command
//! layer ([`crate::command`]) executes what they decode, so each codec can be tested frame
//! by frame (bytes in → command; event → exact bytes out).
//!
//! Signals cross dialects through a neutral *body*: the SDP description or ICE candidate
//! object itself. [`signal_body`] extracts it from whatever dialect produced a payload; each
//! codec wraps it in its own envelope.
//!
//! [`Event`]: switchboard_core::Event

pub mod nt;
pub mod octate;
pub mod rendezvous;
pub mod socketio;
pub mod ywebrtc;

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::{DialectTag, Envelope, Signal, SignalKind};

use crate::command::{Command, CommandError, Reply};
use crate::config::Config;
use crate::metrics::Metrics;

/// The dialect tags (indexes into an [`Envelope`]'s rendering cache).
/// Reads an optional JSON string as `Cow::Borrowed` from the frame when it has no escapes.
///
/// serde's `#[serde(borrow)]` borrows a `Cow<str>` field but not an `Option<Cow<str>>`:
/// those were copied into a `String`, three allocations per relayed message in the
/// rendezvous dialect (`type`, `to`, and the payload's `type`), found with the counting
/// allocator (`scripts/profile.sh`). Use as
/// `#[serde(borrow, default, deserialize_with = "super::opt_str")]`; `null` is `None`, and
/// any other type is refused as before.
pub(crate) fn opt_str<'de, D>(d: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_str(self)
        }
    }
    d.deserialize_option(Text)
}

pub mod tags {
    use switchboard_core::DialectTag;
    /// OctateCode JSON.
    pub const OCTATE: DialectTag = DialectTag(1);
    /// Socket.io (seed 003).
    pub const SOCKETIO: DialectTag = DialectTag(2);
    /// Rendezvous (seed 004 README).
    pub const RENDEZVOUS: DialectTag = DialectTag(3);
    /// nt-backend-wrtc as deployed (appID/side).
    pub const NT: DialectTag = DialectTag(4);
    /// y-webrtc topics.
    pub const YWEBRTC: DialectTag = DialectTag(5);
}

/// WebSocket close codes used across dialects (RFC 6455 §7.4.1).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Server going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Policy violation (auth, limits, protocol misuse).
    pub const POLICY: u16 = 1008;
    /// A frame that breaks the WebSocket protocol (RFC 6455 section 7.4.1).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Try again later (overloaded).
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// A decoded frame: the command, or why there is none, and the message type for metrics.
#[derive(Debug)]
pub struct Decoded {
    /// The message type, from the dialect's fixed table (`unknown` otherwise).
    pub label: &'static str,
    /// What to do.
    pub command: Result<Command, CommandError>,
}

impl Decoded {
    /// A command of type `label`.
    pub fn ok(label: &'static str, command: Command) -> Self {
        Self {
            label,
            command: Ok(command),
        }
    }

    /// A refusal of a message of type `label`.
    pub fn err(label: &'static str, e: CommandError) -> Self {
        Self {
            label,
            command: Err(e),
        }
    }
}

/// What a codec wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Nothing.
    None,
    /// One frame.
    Frame(Bytes),
    /// Several frames, in order.
    Frames(Vec<Bytes>),
    /// Close the connection, after an optional last frame.
    Close {
        /// Written before the close frame.
        frame: Option<Bytes>,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: Cow<'static, str>,
    },
}

impl Out {
    /// Hands every frame to `write`, in order; then the close it asks for, if any.
    pub fn each(self, mut write: impl FnMut(Bytes)) -> Option<(u16, Cow<'static, str>)> {
        match self {
            Self::None => None,
            Self::Frame(f) => {
                write(f);
                None
            }
            Self::Frames(frames) => {
                frames.into_iter().for_each(write);
                None
            }
            Self::Close {
                frame,
                code,
                reason,
            } => {
                frame.into_iter().for_each(write);
                Some((code, reason))
            }
        }
    }

    /// Close with `code` and `reason`, after `frame`.
    pub fn close(frame: Option<Bytes>, code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Close {
            frame,
            code,
            reason: reason.into(),
        }
    }
}

/// Something a codec may want to count in its dialect's own metrics (the nt series).
#[derive(Debug)]
pub enum Observation<'a> {
    /// A frame of this many bytes was received.
    FrameIn(usize),
    /// A frame of this many bytes was written.
    FrameOut(usize),
    /// A ping round trip, in seconds.
    Rtt(f64),
    /// A decoded message was applied.
    Applied {
        /// Its type.
        label: &'static str,
        /// Its size in bytes.
        len: usize,
        /// What came of it.
        result: &'a Result<Reply, CommandError>,
    },
}

/// One WebSocket dialect's codec, one per connection (it keeps what it must remember to
/// render: the authenticated user for error frames, whether the peer has joined, …).
pub trait Codec: Send + 'static {
    /// The dialect's name, for metrics and logs.
    const NAME: &'static str;
    /// The dialect's tag.
    const TAG: DialectTag;

    /// What the connection does as soon as it opens (dialects that join on connect), or a
    /// refusal (a wrong key). Default: nothing.
    ///
    /// # Errors
    /// Why the connection may not go on.
    fn open(&mut self) -> Result<Option<Command>, CommandError> {
        Ok(None)
    }

    /// Turns one message into a command. `binary` says which frame type it came in.
    fn decode(&mut self, frame: &Bytes, binary: bool) -> Decoded;

    /// Renders a core event for this connection. Use [`Envelope::render`] so that a
    /// broadcast is serialised once per dialect.
    fn encode_event(&mut self, envelope: &Envelope) -> Out;

    /// Renders a command's reply.
    fn encode_reply(&mut self, reply: &Reply) -> Out;

    /// Renders a refusal (and decides whether it closes the connection).
    fn encode_error(&mut self, error: &CommandError) -> Out;

    /// Whether the connection has authenticated (or joined, where that is the dialect's
    /// first step); until then the authentication deadline applies.
    fn established(&self) -> bool;

    /// The close reason when the deadline passes unestablished.
    fn establish_timeout_reason(&self) -> &'static str {
        "authentication timeout"
    }

    /// Whether the authentication deadline applies at all. Default: in production.
    fn needs_establishing(&self, config: &Config) -> bool {
        config.is_production()
    }

    /// The WebSocket ping interval. Default: `PING_INTERVAL`.
    fn ping_interval(&self, config: &Config) -> Duration {
        config.ping_interval.get()
    }

    /// Counts what the dialect's own metrics count. Default: nothing.
    fn observe(&self, _metrics: &Metrics, _what: Observation<'_>) {}
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *buf, s).expect("writing a str to a Vec cannot fail");
}

/// The raw JSON of a borrowed sub-value as a zero-copy slice of the frame it came from.
pub fn raw_slice(frame: &Bytes, raw: &RawValue) -> Bytes {
    frame.slice_ref(raw.get().as_bytes())
}

/// `null`, for absent payloads.
pub const NULL: Bytes = Bytes::from_static(b"null");

/// The neutral body of a signal: the SDP description or ICE candidate object, extracted
/// from the payload of whichever dialect sent it.
pub fn signal_body(s: &Signal) -> Cow<'_, [u8]> {
    #[derive(Deserialize)]
    struct Keyed<'a> {
        #[serde(borrow, default)]
        offer: Option<&'a RawValue>,
        #[serde(borrow, default)]
        answer: Option<&'a RawValue>,
        #[serde(borrow, default)]
        candidate: Option<&'a RawValue>,
        #[serde(borrow, default)]
        sdp: Option<&'a RawValue>,
        #[serde(borrow, default)]
        cand: Option<&'a RawValue>,
    }
    let payload: &[u8] = &s.payload;
    // OctateCode nests the body under a key named for its kind ({peer, offer:{…}}); the
    // nt dialect carries it as `sdp`/`cand` of the whole frame. Socket.io, rendezvous and
    // y-webrtc payloads are the body already.
    if (s.origin == tags::OCTATE || s.origin == tags::NT)
        && let Ok(k) = serde_json::from_slice::<Keyed<'_>>(payload)
    {
        let pick = match s.kind {
            SignalKind::Offer => k.offer.or(k.sdp),
            SignalKind::Answer => k.answer.or(k.sdp),
            SignalKind::Candidate => k.candidate.or(k.cand),
            _ => None,
        };
        if let Some(raw) = pick {
            return Cow::Owned(raw.get().as_bytes().to_vec());
        }
    }
    Cow::Borrowed(payload)
}

/// The OctateCode/Socket.io key a body travels under for a kind (`offer`, `answer`,
/// `candidate`), if the kind has one.
pub fn body_key(kind: &SignalKind) -> Option<&'static str> {
    match kind {
        SignalKind::Offer => Some("offer"),
        SignalKind::Answer => Some("answer"),
        SignalKind::Candidate => Some("candidate"),
        _ => None,
    }
}

/// A signal kind's OctateCode-style message type (`sdp-offer`, `ice-candidate`, …).
pub fn kind_name(kind: &SignalKind) -> Cow<'static, str> {
    Cow::Borrowed(match kind {
        SignalKind::Offer => "sdp-offer",
        SignalKind::Answer => "sdp-answer",
        SignalKind::Candidate => "ice-candidate",
        SignalKind::Presence => "presence",
        SignalKind::Cursor => "cursor-update",
        SignalKind::Generic => "signal",
        SignalKind::Publish => "publish",
        SignalKind::Mailbox(_) => "send",
        SignalKind::Other(name) => return Cow::Owned(name.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Frame<'a> {
        #[serde(borrow, default, deserialize_with = "super::opt_str")]
        to: Option<Cow<'a, str>>,
    }

    fn to(json: &str) -> Result<Option<Cow<'_, str>>, serde_json::Error> {
        serde_json::from_str::<Frame<'_>>(json).map(|f| f.to)
    }

    #[test]
    fn an_optional_string_is_borrowed_from_the_frame_unless_it_has_escapes() {
        assert!(matches!(
            to(r#"{"to":"bob"}"#),
            Ok(Some(Cow::Borrowed("bob")))
        ));
        match to(r#"{"to":"b\u006fb\n"}"#) {
            Ok(Some(Cow::Owned(s))) => assert_eq!(s, "bob\n"),
            other => panic!("escaped string read as {other:?}"),
        }
        assert!(matches!(to(r#"{"to":null}"#), Ok(None)));
        assert!(matches!(to("{}"), Ok(None)));
        assert!(to(r#"{"to":7}"#).is_err(), "a number is not a string");
        assert!(to(r#"{"to":["bob"]}"#).is_err(), "an array is not a string");
    }
}
