//! Events: what the core puts into a peer's outbox. They are wire-neutral; each adapter
//! renders them in its own dialect. An [`Envelope`] wraps one event for every recipient and
//! remembers the first rendering, so a broadcast is serialised once per dialect.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::time::Instant;

use crate::{DialectTag, PeerId, RoomId};

/// What kind of signal a peer relays. Adapters map their message types onto these so that a
/// peer in one dialect can talk to a peer in another.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
    /// An ICE candidate.
    Candidate,
    /// Presence information (OctateCode `presence`).
    Presence,
    /// A cursor position (OctateCode `cursor-update`).
    Cursor,
    /// An opaque signal with no declared kind (rendezvous `signal`).
    Generic,
    /// A topic publication (y-webrtc `publish`).
    Publish,
    /// A mailbox item with its sequence number (the nt dialect's `send`).
    Mailbox(u64),
    /// Any other dialect-specific kind, by name.
    Other(Arc<str>),
}

/// A relayed signal. `payload` holds the bytes as the sender's dialect produced them;
/// `origin` says which dialect that was, so another dialect can translate them.
#[derive(Clone, Debug)]
pub struct Signal {
    /// The room it travels in.
    pub room: RoomId,
    /// The sender, as the server authenticated it.
    pub from: PeerId,
    /// The named recipient, or `None` for the rest of the room.
    pub to: Option<PeerId>,
    /// What it is.
    pub kind: SignalKind,
    /// The payload bytes, untouched.
    pub payload: Bytes,
    /// The dialect that produced `payload`.
    pub origin: DialectTag,
    /// The room's member count when it was relayed, the sender included (y-webrtc's
    /// `clients`).
    pub audience: u32,
}

/// Why a room was closed while it still had members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomClosedReason {
    /// No activity for the room inactivity timeout.
    Inactive,
    /// Deleted through the admin API.
    Deleted,
}

/// A member as others see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSummary {
    /// Its id.
    pub id: PeerId,
    /// Display name, if it gave one.
    pub name: Option<Arc<str>>,
    /// Whether it created the room.
    pub is_host: bool,
    /// When it joined, in Unix milliseconds.
    pub joined_at_ms: u64,
    /// When it last proved it was alive, in Unix milliseconds.
    pub last_heartbeat_ms: u64,
    /// Which dialect it speaks.
    pub dialect: DialectTag,
}

/// A room as the API and the join reply show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSnapshot {
    /// Its id.
    pub id: RoomId,
    /// Display name (the id unless one was given).
    pub name: Arc<str>,
    /// The peer that created it, if a peer did.
    pub host: Option<PeerId>,
    /// The host's display name.
    pub host_name: Option<Arc<str>>,
    /// Free-form string attributes given at creation (OctateCode `fileId`, …).
    pub attributes: Vec<(Arc<str>, Arc<str>)>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// Last join, leave, relay or heartbeat, Unix milliseconds.
    pub last_activity_ms: u64,
    /// The room's own peer cap, if tighter than the server's.
    pub capacity: Option<usize>,
    /// Whether only token holders may join it.
    pub secured: bool,
    /// Members in join order.
    pub members: Vec<MemberSummary>,
}

/// What the core tells a peer.
#[derive(Clone, Debug)]
pub enum Event {
    /// To the joiner only, first: the room as it stands after the join.
    Joined {
        /// The room, the joiner included.
        room: RoomSnapshot,
        /// The joiner's id.
        me: PeerId,
        /// Whether this join created the room.
        created: bool,
    },
    /// To the other members: someone joined.
    PeerJoined {
        /// The room.
        room: RoomId,
        /// Who.
        peer: MemberSummary,
    },
    /// To the remaining members: someone left (or was removed).
    PeerLeft {
        /// The room.
        room: RoomId,
        /// Who.
        peer: PeerId,
    },
    /// A relayed signal.
    Signal(Signal),
    /// To every member of a room that the server closed.
    RoomClosed {
        /// The room.
        room: RoomId,
        /// Why.
        reason: RoomClosedReason,
    },
}

/// One event on its way to one or more peers, with the first rendering cached.
#[derive(Debug)]
pub struct Envelope {
    /// The event.
    pub event: Event,
    /// When it was queued (for the relay latency histogram).
    pub queued_at: Instant,
    rendered: OnceLock<(DialectTag, Bytes)>,
}

impl Envelope {
    /// Wraps an event, stamped now.
    pub fn new(event: Event) -> Arc<Self> {
        Arc::new(Self {
            event,
            queued_at: Instant::now(),
            rendered: OnceLock::new(),
        })
    }

    /// About how many bytes this event holds while it waits in an outbox: a signal's
    /// payload, a room snapshot's members, plus the bookkeeping around them.
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = 96;
        OVERHEAD
            + match &self.event {
                Event::Signal(s) => s.payload.len(),
                Event::Joined { room, .. } => room.members.len() * OVERHEAD,
                _ => 0,
            }
    }

    /// The event rendered for `dialect`: the cached bytes when this dialect rendered it
    /// first, otherwise `render`'s output (cached if it is the first rendering).
    pub fn render(&self, dialect: DialectTag, render: impl Fn(&Event) -> Bytes) -> Bytes {
        if let Some((tag, bytes)) = self.rendered.get() {
            if *tag == dialect {
                return bytes.clone();
            }
            return render(&self.event);
        }
        let mut fresh = None;
        let (tag, bytes) = self.rendered.get_or_init(|| {
            let b = render(&self.event);
            fresh = Some(b.clone());
            (dialect, b)
        });
        match fresh {
            Some(b) => b,
            // Another recipient's writer raced us to the cache.
            None if *tag == dialect => bytes.clone(),
            None => render(&self.event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_is_rendered_once_per_dialect() {
        let env = Envelope::new(Event::PeerLeft {
            room: "r".into(),
            peer: "p".into(),
        });
        let calls = std::cell::Cell::new(0);
        for _ in 0..3 {
            let b = env.render(DialectTag(1), |_| {
                calls.set(calls.get() + 1);
                Bytes::from_static(b"one")
            });
            assert_eq!(b, "one");
        }
        assert_eq!(calls.get(), 1);
        let other = env.render(DialectTag(2), |_| Bytes::from_static(b"two"));
        assert_eq!(other, "two");
        // The first dialect's cache is unaffected by the second.
        assert_eq!(env.render(DialectTag(1), |_| unreachable!()), "one");
    }
}
