//! # switchboard-core
//!
//! The transport-agnostic heart of Switchboard. It owns:
//!
//! - **identities** ([`PeerId`], [`RoomId`], [`ConnId`], [`DialectTag`]);
//! - the **membership service** ([`MembershipService`]): the one interface for every room
//!   operation (join with capacity and identity checks, leave, targeted and room-wide
//!   delivery, mailboxes, listings), whose operations return an [`Op`] that is ready at once
//!   in memory or later over a network; [`Registry`] is the in-memory implementation, behind
//!   one mutex so that every join, leave and relay is a single critical section;
//! - the **backplane** ([`Backplane`]): what a backend that keeps rooms elsewhere (the
//!   cluster crate) does with its node's own members in a [`Registry`];
//! - **seats** ([`Seat`]): a peer is in a room exactly while its seat lives;
//! - **outboxes** ([`PeerHandle`]): each connection's bounded queue of [`Event`]s;
//! - **limits** ([`Limits`]) and the typed errors of each operation ([`JoinError`],
//!   [`RelayError`]);
//! - **rendezvous codes** ([`CodeBook`], [`LocalCodes`]).
//!
//! It knows nothing of wire formats: no JSON, no WebSocket, no HTTP. The server's command
//! layer calls the membership service; its dialect codecs render the [`Event`]s that arrive
//! in a peer's outbox. An [`Envelope`] caches that rendering, so a broadcast to many peers of
//! one dialect is serialised once.
//!
//! ## Invariants
//!
//! - Dropping a [`Seat`] (for any reason: leave, socket closed, heartbeat timeout, shutdown)
//!   removes the peer and tells the rest of the room `PeerLeft` exactly once.
//! - A joiner's own `Joined` event is queued before any event about the room that follows
//!   the join, and every other member's `PeerJoined` is queued in the same critical section.
//! - Signals from one seat reach each recipient in the order they were relayed.
//! - Nothing is dropped silently: a recipient whose outbox is full is closed with
//!   [`CloseReason::SlowConsumer`] and the sender is told which recipients missed the signal.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codes;
mod error;
mod event;
mod id;
mod limits;
mod membership;
mod op;
mod peer;
mod registry;

pub use codes::{CODE_SPACE, CodeBook, CodeError, IssuedCode, LocalCodes};
pub use error::{JoinError, RelayError};
pub use event::{
    Envelope, Event, MemberSummary, RoomClosedReason, RoomSnapshot, Signal, SignalKind,
};
pub use id::{ConnId, DialectTag, PeerId, RoomId};
pub use limits::Limits;
pub use membership::{
    CreateOptions, CreationGate, Delivery, FirstFlow, JoinMode, JoinOptions, JoinRequest,
    MembershipService, RegistryStats, Seat, SeatKey, SeatOwner, SweepPolicy, SweepReport, Target,
};
pub use op::Op;
pub use peer::{
    CloseReason, Ledger, Outbound, OutboxBounds, OutboxReceiver, PeerHandle, Received, SendError,
    WeakPeerHandle, outbox,
};
pub use registry::{Backplane, Mirror, Registry, unix_millis};
