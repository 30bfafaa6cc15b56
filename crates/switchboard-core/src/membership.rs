//! The membership service: the one interface through which the command layer does every
//! room operation (join with capacity and identity checks, leave, targeted and room-wide
//! delivery, a room's mailbox, listings), and through which remote events come back in.
//!
//! [`Registry`](crate::Registry) is the in-memory, single-node implementation and the
//! default. A cluster implementation (Redis) keeps the same contract across nodes: it holds
//! its own node's sockets in a `Registry` and the cluster-wide truth elsewhere, and delivers
//! what other nodes publish into the local outboxes.
//!
//! Operations that may cross the network return an [`Op`]: the in-memory service answers at
//! once, a networked one later; both are fallible, and a failure reaches the caller as an
//! error ([`JoinError::Unavailable`], [`RelayError::Unavailable`]), never as a silent drop.
//!
//! A peer is in a room exactly while its [`Seat`] lives: dropping the seat (leave, socket
//! closed, timeout, shutdown) removes it, and the room hears `PeerLeft` once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{
    ConnId, DialectTag, JoinError, Op, PeerHandle, PeerId, RelayError, RoomId, RoomSnapshot,
    SignalKind,
};

/// How a room is created.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Display name; the id when `None`.
    pub name: Option<Arc<str>>,
    /// Host id, for rooms created on a peer's behalf through the API.
    pub host: Option<PeerId>,
    /// Host display name.
    pub host_name: Option<Arc<str>>,
    /// Free-form attributes shown in the room's metadata.
    pub attributes: Vec<(Arc<str>, Arc<str>)>,
    /// A peer cap tighter than the server's (`Some(2)` for the rendezvous dialects).
    pub capacity: Option<usize>,
    /// How long the room survives empty; the sweep policy's grace when `None`.
    /// `Some(Duration::ZERO)` removes it the moment its last member leaves.
    pub empty_grace: Option<Duration>,
    /// How long the room may go without activity before it is closed; the sweep policy's
    /// timeout when `None` (the rendezvous dialect's `ROOM_TTL` sets it).
    pub inactivity_timeout: Option<Duration>,
    /// The client creating it, for the [`CreationGate`]'s per-client budget.
    pub creator: Option<IpAddr>,
    /// Whether only peers holding a token for the room may join it (a room created by a
    /// token holder, or by the admin API, is).
    pub secured: bool,
}

/// Whether a join may, must or must not create the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JoinMode {
    /// Join an existing room only.
    #[default]
    Existing,
    /// Create the room; fail if it exists.
    Create,
    /// Join it, creating it first when missing.
    CreateOrJoin,
}

/// How a peer joins.
#[derive(Clone, Debug, Default)]
pub struct JoinOptions {
    /// May, must or must not create.
    pub mode: JoinMode,
    /// The joiner's display name.
    pub name: Option<Arc<str>>,
    /// Used when the join creates the room.
    pub create: CreateOptions,
    /// Whether the joiner holds a verified token for this room. A secured room admits only
    /// such joiners; with [`Limits::separate_secured`](crate::Limits) they join secured rooms
    /// only.
    pub authenticated: bool,
}

/// A join: who, where, how, and the outbox its events go to.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// The room.
    pub room: RoomId,
    /// The joiner's id in the room.
    pub peer: PeerId,
    /// The joiner's outbox.
    pub handle: PeerHandle,
    /// Mode, name and creation options.
    pub opts: JoinOptions,
}

/// Who receives a relayed signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One named member.
    Peer(PeerId),
    /// Every other member of the room.
    Room,
}

/// The outcome of a successful relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// How many outboxes took the signal.
    pub delivered: usize,
}

/// Counts for `/api/stats` and the gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Rooms alive.
    pub rooms: usize,
    /// Members across all rooms.
    pub peers: usize,
}

/// What one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Empty rooms removed after their grace.
    pub empty_removed: usize,
    /// Rooms with members closed for inactivity.
    pub idle_closed: usize,
}

/// When the sweep removes rooms.
#[derive(Clone, Copy, Debug)]
pub struct SweepPolicy {
    /// A room emptied by its last member leaving is removed after this long (unless it
    /// has its own grace).
    pub empty_grace: Duration,
    /// A room created empty that nobody has joined is removed after this long.
    pub unjoined_ttl: Duration,
    /// A room with no activity for this long is closed, members or not.
    pub inactivity_timeout: Duration,
    /// Remove every empty room now, grace or not (memory pressure).
    pub force_empty: bool,
}

/// The answer to [`MembershipService::first_flow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstFlow {
    /// This is the room's first report that its peers connected; `paired_for` is how long
    /// the room had held two members by then (when it ever did).
    First {
        /// Time since the room first held two members.
        paired_for: Option<Duration>,
    },
    /// Already reported for this room.
    Again,
}

/// The server's say on whether a new room may be created: asked, inside the service's
/// critical section, at the moment a join or `create_room` would create one (never for a
/// join into an existing room). It must not block.
pub trait CreationGate: Send + Sync + 'static {
    /// Whether `creator` (the client address, when known) may create a room now.
    ///
    /// # Errors
    /// Why not: [`JoinError::NotAdmitting`] (overload, shutdown) or
    /// [`JoinError::CreationRateLimited`] (the client's budget is spent).
    fn allow(&self, creator: Option<IpAddr>) -> Result<(), JoinError>;
}

/// Every room operation, whichever way rooms are kept.
pub trait MembershipService: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and `/api/info` (`"local"`, `"redis"`).
    fn name(&self) -> &'static str;

    /// Whether the service can serve now; `/readyz` reports not ready while it cannot.
    fn is_ready(&self) -> bool {
        true
    }

    /// Adds a peer to a room. On success the joiner's outbox has [`Event::Joined`] first,
    /// and every other member's has [`Event::PeerJoined`], atomically with the capacity and
    /// peer-id checks. A connection that joins a room it is already in under the same id
    /// gets `Joined` again and a fresh seat.
    ///
    /// [`Event::Joined`]: crate::Event::Joined
    /// [`Event::PeerJoined`]: crate::Event::PeerJoined
    fn join(&self, request: JoinRequest) -> Op<'_, Result<Seat, JoinError>>;

    /// Relays a signal from `from`'s peer to `target`. Signals from one seat reach each
    /// recipient in the order they were relayed.
    ///
    /// # Errors
    /// [`RelayError::NotInRoom`] when the seat is stale, [`RelayError::PeerNotFound`] for an
    /// unknown target, [`RelayError::Undelivered`] naming every recipient that could not
    /// take it (each is closed as a slow consumer; everyone else got it), and
    /// [`RelayError::Unavailable`] when the service could not reach a recipient's node.
    fn relay(
        &self,
        from: &Seat,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>>;

    /// Records that the seat's peer is alive and its room active.
    fn touch(&self, seat: &Seat);

    /// Appends `payload` to the room's mailbox for `to` (who need not be present) with the
    /// next sequence number for `to` (0, 1, 2, …) and, when `to` is present, delivers it at
    /// once as a [`SignalKind::Mailbox`] signal. Returns whether it was delivered now.
    fn mailbox_push(
        &self,
        from: &Seat,
        to: PeerId,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>>;

    /// The seat's peer has every mailbox item with a sequence number below `from_seq`:
    /// those are dropped, and the rest are returned in order.
    fn mailbox_replay(
        &self,
        seat: &Seat,
        from_seq: u64,
    ) -> Op<'_, Result<Vec<(u64, Bytes)>, RelayError>>;

    /// Reports that the seat's room got its peers connected; [`FirstFlow::First`] once per
    /// room, [`FirstFlow::Again`] after. `None` when the seat is stale.
    fn first_flow(&self, seat: &Seat) -> Op<'_, Option<FirstFlow>>;

    /// Creates an empty room (`POST /api/rooms`).
    fn create_room(
        &self,
        id: RoomId,
        opts: CreateOptions,
    ) -> Op<'_, Result<RoomSnapshot, JoinError>>;

    /// Deletes a room, closing its members. Returns whether it existed.
    fn delete_room(&self, id: RoomId) -> Op<'_, Result<bool, JoinError>>;

    /// One room as it stands.
    fn room(&self, id: RoomId) -> Op<'_, Result<Option<RoomSnapshot>, JoinError>>;

    /// Every room as it stands, ordered by creation time.
    fn rooms(&self) -> Op<'_, Result<Vec<RoomSnapshot>, JoinError>>;

    /// Room and peer counts, service-wide.
    fn stats(&self) -> Op<'_, Result<RegistryStats, JoinError>>;

    /// Counts of this node's members whose dialect satisfies `pick`, and of the rooms
    /// holding at least one of them (per-node gauges).
    fn local_stats(&self, pick: &dyn Fn(DialectTag) -> bool) -> RegistryStats;

    /// Removes empty rooms past their grace and closes rooms idle past the timeout.
    fn sweep(&self, policy: SweepPolicy) -> SweepReport;

    /// Closes every connection that is `user` in any room, on every node
    /// ([`CloseReason::Revoked`]): the user's access was withdrawn. Returns how many
    /// connections this node closed.
    fn revoke(&self, user: PeerId) -> Op<'_, Result<usize, JoinError>>;

    /// Called once after every connection has closed at shutdown: a networked service
    /// finishes its pending writes (so other nodes hear this node's peers left) and gives
    /// up its place. Default: nothing to do.
    fn shutdown(&self) -> Op<'_, ()> {
        Op::ready(())
    }
}

/// What a [`Seat`] names: a member entry in a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatKey {
    /// The room.
    pub room: RoomId,
    /// The peer's id in it.
    pub peer: PeerId,
    /// The connection holding it.
    pub conn: ConnId,
    /// Which incarnation of the room (a room re-created under the same id is another).
    pub epoch: u64,
    /// Which join (a re-join hands out a new seat and retires the old one).
    pub serial: u64,
}

/// Whoever hands out seats takes them back.
pub trait SeatOwner: Send + Sync + 'static {
    /// Removes the member `key` names, if it is still there.
    fn release(&self, key: &SeatKey);
    /// Whether the member `key` names is still there.
    fn is_live(&self, key: &SeatKey) -> bool;
}

/// A peer's place in a room. Dropping it removes the peer and tells the room `PeerLeft`.
pub struct Seat {
    owner: Option<Arc<dyn SeatOwner>>,
    key: SeatKey,
}

impl Seat {
    /// A seat `owner` will take back when it drops.
    pub fn new(owner: Arc<dyn SeatOwner>, key: SeatKey) -> Self {
        Self {
            owner: Some(owner),
            key,
        }
    }

    /// The room.
    pub fn room(&self) -> &RoomId {
        &self.key.room
    }

    /// The peer's id.
    pub fn peer(&self) -> &PeerId {
        &self.key.peer
    }

    /// The connection holding it.
    pub fn conn(&self) -> ConnId {
        self.key.conn
    }

    /// What it names.
    pub fn key(&self) -> &SeatKey {
        &self.key
    }

    /// Whether it still refers to a live member (its room was not closed meanwhile).
    pub fn is_live(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.is_live(&self.key))
    }

    /// Gives up the seat without removing the member (for a service that wraps another's
    /// seats in its own).
    pub fn into_key(mut self) -> SeatKey {
        self.owner = None;
        self.key.clone()
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            owner.release(&self.key);
        }
    }
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat")
            .field("room", &self.key.room)
            .field("peer", &self.key.peer)
            .field("conn", &self.key.conn)
            .finish()
    }
}
