//! The in-memory [`MembershipService`]: every room, its members and their outboxes, behind
//! one mutex. The single-node default, and what a cluster node keeps for its own sockets.
//!
//! [`Registry`] is a clone-cheap handle. Each operation (join, leave, relay, sweep) takes the
//! lock once, does its bookkeeping, queues the resulting events into the recipients'
//! outboxes with non-blocking `try_deliver`, and releases it. Nothing awaits while the lock
//! is held (a `std::sync::Mutex` is the right tool: critical sections are short and never
//! cross an `.await`; clippy's `await_holding_lock` is denied workspace-wide).
//!
//! Queuing under the lock is what makes joins atomic and keeps each sender's signals in
//! order: the joiner's `Joined` and everyone else's `PeerJoined` are queued before any
//! other operation can observe the new member.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::Instant;

mod backplane;
mod mailbox;
mod service;

pub use self::backplane::{Backplane, Mirror};
use self::mailbox::Mailbox;

use crate::{
    CloseReason, CreateOptions, CreationGate, Delivery, DialectTag, Envelope, Event, FirstFlow,
    JoinError, JoinMode, JoinRequest, Limits, MemberSummary, MembershipService, Op, Outbound,
    PeerHandle, PeerId, RegistryStats, RelayError, RoomClosedReason, RoomId, RoomSnapshot, Seat,
    SeatKey, SeatOwner, SendError, Signal, SignalKind, SweepPolicy, SweepReport, Target,
};

/// Milliseconds since the Unix epoch (the timestamps the dialects put on the wire).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A clone-cheap handle to the shared in-memory rooms.
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
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomId, Room>,
    next_epoch: u64,
    peers: usize,
}

struct Room {
    /// Distinguishes this room from a later room with the same id, so that a stale
    /// [`Seat`] never removes a member of its successor.
    epoch: u64,
    name: Arc<str>,
    host: Option<PeerId>,
    host_name: Option<Arc<str>>,
    attributes: Vec<(Arc<str>, Arc<str>)>,
    capacity: Option<usize>,
    secured: bool,
    empty_grace: Option<Duration>,
    inactivity_timeout: Option<Duration>,
    created_at_ms: u64,
    last_activity_ms: u64,
    last_activity: Instant,
    /// When the room last became empty. `None` while it has members, and for a room created
    /// empty (through the API) that nobody has joined yet: such a room waits for its first
    /// member for the sweep policy's `unjoined_ttl`, whatever its empty grace.
    empty_since: Option<Instant>,
    /// When the room first held two members, and whether its peers reported a connection.
    paired_at: Option<Instant>,
    flowed: bool,
    members: Vec<Member>,
    /// Items queued for members by id (the nt dialect's mailbox); boxed, as most rooms
    /// never have one.
    mailbox: Option<Box<Mailbox>>,
}

struct Member {
    /// The serial of the [`Seat`] that owns this entry; a re-join hands out a new seat and
    /// retires the old one's serial.
    serial: u64,
    id: PeerId,
    handle: PeerHandle,
    name: Option<Arc<str>>,
    is_host: bool,
    joined_at_ms: u64,
    last_heartbeat_ms: u64,
}

impl Registry {
    /// A registry that creates rooms up to its limits.
    pub fn new(limits: Limits) -> Self {
        Self::build(limits, None)
    }

    /// A registry that asks `gate` before creating a room.
    pub fn with_gate(limits: Limits, gate: Arc<dyn CreationGate>) -> Self {
        Self::build(limits, Some(gate))
    }

    fn build(limits: Limits, gate: Option<Arc<dyn CreationGate>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                limits,
                gate,
            }),
        }
    }

    /// The limits this registry enforces.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Creates an empty room (the HTTP API's `POST /api/rooms`).
    ///
    /// # Errors
    /// [`JoinError::RoomExists`], [`JoinError::TooManyRooms`], or the [`CreationGate`]'s
    /// refusal.
    pub fn create_room_now(
        &self,
        id: RoomId,
        opts: CreateOptions,
    ) -> Result<RoomSnapshot, JoinError> {
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

    /// [`MembershipService::join`], answered at once.
    ///
    /// # Errors
    /// See [`JoinError`].
    pub fn join_now(&self, req: JoinRequest) -> Result<Seat, JoinError> {
        self.join_inner(req, None)
    }

    fn join_inner(&self, req: JoinRequest, mirror: Option<Mirror>) -> Result<Seat, JoinError> {
        let JoinRequest {
            room: room_id,
            peer,
            handle,
            opts,
        } = req;
        let now_ms = unix_millis();
        let conn = handle.conn();
        let mut state = self.lock();
        let exists = state.rooms.contains_key(&room_id);
        let (created, remote) = match mirror {
            None => {
                let created = match (opts.mode, exists) {
                    (JoinMode::Existing, false) => return Err(JoinError::RoomNotFound(room_id)),
                    (JoinMode::Create, true) => return Err(JoinError::RoomExists(room_id)),
                    (_, true) => false,
                    (_, false) => {
                        self.check_room_admission(&state, opts.create.creator)?;
                        let mut create = opts.create;
                        create.host = Some(peer.clone());
                        create.host_name.clone_from(&opts.name);
                        create.secured = opts.authenticated;
                        let room = new_room(&mut state, create);
                        state.rooms.insert(room_id.clone(), room);
                        true
                    }
                };
                (created, Vec::new())
            }
            Some(m) => {
                if !exists {
                    let room = new_room(&mut state, m.create);
                    state.rooms.insert(room_id.clone(), room);
                }
                (m.created, m.remote)
            }
        };
        let server_cap = self.shared.limits.max_peers_per_room;
        state.next_epoch += 1;
        let serial = state.next_epoch;
        let State { rooms, peers, .. } = &mut *state;
        let room = rooms
            .get_mut(&room_id)
            .expect("room exists: checked or inserted above");
        // A secured room admits token holders only; with `separate_secured`, token holders
        // join secured rooms only.
        if room.secured && !opts.authenticated {
            return Err(JoinError::TokenRequired(room_id));
        }
        if !room.secured && opts.authenticated && self.shared.limits.separate_secured {
            return Err(JoinError::RoomNotSecured(room_id));
        }
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
            if room.members.len() == 2 && room.paired_at.is_none() {
                room.paired_at = Some(Instant::now());
            }
        }
        room.empty_since = None;
        room.touch(now_ms);
        let mut snapshot = room.snapshot(&room_id);
        if !remote.is_empty() {
            snapshot.members.extend(remote);
            // Stable: local members keep their order among themselves.
            snapshot.members.sort_by_key(|m| m.joined_at_ms);
        }
        let joiner = &room
            .members
            .iter()
            .find(|m| m.serial == serial)
            .expect("joiner is a member")
            .handle;
        // The joiner's outbox is fresh or its own; a failure here means it is already gone,
        // and its seat's drop will undo the join.
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
        }
        let epoch = room.epoch;
        drop(state);
        let owner: Arc<dyn SeatOwner> = self.shared.clone();
        Ok(Seat::new(
            owner,
            SeatKey {
                room: room_id,
                peer,
                conn,
                epoch,
                serial,
            },
        ))
    }

    /// [`MembershipService::relay`], answered at once.
    ///
    /// # Errors
    /// See [`RelayError`].
    pub fn relay_now(
        &self,
        from: &SeatKey,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
    ) -> Result<Delivery, RelayError> {
        self.relay_counting(from, target, kind, payload, origin, 0)
    }

    /// [`relay_now`](Self::relay_now) to this node's members, for a room that also has
    /// `remote_members` on other nodes (counted in the signal's audience; a cluster backend
    /// delivers to them). A target that is not a local member is [`RelayError::PeerNotFound`].
    ///
    /// # Errors
    /// See [`RelayError`].
    pub(super) fn relay_counting(
        &self,
        from: &SeatKey,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
        remote_members: u32,
    ) -> Result<Delivery, RelayError> {
        let now_ms = unix_millis();
        let mut state = self.lock();
        let room = room_of(&mut state, from)?;
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
            audience: u32::try_from(room.members.len())
                .unwrap_or(u32::MAX)
                .saturating_add(remote_members),
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
            }
        }
        drop(state);
        if failed.is_empty() {
            Ok(Delivery { delivered })
        } else {
            Err(RelayError::Undelivered(failed))
        }
    }

    /// [`MembershipService::first_flow`], answered at once.
    pub fn first_flow_now(&self, seat: &SeatKey) -> Option<FirstFlow> {
        let mut state = self.lock();
        let room = room_of(&mut state, seat).ok()?;
        Some(if std::mem::replace(&mut room.flowed, true) {
            FirstFlow::Again
        } else {
            FirstFlow::First {
                paired_for: room.paired_at.map(|t| t.elapsed()),
            }
        })
    }

    /// Records that the seat's peer is alive and its room active.
    pub fn touch_now(&self, seat: &SeatKey) {
        let now_ms = unix_millis();
        let mut state = self.lock();
        if let Ok(room) = room_of(&mut state, seat) {
            room.touch(now_ms);
            if let Some(m) = room.members.iter_mut().find(|m| m.serial == seat.serial) {
                m.last_heartbeat_ms = now_ms;
            }
        }
    }

    /// Asks every member that is `peer`, in any room, to close with `reason`. Returns how
    /// many were asked.
    pub fn close_peer(&self, peer: &PeerId, reason: CloseReason) -> usize {
        let state = self.lock();
        let mut n = 0;
        for m in state.rooms.values().flat_map(|r| r.members.iter()) {
            if &m.id == peer {
                m.handle.close(reason);
                n += 1;
            }
        }
        n
    }

    /// Deletes a room, closing its members. Returns whether it existed.
    pub fn delete_room_now(&self, id: &RoomId) -> bool {
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
    pub fn room_now(&self, id: &RoomId) -> Option<RoomSnapshot> {
        self.lock().rooms.get(id).map(|r| r.snapshot(id))
    }

    /// Every room as it stands, ordered by creation time.
    pub fn rooms_now(&self) -> Vec<RoomSnapshot> {
        let state = self.lock();
        let mut all: Vec<_> = state.rooms.iter().map(|(id, r)| r.snapshot(id)).collect();
        drop(state);
        all.sort_by(|a, b| (a.created_at_ms, a.id.as_str()).cmp(&(b.created_at_ms, b.id.as_str())));
        all
    }

    /// Room and peer counts.
    pub fn stats_now(&self) -> RegistryStats {
        let state = self.lock();
        RegistryStats {
            rooms: state.rooms.len(),
            peers: state.peers,
        }
    }
}

impl Shared {
    /// The registry's state. A panic while the lock was held may have left rooms, members
    /// and the peer index half-updated (a member in a room but not in the index, a seat
    /// whose epoch no longer matches): rather than serve wrong membership to every peer,
    /// the process aborts, loudly, and is restarted by its supervisor.
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(_) => poisoned(),
        }
    }
}

/// Aborts after a panic inside the registry's critical section.
#[cold]
fn poisoned() -> ! {
    eprintln!(
        "switchboard: the room registry's lock was poisoned by a panic while it was held; \
         its state can no longer be trusted: aborting"
    );
    std::process::abort()
}

impl SeatOwner for Shared {
    fn release(&self, key: &SeatKey) {
        self.release_member(key);
    }

    fn is_live(&self, key: &SeatKey) -> bool {
        let state = self.lock();
        state
            .rooms
            .get(&key.room)
            .filter(|r| r.epoch == key.epoch)
            .is_some_and(|room| room.members.iter().any(|m| m.serial == key.serial))
    }
}

impl Shared {
    fn release_member(&self, key: &SeatKey) -> bool {
        let mut state = self.lock();
        let State { rooms, peers, .. } = &mut *state;
        let Some(room) = rooms.get_mut(&key.room).filter(|r| r.epoch == key.epoch) else {
            return false;
        };
        let Some(i) = room.members.iter().position(|x| x.serial == key.serial) else {
            return false;
        };
        room.members.remove(i);
        *peers -= 1;
        room.touch(unix_millis());
        let env = Envelope::new(Event::PeerLeft {
            room: key.room.clone(),
            peer: key.peer.clone(),
        });
        deliver_to_others(room, &key.peer, &env);
        if room.members.is_empty() {
            if room.empty_grace == Some(Duration::ZERO) {
                rooms.remove(&key.room);
            } else {
                room.empty_since = Some(Instant::now());
                room.mailbox = None;
            }
        }
        true
    }
}

fn room_of<'s>(state: &'s mut State, key: &SeatKey) -> Result<&'s mut Room, RelayError> {
    state
        .rooms
        .get_mut(&key.room)
        .filter(|r| r.epoch == key.epoch)
        .ok_or_else(|| RelayError::NotInRoom(key.room.clone()))
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
        secured: opts.secured,
        empty_grace: opts.empty_grace,
        inactivity_timeout: opts.inactivity_timeout,
        created_at_ms: now_ms,
        last_activity_ms: now_ms,
        last_activity: Instant::now(),
        empty_since: None,
        paired_at: None,
        flowed: false,
        members: Vec::new(),
        mailbox: None,
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
            secured: self.secured,
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

#[cfg(test)]
impl Registry {
    /// Runs `f` while holding the registry's lock (the test that poisons it).
    fn with_lock_held(&self, f: impl FnOnce()) {
        let _guard = self.lock();
        f();
    }
}

#[cfg(test)]
mod tests;
