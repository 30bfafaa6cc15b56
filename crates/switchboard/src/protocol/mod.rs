//! Protocol adapters: one module per wire dialect. Each turns inbound frames into calls on
//! the core [`Registry`](switchboard_core::Registry) and renders core
//! [`Event`](switchboard_core::Event)s back into its own frames. None of them touches a
//! socket: the WebSocket driver in [`crate::transport`] feeds them text and writes what they
//! return, so each can be tested frame by frame.
//!
//! Signals cross dialects through a neutral *body*: the SDP description or ICE candidate
//! object itself. [`signal_body`] extracts it from whatever dialect produced the payload;
//! each renderer wraps it in its own envelope.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::{DialectTag, Envelope, PeerHandle, Signal, SignalKind};

use crate::state::AppState;

pub mod nt;
pub mod octate;
pub mod rendezvous;
pub mod socketio;
pub mod ywebrtc;

/// The dialect tags (indexes into an [`Envelope`]'s rendering cache).
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

/// What the connection does after a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Close with this WebSocket close code and reason.
    Close(u16, Cow<'static, str>),
}

/// What a session may use while handling a message.
pub struct Context<'a> {
    /// Shared server state.
    pub app: &'a AppState,
    /// This connection's outbox handle (to join rooms with and to queue replies).
    pub handle: &'a PeerHandle,
    /// The client's address (for the room creation budget).
    pub client: std::net::IpAddr,
}

impl Context<'_> {
    /// Queues a reply for this connection, in order with the events already queued.
    pub fn reply(&self, frame: Bytes) {
        if self
            .handle
            .try_deliver(switchboard_core::Outbound::Frame(Box::new(frame)))
            .is_err()
        {
            // Our own outbox is full: we are the slow consumer.
            self.handle
                .close(switchboard_core::CloseReason::SlowConsumer);
        }
    }
}

/// One connection's protocol state machine.
pub trait Session: Send + 'static {
    /// The dialect's name, for metrics and logs.
    const NAME: &'static str;
    /// The dialect's tag.
    const TAG: DialectTag;

    /// Runs once when the connection opens, before any message is read (dialects that join
    /// on connect, or refuse the connection with a frame). Default: nothing.
    fn on_open(&mut self, _cx: &Context<'_>) -> Flow {
        Flow::Continue
    }

    /// Handles one text message (already checked against the size and rate limits).
    fn on_text(&mut self, cx: &Context<'_>, text: Bytes) -> Flow;

    /// Handles one binary message. Default: an error reply.
    fn on_binary(&mut self, cx: &Context<'_>, _data: Bytes) -> Flow {
        cx.reply(self.error_frame(
            "binary_unsupported",
            "Binary frames are not supported; send JSON text",
        ));
        Flow::Continue
    }

    /// Renders an event for this connection (`None`: nothing to send). May update the
    /// session (a closed room forgets its membership). Use [`Envelope::render`] so a
    /// broadcast is serialised once.
    fn render(&mut self, envelope: &Envelope) -> Option<Bytes>;

    /// An error frame in this dialect, or `None` where the dialect has none.
    fn error_frame(&self, code: &'static str, message: &str) -> Bytes;

    /// Whether the connection has authenticated (or joined, for dialects without auth);
    /// until it has, the authentication deadline applies.
    fn is_established(&self) -> bool;

    /// A ping round trip measured on this connection, for dialect-specific series (the
    /// driver records the shared one). Default: nothing more.
    fn observe_rtt(&self, _app: &AppState, _seconds: f64) {}

    /// The WebSocket ping interval for this dialect. Default: `PING_INTERVAL`.
    fn ping_interval(&self, app: &AppState) -> std::time::Duration {
        app.config.ping_interval.get()
    }

    /// Whether the deadline applies to this session at all.
    fn needs_establishing(&self, app: &AppState) -> bool {
        app.config.is_production()
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *buf, s).expect("writing a str to a Vec cannot fail");
}

/// The raw JSON of a borrowed sub-value as a zero-copy slice of the frame it came from.
pub fn raw_slice(frame: &Bytes, raw: &RawValue) -> Bytes {
    frame.slice_ref(raw.get().as_bytes())
}

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
