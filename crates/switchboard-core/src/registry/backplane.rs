//! The seam for a backend that keeps rooms elsewhere (cluster mode): a node's own members
//! live in its [`Registry`] as on one node, and [`Backplane`] is what the backend does with
//! them that a single node never needs: seat a member in a room mirrored from elsewhere,
//! relay counting remote members, deliver events that came from other nodes, tell a sender of
//! a loss found elsewhere, close members the cluster removed. The registry's own API stays
//! the single-node service.

use super::*;

/// What [`Backplane::join_mirrored`] needs to know about a room kept elsewhere.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    /// How to make this node's copy of the room when it has none.
    pub create: CreateOptions,
    /// Whether the join created the room (cluster-wide).
    pub created: bool,
    /// The members held by other nodes, for the joiner's `Joined`.
    pub remote: Vec<MemberSummary>,
}

/// A [`Registry`] as a cluster backend drives it (clone-cheap, like the registry).
#[derive(Clone, Debug)]
pub struct Backplane {
    registry: Registry,
}

impl Backplane {
    /// The backplane over `registry` (the node's own members).
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }

    /// The registry itself, for what a single node does too (touches, sweeps, listings).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A join into this node's copy of a room whose truth is kept elsewhere (a cluster
    /// backend that has already checked capacity and identity cluster-wide): the room is
    /// created here from `mirror.create` when missing (no creation gate, no room limit: the
    /// backend decided), and the joiner's `Joined` lists `mirror.remote` (members held by
    /// other nodes) with this node's members, in join order.
    ///
    /// # Errors
    /// [`JoinError::PeerIdTaken`] when another local connection holds the id.
    pub fn join_mirrored(&self, req: JoinRequest, mirror: Mirror) -> Result<Seat, JoinError> {
        self.registry.join_inner(req, Some(mirror))
    }

    /// [`Registry::relay_now`] to this node's members, for a room that also has
    /// `remote_members` on other nodes (counted in the signal's audience; the backend
    /// delivers to them). A target that is not a local member is [`RelayError::PeerNotFound`].
    ///
    /// # Errors
    /// See [`RelayError`].
    pub fn relay_with(
        &self,
        from: &SeatKey,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
        remote_members: u32,
    ) -> Result<Delivery, RelayError> {
        self.registry
            .relay_counting(from, target, kind, payload, origin, remote_members)
    }

    /// Delivers an event that arrived from elsewhere (another node) to this node's members
    /// of `room`, except `except`: how many outboxes took it, or
    /// [`RelayError::Undelivered`] naming the members that could not (each is closed as a
    /// slow consumer), so that a cluster backend can tell the sender, as
    /// [`relay_now`](Self::relay_now) does on one node.
    ///
    /// # Errors
    /// [`RelayError::Undelivered`].
    pub fn deliver_local(
        &self,
        room: &RoomId,
        except: Option<&PeerId>,
        env: &Arc<Envelope>,
    ) -> Result<usize, RelayError> {
        let mut state = self.registry.lock();
        let Some(r) = state.rooms.get_mut(room) else {
            return Ok(0);
        };
        // Activity elsewhere in the room is activity here (the inactivity sweep).
        if matches!(env.event, Event::Signal(_)) {
            r.touch(unix_millis());
        }
        let mut delivered = 0;
        let mut failed = Vec::new();
        for m in r.members.iter().filter(|m| Some(&m.id) != except) {
            match deliver(&m.handle, env) {
                Ok(()) => delivered += 1,
                Err(_) => failed.push(m.id.clone()),
            }
        }
        if failed.is_empty() {
            Ok(delivered)
        } else {
            Err(RelayError::Undelivered(failed))
        }
    }

    /// Delivers an event from elsewhere to one local member.
    ///
    /// # Errors
    /// [`RelayError::PeerNotFound`] when it is not here; [`RelayError::Undelivered`] when
    /// its outbox could not take it (it is closed as a slow consumer).
    pub fn deliver_to(
        &self,
        room: &RoomId,
        peer: &PeerId,
        env: &Arc<Envelope>,
    ) -> Result<(), RelayError> {
        let mut state = self.registry.lock();
        let member = state.rooms.get_mut(room).and_then(|r| {
            r.touch(unix_millis());
            r.members.iter().find(|m| &m.id == peer)
        });
        let Some(m) = member else {
            return Err(RelayError::PeerNotFound(peer.clone()));
        };
        deliver(&m.handle, env).map_err(|_| RelayError::Undelivered(vec![peer.clone()]))
    }

    /// Removes the member `key` names, if it is still there (what dropping its [`Seat`]
    /// does). Returns whether it was removed: `false` for a seat retired by a re-join or a
    /// room closed meanwhile. For a service that wraps this registry's seats in its own.
    pub fn release(&self, key: &SeatKey) -> bool {
        self.registry.shared.release_member(key)
    }

    /// Whether the member `key` names is still here.
    pub fn is_live(&self, key: &SeatKey) -> bool {
        self.registry.shared.is_live(key)
    }

    /// How many members `room` has here.
    pub fn member_count(&self, room: &RoomId) -> usize {
        self.registry
            .lock()
            .rooms
            .get(room)
            .map_or(0, |r| r.members.len())
    }

    /// Tells the member `key` names that a signal it sent did not get through
    /// ([`Outbound::Undelivered`]). False when it is gone; a full outbox closes it as a slow
    /// consumer, as any delivery would.
    pub fn notify_undelivered(&self, key: &SeatKey, error: RelayError) -> bool {
        let state = self.registry.lock();
        let Some(m) = state
            .rooms
            .get(&key.room)
            .filter(|r| r.epoch == key.epoch)
            .and_then(|r| r.members.iter().find(|m| m.serial == key.serial))
        else {
            return false;
        };
        let result = m.handle.try_deliver(Outbound::Undelivered(Box::new(error)));
        if result == Err(SendError::Full) {
            m.handle.close(CloseReason::SlowConsumer);
        }
        result.is_ok()
    }

    /// Whether `peer` is a member of `room` here.
    pub fn has_member(&self, room: &RoomId, peer: &PeerId) -> bool {
        self.registry
            .lock()
            .rooms
            .get(room)
            .is_some_and(|r| r.members.iter().any(|m| &m.id == peer))
    }

    /// Asks one member's connection to close with `reason` (a cluster backend learned that
    /// its membership was removed elsewhere). Returns whether it is here.
    pub fn close_member(&self, room: &RoomId, peer: &PeerId, reason: CloseReason) -> bool {
        let state = self.registry.lock();
        let Some(m) = state
            .rooms
            .get(room)
            .and_then(|r| r.members.iter().find(|m| &m.id == peer))
        else {
            return false;
        };
        m.handle.close(reason);
        true
    }

    /// Asks every member's connection to close with `reason` (a node that lost its place in
    /// a cluster). Their seats' drops then remove them.
    pub fn close_all(&self, reason: CloseReason) -> usize {
        let state = self.registry.lock();
        let mut n = 0;
        for m in state.rooms.values().flat_map(|r| r.members.iter()) {
            m.handle.close(reason);
            n += 1;
        }
        n
    }
}
