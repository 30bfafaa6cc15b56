//! # switchboard-core
//!
//! The transport-agnostic heart of Switchboard. It owns:
//!
//! - **identities** ([`PeerId`], [`RoomId`], [`ConnId`], [`DialectTag`]);
//! - the **room registry** ([`Registry`]): rooms, their members, capacity checks and
//!   lifecycle sweeps, behind one mutex so that every join, leave and relay is a single
//!   critical section;
//! - **routing**: [`Registry::relay`] delivers a [`Signal`] to one peer or to the rest of a
//!   room, into each recipient's bounded outbox ([`PeerHandle`]), and reports every
//!   recipient that could not take it;
//! - **limits** ([`Limits`]) and the typed errors of each operation ([`JoinError`],
//!   [`RelayError`]);
//! - the **backplane seam** ([`Backplane`]): how a registry reaches peers held by other
//!   nodes. [`LocalOnly`] is the single-node implementation.
//!
//! It knows nothing of wire formats: no JSON, no WebSocket, no HTTP. Protocol adapters turn
//! frames into calls on the [`Registry`] and render the [`Event`]s that arrive in a peer's
//! outbox back into frames. An [`Envelope`] caches that rendering, so a broadcast to many
//! peers of one dialect is serialised once.
//!
//! ## Invariants
//!
//! - A peer is in a room exactly while its [`Membership`] guard lives; dropping the guard
//!   (for any reason: leave, socket closed, heartbeat timeout, shutdown) removes it and tells
//!   the rest of the room `PeerLeft` exactly once.
//! - A joiner's own `Joined` event is queued before any event about the room that follows
//!   the join, and every other member's `PeerJoined` is queued in the same critical section.
//! - Nothing is dropped silently: a recipient whose outbox is full is closed with
//!   [`CloseReason::SlowConsumer`] and the sender is told which recipients missed the signal.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backplane;
mod error;
mod event;
mod id;
mod limits;
mod peer;
mod registry;

pub use backplane::{Backplane, LocalOnly};
pub use error::{JoinError, RelayError};
pub use event::{
    Envelope, Event, MemberSummary, RoomClosedReason, RoomSnapshot, Signal, SignalKind,
};
pub use id::{ConnId, DialectTag, PeerId, RoomId};
pub use limits::Limits;
pub use peer::{CloseReason, Outbound, OutboxReceiver, PeerHandle, Received, SendError, outbox};
pub use registry::{
    CreateOptions, CreationGate, Delivery, JoinMode, JoinOptions, Membership, Registry,
    RegistryStats, SweepPolicy, SweepReport, Target, unix_millis,
};
