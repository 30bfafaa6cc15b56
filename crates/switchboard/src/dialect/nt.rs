//! The nt-backend-wrtc dialect as deployed (HEAD `630a079`, the one NoisyTransfer clients
//! speak): `GET /ws?appID=<uuid>&side=A|B[&sid=]` on the HTTP port. (Its rendezvous codes,
//! `POST /rendezvous/code` and `/redeem`, are HTTP: [`crate::http::rendezvous`].)
//!
//! - The connection joins room `<appID>` (canonical lower-case hyphenated UUID) as peer `A`
//!   or `B` as soon as it opens. When a join leaves the room with two members, both get
//!   `{"type":"room_full"}\n` (again on every reconnect). A side already held gets close
//!   1008 `side A busy`; the holder is kept.
//! - `offer`, `answer`, `ice`, `sender_ready` (type matched case-insensitively; text or
//!   binary frames) go to the other members as the original bytes, always as text frames.
//!   With nobody to take them they are dropped silently, as the original does, and counted
//!   in `nt_signal_dropped_total{type}`.
//! - Mailbox: `{"type":"send","to":"A"|"B","payload":…}` (`to` case-insensitive; any other
//!   `to` is dropped) appends to the recipient side's queue with `seq` 0, 1, 2, … and is
//!   delivered at once as `{"payload":…,"seq":N,"type":"send"}\n` when that side is
//!   connected. `{"type":"hello","deliveredUpTo":N}` means "I have every item with
//!   `seq < N`" (N is the count of items received, i.e. the next `seq` expected): those are
//!   dropped and every item with `seq >= N` is re-sent in order. A missing `deliveredUpTo`
//!   is 0, so a bare hello replays everything. (The original drops `seq <= N`, which loses
//!   item 0 on any hello.) The mailbox is bounded (items per side, bytes per room) and is
//!   deleted when the room's last connection leaves.
//! - `telemetry` only counts: `{"event":"ice-connected","mode"?}` once per room in
//!   `nt_session_established_total{mode}` (plus `nt_session_time_to_first_flow_seconds`,
//!   from both sides present), `{"event":"ice-failed","reason"?}` in
//!   `nt_session_failed_total{reason}`. Everything else, malformed JSON included, is ignored.
//!   The server never sends `peer-joined` or `peer-left` in this dialect, and one error
//!   frame only, `{"type":"error"}\n`: for a message too large or over the rate limit, and
//!   for a signal a connected recipient could not take (never a silent drop).
//! - Signals from other dialects in the same room arrive as `{"type":"offer","sdp":…}`,
//!   `{"type":"answer","sdp":…}` and `{"type":"ice","cand":…}`; other kinds are not shown.

use std::borrow::Cow;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_core::{
    CreateOptions, DialectTag, Envelope, Event, JoinMode, PeerId, RoomId, SignalKind, Target,
};

use super::{Codec, Decoded, NULL, Observation, Out, close, raw_slice, signal_body, tags};
use crate::command::{
    Claim, Command, CommandError, Join, PeerChoice, Relay, Reply, Scope, Telemetry,
};
use crate::metrics::{Metrics, NtBytesLabels, NtTypeLabel};

const ROOM_FULL: &[u8] = b"{\"type\":\"room_full\"}\n";

/// A side of an nt room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `A`.
    A,
    /// `B`.
    B,
}

impl Side {
    /// `A` or `B`, exactly.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "A" => Some(Self::A),
            "B" => Some(Self::B),
            _ => None,
        }
    }

    /// `"A"` or `"B"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
        }
    }
}

/// One nt connection's codec.
#[derive(Debug)]
pub struct Nt {
    room: RoomId,
    side: Side,
    joined: bool,
    /// Members of the room as this connection last heard.
    members: usize,
    /// A valid message has arrived, or the room has been full (paired) at some point. In
    /// production one of the two must happen within `AUTH_TIMEOUT`.
    spoke: bool,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Send<'a> {
    #[serde(borrow, default, deserialize_with = "super::opt_str")]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Hello {
    #[serde(rename = "deliveredUpTo", default)]
    delivered_up_to: Option<u64>,
}

#[derive(Deserialize)]
struct TelemetryMsg<'a> {
    #[serde(borrow, default, deserialize_with = "super::opt_str")]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "super::opt_str")]
    mode: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "super::opt_str")]
    reason: Option<Cow<'a, str>>,
}

/// The message types of the fixed metrics table.
fn type_label(kind: &str) -> &'static str {
    match kind {
        "offer" => "offer",
        "answer" => "answer",
        "ice" => "ice",
        "sender_ready" => "sender_ready",
        "hello" => "hello",
        "send" => "send",
        "telemetry" => "telemetry",
        "delivered" => "delivered",
        _ => "unknown",
    }
}

/// The label `malformed` is counted under (as `unknown`, with an error).
const MALFORMED: &str = "unknown";
/// The label the transports give the command a codec's [`Codec::open`] returned.
pub const OPEN: &str = "open";

impl Nt {
    /// A codec for side `side` of room `app_id` (a canonical UUID).
    pub fn new(app_id: &uuid::Uuid, side: Side) -> Self {
        Self {
            room: RoomId::new(app_id.hyphenated().to_string().as_str()),
            side,
            joined: false,
            members: 0,
            spoke: false,
        }
    }

    /// The room: the appID.
    pub fn room(&self) -> &RoomId {
        &self.room
    }

    fn command(label: &'static str, frame: &Bytes) -> Command {
        match label {
            "offer" | "answer" | "ice" | "sender_ready" => Command::Relay(Relay {
                room: None,
                target: Target::Room,
                kind: match label {
                    "offer" => SignalKind::Offer,
                    "answer" => SignalKind::Answer,
                    "ice" => SignalKind::Candidate,
                    _ => SignalKind::Other(Arc::from(label)),
                },
                payload: frame.clone(),
                claim: Claim::None,
            }),
            "send" => {
                let Ok(msg) = serde_json::from_slice::<Send<'_>>(frame) else {
                    return Command::Ignore;
                };
                let Some(to) = msg
                    .to
                    .as_deref()
                    .and_then(|t| Side::parse(&t.to_ascii_uppercase()))
                else {
                    return Command::Ignore;
                };
                Command::MailboxSend {
                    to: PeerId::new(to.as_str()),
                    payload: msg.payload.map_or(NULL, |p| raw_slice(frame, p)),
                }
            }
            "hello" => match serde_json::from_slice::<Hello>(frame) {
                // deliveredUpTo = N: the client holds every item with seq < N.
                Ok(h) => Command::MailboxHello {
                    delivered_up_to: h.delivered_up_to.unwrap_or(0),
                },
                Err(_) => Command::Ignore,
            },
            "telemetry" => {
                let Ok(t) = serde_json::from_slice::<TelemetryMsg<'_>>(frame) else {
                    return Command::Ignore;
                };
                let event = t.event.as_deref().unwrap_or("");
                if event.eq_ignore_ascii_case("ice-connected") {
                    Command::Telemetry(Telemetry::Connected {
                        mode: t.mode.map(Cow::into_owned),
                    })
                } else if event.eq_ignore_ascii_case("ice-failed") {
                    Command::Telemetry(Telemetry::Failed {
                        reason: t.reason.map(Cow::into_owned),
                    })
                } else {
                    Command::Ignore
                }
            }
            // `delivered` and the rest are ignored, as by the original.
            _ => Command::Ignore,
        }
    }
}

impl Codec for Nt {
    const NAME: &'static str = "nt";
    const TAG: DialectTag = tags::NT;

    fn open(&mut self) -> Result<Option<Command>, CommandError> {
        Ok(Some(Command::Join(Join {
            room: Some(self.room.clone()),
            peer: PeerChoice::Side(PeerId::new(self.side.as_str())),
            claim: Claim::None,
            mode: JoinMode::CreateOrJoin,
            name: None,
            create: CreateOptions {
                capacity: Some(2),
                empty_grace: Some(Duration::ZERO),
                ..CreateOptions::default()
            },
            scope: Scope::One,
            rejoin: false,
        })))
    }

    fn decode(&mut self, frame: &Bytes, _binary: bool) -> Decoded {
        // Text and binary frames are read alike. A binary frame must be UTF-8 JSON too: it
        // is relayed as a text frame, and `Head` alone does not check the bytes of the
        // fields it skips.
        if std::str::from_utf8(frame).is_err() {
            return Decoded::err(MALFORMED, CommandError::BadJson);
        }
        let Ok(head) = serde_json::from_slice::<Head<'_>>(frame) else {
            return Decoded::err(MALFORMED, CommandError::BadJson);
        };
        let label = type_label(&head.kind.to_ascii_lowercase());
        let d = Decoded::ok(label, Self::command(label, frame));
        self.spoke |= d.command.is_ok();
        d
    }

    fn encode_event(&mut self, env: &Envelope) -> Out {
        let frame = match &env.event {
            Event::Joined { room, .. } => {
                self.members = room.members.len();
                self.spoke |= self.members >= 2;
                (self.members == 2).then(|| Bytes::from_static(ROOM_FULL))
            }
            Event::PeerJoined { .. } => {
                self.members += 1;
                self.spoke |= self.members >= 2;
                (self.members == 2).then(|| Bytes::from_static(ROOM_FULL))
            }
            Event::PeerLeft { .. } => {
                self.members = self.members.saturating_sub(1);
                None
            }
            Event::RoomClosed { reason, .. } => {
                return Out::close(
                    None,
                    close::NORMAL,
                    super::rendezvous::room_closed_reason(*reason),
                );
            }
            Event::Signal(s) => match s.kind {
                SignalKind::Mailbox(seq) => Some(deliver_frame(&s.payload, seq)),
                _ if s.origin == tags::NT => Some(s.payload.clone()),
                _ => Some(env.render(Self::TAG, |e| match e {
                    Event::Signal(s) => foreign_signal(s),
                    _ => Bytes::new(),
                }))
                .filter(|f| !f.is_empty()),
            },
        };
        frame.map_or(Out::None, Out::Frame)
    }

    fn encode_reply(&mut self, reply: &Reply) -> Out {
        match reply {
            Reply::Joined { .. } => {
                self.joined = true;
                Out::None
            }
            Reply::Mailbox(items) if !items.is_empty() => Out::Frames(
                items
                    .iter()
                    .map(|(seq, payload)| deliver_frame(payload, *seq))
                    .collect(),
            ),
            _ => Out::None,
        }
    }

    fn encode_error(&mut self, e: &CommandError) -> Out {
        if !self.joined {
            return match e {
                CommandError::PeerIdTaken(_) => Out::close(
                    None,
                    close::POLICY,
                    match self.side {
                        Side::A => "side A busy",
                        Side::B => "side B busy",
                    },
                ),
                CommandError::RoomFull { .. } => Out::close(None, close::POLICY, "room full"),
                CommandError::TokenRequired | CommandError::RoomNotSecured => {
                    Out::close(None, close::POLICY, "unauthorized")
                }
                _ => Out::close(None, close::TRY_AGAIN_LATER, "try again later"),
            };
        }
        match e {
            // nt clients parse no error frames; the shared limit replies get an empty one, and
            // so does a signal that was not delivered (the other side could not take it, the
            // server is busy, or its node could not be reached in cluster mode): never a
            // silent drop.
            CommandError::FrameTooLarge { .. }
            | CommandError::RateLimited
            | CommandError::Undelivered(_)
            | CommandError::ServerBusy
            | CommandError::Unavailable(_) => {
                Out::Frame(Bytes::from_static(b"{\"type\":\"error\"}\n"))
            }
            // Everything else is ignored, as by the original (and counted).
            _ => Out::None,
        }
    }

    fn established(&self) -> bool {
        self.spoke
    }

    fn establish_timeout_reason(&self) -> &'static str {
        "no message in time"
    }

    fn observe(&self, metrics: &Metrics, what: Observation<'_>) {
        let nt = &metrics.nt;
        match what {
            Observation::FrameIn(len) => nt.frame_in(len),
            Observation::FrameOut(len) => nt.frame_out(len),
            Observation::Rtt(secs) => nt.ws_rtt.observe(secs),
            Observation::Applied { label, len, result } => {
                // The join on connect: a refusal is one of the seed's errors.
                if label == OPEN {
                    if result.is_err() {
                        nt.ws_errors.inc();
                    }
                    return;
                }
                nt.ws_messages
                    .get_or_create(&NtTypeLabel { r#type: label })
                    .inc();
                if matches!(result, Err(CommandError::BadJson)) {
                    nt.ws_errors.inc();
                }
                let relayed = matches!(label, "offer" | "answer" | "ice" | "sender_ready" | "send");
                // An ignored `send` (no valid `to`, no room) is not a signal.
                if !relayed || matches!(result, Ok(Reply::None)) {
                    return;
                }
                nt.signal_messages
                    .get_or_create(&NtTypeLabel { r#type: label })
                    .inc();
                let bytes = |dir| {
                    nt.signal_bytes
                        .get_or_create(&NtBytesLabels { dir, r#type: label })
                        .clone()
                };
                bytes("in").inc_by(len as u64);
                match result {
                    Ok(Reply::Relayed { delivered }) if *delivered > 0 => {
                        bytes("out").inc_by((len * delivered) as u64);
                    }
                    _ => {
                        nt.signal_dropped
                            .get_or_create(&NtTypeLabel { r#type: label })
                            .inc();
                    }
                }
            }
        }
    }
}

/// A signal from another dialect in nt's shapes; empty for kinds nt has no shape for.
fn foreign_signal(s: &switchboard_core::Signal) -> Bytes {
    let (kind, key): (&[u8], &[u8]) = match s.kind {
        SignalKind::Offer => (b"offer", b"sdp"),
        SignalKind::Answer => (b"answer", b"sdp"),
        SignalKind::Candidate => (b"ice", b"cand"),
        _ => return Bytes::new(),
    };
    let body = signal_body(s);
    let mut buf = Vec::with_capacity(body.len() + 32);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind);
    buf.extend_from_slice(b"\",\"");
    buf.extend_from_slice(key);
    buf.extend_from_slice(b"\":");
    buf.extend_from_slice(&body);
    buf.push(b'}');
    Bytes::from(buf)
}

/// `{"payload":P,"seq":N,"type":"send"}\n`
pub fn deliver_frame(payload: &[u8], seq: u64) -> Bytes {
    let mut buf = Vec::with_capacity(payload.len() + 40);
    buf.extend_from_slice(br#"{"payload":"#);
    buf.extend_from_slice(payload);
    buf.extend_from_slice(br#","seq":"#);
    let _ = write!(buf, "{seq}");
    buf.extend_from_slice(b",\"type\":\"send\"}\n");
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Nt {
        Nt::new(&uuid::Uuid::nil(), Side::A)
    }

    #[test]
    fn relayed_types_keep_the_frame_and_the_rest_is_ignored() {
        let mut c = codec();
        let f = Bytes::from_static(br#"{"type":"ANSWER","sdp":"x"}"#);
        let d = c.decode(&f, true);
        assert_eq!(d.label, "answer");
        let Ok(Command::Relay(r)) = d.command else {
            panic!()
        };
        assert_eq!(
            (r.kind, r.payload, r.target),
            (SignalKind::Answer, f, Target::Room)
        );
        let d = c.decode(&Bytes::from_static(br#"{"type":"signal"}"#), false);
        assert!(matches!(d.command, Ok(Command::Ignore)));
        let d = c.decode(&Bytes::from_static(b"not json"), false);
        assert_eq!(d.command.unwrap_err(), CommandError::BadJson);
    }

    /// Found by fuzzing (fuzz/fuzz_targets/nt.rs): a binary frame with invalid UTF-8 in a
    /// field the decoder skips was relayed, and its recipients got `{"type":"error"}` in
    /// its place (the transport never writes invalid UTF-8 in a text frame).
    #[test]
    fn a_frame_that_is_not_utf8_is_malformed_not_relayed() {
        let mut c = codec();
        for frame in [
            &b"{\"type\":\"offer\",\"sdp\":\"v=0\xff\"}"[..],
            &b"{\"type\":\"send\",\"to\":\"B\",\"payload\":\"\xc3\"}"[..],
        ] {
            let d = c.decode(&Bytes::copy_from_slice(frame), true);
            assert_eq!(d.command.unwrap_err(), CommandError::BadJson, "{frame:?}");
        }
    }

    #[test]
    fn the_mailbox_decodes_and_renders_as_the_original() {
        let mut c = codec();
        let d = c.decode(
            &Bytes::from_static(br#"{"type":"send","to":"b","payload":{"k":1}}"#),
            false,
        );
        let Ok(Command::MailboxSend { to, payload }) = d.command else {
            panic!()
        };
        assert_eq!((to.as_str(), &payload[..]), ("B", &br#"{"k":1}"#[..]));
        let d = c.decode(&Bytes::from_static(br#"{"type":"send","to":"C"}"#), false);
        assert!(matches!(d.command, Ok(Command::Ignore)));
        let d = c.decode(
            &Bytes::from_static(br#"{"type":"hello","deliveredUpTo":3}"#),
            false,
        );
        assert!(matches!(
            d.command,
            Ok(Command::MailboxHello { delivered_up_to: 3 })
        ));
        assert_eq!(
            deliver_frame(b"{}", 3),
            "{\"payload\":{},\"seq\":3,\"type\":\"send\"}\n"
        );
    }

    #[test]
    fn a_busy_side_closes_with_the_originals_reason() {
        let mut c = codec();
        assert_eq!(
            c.encode_error(&CommandError::PeerIdTaken("A".into())),
            Out::close(None, 1008, "side A busy")
        );
    }
}
