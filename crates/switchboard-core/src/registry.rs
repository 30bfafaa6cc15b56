//! The room registry: every room, its members and their outboxes, behind one mutex.
//!
//! [`Registry`] is a clone-cheap handle. Each operation (join, leave, relay, sweep) takes the
//! lock once, does its bookkeeping, queues the resulting events into the recipients'
//! outboxes with non-blocking `try_send`, and releases it. Nothing awaits while the lock is
//! held (a `std::sync::Mutex` is the right tool: critical sections are short and never
//! cross an `.await`; clippy's `await_holding_lock` is denied workspace-wide).
//!
//! Queuing under the lock is what makes joins atomic: the joiner's `Joined` and everyone
//! else's `PeerJoined` are queued before any other operation can observe the new member.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::Instant;

use crate::{
    Backplane, CloseReason, DialectTag, Envelope, Event, JoinError, Limits, LocalOnly,
    MemberSummary, Outbound, PeerHandle, PeerId, RelayError, RoomClosedReason, RoomId,
    RoomSnapshot, SendError, Signal, SignalKind,
};

/// Milliseconds since the Unix epoch (the timestamps the dialects put on the wire).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A clone-cheap handle to the shared registry.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

struct Shared {
    /// Invariant: never held across an `.await`.
    state: Mutex<State>,
    limits: Limits,
    gate: Option<Arc<dyn CreationGate>>,
    backplane: Arc<dyn Backplane>,
}

/// The server's say on whether a new room may be created: asked, inside the registry's
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

#[derive(Default)]
struct State {
    rooms: HashMap<RoomId, Room>,
    next_epoch: u64,
    peers: usize,
}

struct Room {
    /// Distinguishes this room from a later room with the same id, so that a stale
    /// [`Membership`] never removes a member of its successor.
    epoch: u64,
    name: Arc<str>,
    host: Option<PeerId>,
    host_name: Option<Arc<str>>,
    attributes: Vec<(Arc<str>, Arc<str>)>,
    capacity: Option<usize>,
    empty_grace: Option<Duration>,
    inactivity_timeout: Option<Duration>,
    created_at_ms: u64,
    last_activity_ms: u64,
    last_activity: Instant,
    /// When the room last became empty. `None` while it has members, and for a room created
    /// empty (through the API) that nobody has joined yet: such a room waits for its first
    /// member for the sweep policy's `unjoined_ttl`, whatever its empty grace.
    empty_since: Option<Instant>,
    members: Vec<Member>,
}

struct Member {
    /// The serial of the [`Membership`] that owns this entry; a re-join hands out a new
    /// guard and retires the old one's serial.
    serial: u64,
    id: PeerId,
    handle: PeerHandle,
    name: Option<Arc<str>>,
    is_host: bool,
    joined_at_ms: u64,
    last_heartbeat_ms: u64,
}

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

impl Registry {
    /// A single-node registry that creates rooms up to its limits.
    pub fn new(limits: Limits) -> Self {
        Self::build(limits, None, Arc::new(LocalOnly))
    }

    /// A single-node registry that asks `gate` before creating a room.
    pub fn with_gate(limits: Limits, gate: Arc<dyn CreationGate>) -> Self {
        Self::build(limits, Some(gate), Arc::new(LocalOnly))
    }

    /// A registry that forwards room events through `backplane`.
    pub fn with_backplane(limits: Limits, backplane: Arc<dyn Backplane>) -> Self {
        Self::build(limits, None, backplane)
    }

    fn build(
        limits: Limits,
        gate: Option<Arc<dyn CreationGate>>,
        backplane: Arc<dyn Backplane>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                limits,
                gate,
                backplane,
            }),
        }
    }

    /// The limits this registry enforces.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// The backplane in use.
    pub fn backplane(&self) -> &Arc<dyn Backplane> {
        &self.shared.backplane
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing every room, so recover the guard rather than poisoning
        // the whole server.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates an empty room (the HTTP API's `POST /api/rooms`).
    ///
    /// # Errors
    /// [`JoinError::RoomExists`], [`JoinError::TooManyRooms`], or the [`CreationGate`]'s
    /// refusal.
    pub fn create_room(&self, id: RoomId, opts: CreateOptions) -> Result<RoomSnapshot, JoinError> {
        let mut state = self.lock();
        if state.rooms.contains_key(&id) {
            return Err(JoinError::RoomExists(id));
        }
        self.check_room_admission(&state, opts.creator)?;
        let room = new_room(&mut state, opts);
        let snapshot = room.snapshot(&id);
        state.rooms.insert(id, room);
        Ok(snapshot)
    }

    /// The room limit first (so a full server does not spend a client's budget), then the
    /// server's gate.
    fn check_room_admission(
        &self,
        state: &State,
        creator: Option<IpAddr>,
    ) -> Result<(), JoinError> {
        let max = self.shared.limits.max_rooms;
        if max != 0 && state.rooms.len() >= max {
            return Err(JoinError::TooManyRooms(max));
        }
        match &self.shared.gate {
            Some(gate) => gate.allow(creator),
            None => Ok(()),
        }
    }

    /// Adds `peer` to `room`. On success the joiner's outbox has received
    /// [`Event::Joined`] and every other member's has received [`Event::PeerJoined`], in
    /// one critical section. The returned guard keeps the peer in the room.
    ///
    /// A connection that joins a room it is already in (same peer id, same connection)
    /// gets `Joined` again and a fresh guard; the old guard then does nothing.
    ///
    /// # Errors
    /// See [`JoinError`].
    pub fn join(
        &self,
        room_id: RoomId,
        peer: PeerId,
        handle: PeerHandle,
        opts: JoinOptions,
    ) -> Result<Membership, JoinError> {
        let now_ms = unix_millis();
        let conn = handle.conn();
        let mut state = self.lock();
        let exists = state.rooms.contains_key(&room_id);
        let created = match (opts.mode, exists) {
            (JoinMode::Existing, false) => return Err(JoinError::RoomNotFound(room_id)),
            (JoinMode::Create, true) => return Err(JoinError::RoomExists(room_id)),
            (_, true) => false,
            (_, false) => {
                self.check_room_admission(&state, opts.create.creator)?;
                let mut create = opts.create;
                create.host = Some(peer.clone());
                create.host_name.clone_from(&opts.name);
                let room = new_room(&mut state, create);
                state.rooms.insert(room_id.clone(), room);
                true
            }
        };
        let server_cap = self.shared.limits.max_peers_per_room;
        state.next_epoch += 1;
        let serial = state.next_epoch;
        let State { rooms, peers, .. } = &mut *state;
        let room = rooms
            .get_mut(&room_id)
            .expect("room exists: checked or inserted above");
        let rejoin = match room.members.iter().position(|m| m.id == peer) {
            Some(i) if room.members[i].handle.conn() == conn => {
                room.members[i].serial = serial;
                true
            }
            Some(_) => {
                return Err(JoinError::PeerIdTaken {
                    room: room_id,
                    peer,
                });
            }
            None => false,
        };
        if !rejoin {
            let capacity = effective_capacity(server_cap, room.capacity);
            if capacity != 0 && room.members.len() >= capacity {
                return Err(JoinError::RoomFull {
                    room: room_id,
                    capacity,
                });
            }
            let is_host = created || room.host.as_ref() == Some(&peer);
            // Grow by one: most rooms hold two or three peers, and doubling would leave
            // idle slots of ~100 bytes each.
            room.members.reserve_exact(1);
            room.members.push(Member {
                serial,
                id: peer.clone(),
                handle,
                name: opts.name,
                is_host,
                joined_at_ms: now_ms,
                last_heartbeat_ms: now_ms,
            });
            *peers += 1;
        }
        room.empty_since = None;
        room.touch(now_ms);
        let snapshot = room.snapshot(&room_id);
        let joiner = &room
            .members
            .iter()
            .find(|m| m.serial == serial)
            .expect("joiner is a member")
            .handle;
        // The joiner's outbox is fresh or its own; a failure here means it is already gone,
        // and its guard's drop will undo the join.
        let _ = joiner.try_deliver(Outbound::Event(Envelope::new(Event::Joined {
            room: snapshot,
            me: peer.clone(),
            created,
        })));
        if !rejoin {
            let me = room
                .members
                .last()
                .expect("joiner was just pushed")
                .summary();
            let env = Envelope::new(Event::PeerJoined {
                room: room_id.clone(),
                peer: me,
            });
            deliver_to_others(room, &peer, &env);
            self.shared.backplane.forward(&room_id, &env);
        }
        let epoch = room.epoch;
        drop(state);
        Ok(Membership {
            registry: self.clone(),
            room: room_id,
            epoch,
            serial,
            peer,
            conn,
        })
    }

    /// Relays a signal from `from`'s peer to `target`.
    ///
    /// # Errors
    /// [`RelayError::NotInRoom`] when the sender's membership is stale,
    /// [`RelayError::PeerNotFound`] for an unknown target, and
    /// [`RelayError::Undelivered`] naming every recipient that could not take it (those
    /// recipients are closed as slow consumers; everyone else got the signal).
    pub fn relay(
        &self,
        from: &Membership,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
    ) -> Result<Delivery, RelayError> {
        let now_ms = unix_millis();
        let mut state = self.lock();
        let room = from.room_mut(&mut state)?;
        room.touch(now_ms);
        let to = match &target {
            Target::Peer(p) => Some(p.clone()),
            Target::Room => None,
        };
        let envelope = Envelope::new(Event::Signal(Signal {
            room: from.room.clone(),
            from: from.peer.clone(),
            to,
            kind,
            payload,
            origin,
        }));
        let mut delivered = 0;
        let mut failed = Vec::new();
        match target {
            Target::Peer(p) => {
                let Some(m) = room.members.iter().find(|m| m.id == p) else {
                    return Err(RelayError::PeerNotFound(p));
                };
                match deliver(&m.handle, &envelope) {
                    Ok(()) => delivered = 1,
                    Err(_) => failed.push(p),
                }
            }
            Target::Room => {
                for m in room.members.iter().filter(|m| m.id != from.peer) {
                    match deliver(&m.handle, &envelope) {
                        Ok(()) => delivered += 1,
                        Err(_) => failed.push(m.id.clone()),
                    }
                }
                self.shared.backplane.forward(&from.room, &envelope);
            }
        }
        drop(state);
        if failed.is_empty() {
            Ok(Delivery { delivered })
        } else {
            Err(RelayError::Undelivered(failed))
        }
    }

    /// Records that `member` is alive (a heartbeat) and that its room is active.
    pub fn touch(&self, member: &Membership) {
        let now_ms = unix_millis();
        let mut state = self.lock();
        if let Ok(room) = member.room_mut(&mut state) {
            room.touch(now_ms);
            if let Some(m) = room.members.iter_mut().find(|m| m.serial == member.serial) {
                m.last_heartbeat_ms = now_ms;
            }
        }
    }

    /// Removes a member (the guard's drop calls this).
    fn remove(&self, m: &Membership) {
        let mut state = self.lock();
        let State { rooms, peers, .. } = &mut *state;
        let Some(room) = rooms.get_mut(&m.room).filter(|r| r.epoch == m.epoch) else {
            return;
        };
        let Some(i) = room.members.iter().position(|x| x.serial == m.serial) else {
            return;
        };
        room.members.remove(i);
        *peers -= 1;
        room.touch(unix_millis());
        let env = Envelope::new(Event::PeerLeft {
            room: m.room.clone(),
            peer: m.peer.clone(),
        });
        deliver_to_others(room, &m.peer, &env);
        self.shared.backplane.forward(&m.room, &env);
        if room.members.is_empty() {
            if room.empty_grace == Some(Duration::ZERO) {
                rooms.remove(&m.room);
            } else {
                room.empty_since = Some(Instant::now());
            }
        }
    }

    /// Removes empty rooms past their grace and closes rooms idle past the timeout.
    pub fn sweep(&self, policy: SweepPolicy) -> SweepReport {
        let now = Instant::now();
        let mut report = SweepReport::default();
        let mut state = self.lock();
        let State { rooms, peers, .. } = &mut *state;
        rooms.retain(|id, room| {
            let idle_after = room.inactivity_timeout.unwrap_or(policy.inactivity_timeout);
            let idle = now.duration_since(room.last_activity) >= idle_after;
            if room.members.is_empty() {
                let grace_over = match room.empty_since {
                    Some(since) => {
                        let grace = room.empty_grace.unwrap_or(policy.empty_grace);
                        now.duration_since(since) >= grace
                    }
                    // Never joined: nothing has touched it since it was created.
                    None => now.duration_since(room.last_activity) >= policy.unjoined_ttl,
                };
                let expired = policy.force_empty || grace_over || idle;
                if expired {
                    report.empty_removed += 1;
                }
                return !expired;
            }
            if idle {
                report.idle_closed += 1;
                *peers -= room.members.len();
                close_members(id, room, RoomClosedReason::Inactive);
                return false;
            }
            true
        });
        report
    }

    /// Deletes a room, closing its members. Returns whether it existed.
    pub fn delete_room(&self, id: &RoomId) -> bool {
        let mut state = self.lock();
        let Some(mut room) = state.rooms.remove(id) else {
            return false;
        };
        state.peers -= room.members.len();
        drop(state);
        close_members(id, &mut room, RoomClosedReason::Deleted);
        true
    }

    /// One room as it stands.
    pub fn room(&self, id: &RoomId) -> Option<RoomSnapshot> {
        self.lock().rooms.get(id).map(|r| r.snapshot(id))
    }

    /// Every room as it stands, ordered by creation time.
    pub fn rooms(&self) -> Vec<RoomSnapshot> {
        let state = self.lock();
        let mut all: Vec<_> = state.rooms.iter().map(|(id, r)| r.snapshot(id)).collect();
        drop(state);
        all.sort_by(|a, b| (a.created_at_ms, a.id.as_str()).cmp(&(b.created_at_ms, b.id.as_str())));
        all
    }

    /// How many members a room has, without copying it.
    pub fn member_count(&self, id: &RoomId) -> Option<usize> {
        self.lock().rooms.get(id).map(|r| r.members.len())
    }

    /// Counts only the members whose dialect satisfies `pick`, and the rooms holding at
    /// least one of them (per-dialect gauges).
    pub fn stats_where(&self, pick: impl Fn(DialectTag) -> bool) -> RegistryStats {
        let state = self.lock();
        let mut out = RegistryStats::default();
        for room in state.rooms.values() {
            let n = room
                .members
                .iter()
                .filter(|m| pick(m.handle.dialect()))
                .count();
            out.peers += n;
            out.rooms += usize::from(n > 0);
        }
        out
    }

    /// Room and peer counts.
    pub fn stats(&self) -> RegistryStats {
        let state = self.lock();
        RegistryStats {
            rooms: state.rooms.len(),
            peers: state.peers,
        }
    }
}

fn new_room(state: &mut State, opts: CreateOptions) -> Room {
    state.next_epoch += 1;
    let now_ms = unix_millis();
    Room {
        epoch: state.next_epoch,
        name: opts.name.unwrap_or_else(|| Arc::from("")),
        host: opts.host,
        host_name: opts.host_name,
        attributes: opts.attributes,
        capacity: opts.capacity,
        empty_grace: opts.empty_grace,
        inactivity_timeout: opts.inactivity_timeout,
        created_at_ms: now_ms,
        last_activity_ms: now_ms,
        last_activity: Instant::now(),
        empty_since: None,
        members: Vec::new(),
    }
}

fn effective_capacity(server: usize, room: Option<usize>) -> usize {
    match (server, room) {
        (0, Some(r)) => r,
        (s, Some(r)) => s.min(r),
        (s, None) => s,
    }
}

/// Queues `env` for one member; a full outbox closes that member as a slow consumer.
fn deliver(handle: &PeerHandle, env: &Arc<Envelope>) -> Result<(), SendError> {
    let result = handle.try_deliver(Outbound::Event(Arc::clone(env)));
    if result == Err(SendError::Full) {
        handle.close(CloseReason::SlowConsumer);
    }
    result
}

fn deliver_to_others(room: &Room, except: &PeerId, env: &Arc<Envelope>) {
    for m in room.members.iter().filter(|m| &m.id != except) {
        // A member that cannot take a membership event is closed by `deliver`; its own
        // removal then tells the others.
        let _ = deliver(&m.handle, env);
    }
}

fn close_members(id: &RoomId, room: &mut Room, reason: RoomClosedReason) {
    let env = Envelope::new(Event::RoomClosed {
        room: id.clone(),
        reason,
    });
    let close = match reason {
        RoomClosedReason::Inactive => CloseReason::RoomInactive,
        RoomClosedReason::Deleted => CloseReason::RoomDeleted,
    };
    for m in room.members.drain(..) {
        // The member's adapter decides what a closed room means for its connection; if it
        // cannot even be told, close the connection.
        if m.handle
            .try_deliver(Outbound::Event(Arc::clone(&env)))
            .is_err()
        {
            m.handle.close(close);
        }
    }
}

impl Room {
    fn touch(&mut self, now_ms: u64) {
        self.last_activity = Instant::now();
        self.last_activity_ms = now_ms;
    }

    fn snapshot(&self, id: &RoomId) -> RoomSnapshot {
        RoomSnapshot {
            id: id.clone(),
            name: if self.name.is_empty() {
                Arc::from(id.as_str())
            } else {
                self.name.clone()
            },
            host: self.host.clone(),
            host_name: self.host_name.clone(),
            attributes: self.attributes.clone(),
            created_at_ms: self.created_at_ms,
            last_activity_ms: self.last_activity_ms,
            capacity: self.capacity,
            members: self.members.iter().map(Member::summary).collect(),
        }
    }
}

impl Member {
    fn summary(&self) -> MemberSummary {
        MemberSummary {
            id: self.id.clone(),
            name: self.name.clone(),
            is_host: self.is_host,
            joined_at_ms: self.joined_at_ms,
            last_heartbeat_ms: self.last_heartbeat_ms,
            dialect: self.handle.dialect(),
        }
    }
}

/// A peer's place in a room. Dropping it removes the peer and tells the room `PeerLeft`.
pub struct Membership {
    registry: Registry,
    room: RoomId,
    epoch: u64,
    serial: u64,
    peer: PeerId,
    conn: crate::ConnId,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("room", &self.room)
            .field("peer", &self.peer)
            .field("conn", &self.conn)
            .finish()
    }
}

impl Membership {
    /// The room.
    pub fn room(&self) -> &RoomId {
        &self.room
    }

    /// The peer's id.
    pub fn peer(&self) -> &PeerId {
        &self.peer
    }

    /// Whether this guard still refers to a live member (its room was not closed or
    /// deleted meanwhile).
    pub fn is_live(&self) -> bool {
        let mut state = self.registry.lock();
        self.room_mut(&mut state)
            .is_ok_and(|room| room.members.iter().any(|m| m.serial == self.serial))
    }

    fn room_mut<'s>(&self, state: &'s mut State) -> Result<&'s mut Room, RelayError> {
        state
            .rooms
            .get_mut(&self.room)
            .filter(|r| r.epoch == self.epoch)
            .ok_or_else(|| RelayError::NotInRoom(self.room.clone()))
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.registry.remove(self);
    }
}
