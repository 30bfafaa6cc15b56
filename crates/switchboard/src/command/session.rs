//! [`Session`]: one connection's state in the command layer — who it is ([`Identity`]) and
//! which rooms it is in (its seats) — and the two rules every command of a connection
//! shares: whether a message may act as the identity ([`Claim`]), and which room a message
//! acts on.

use std::net::IpAddr;

use smallvec::SmallVec;
use switchboard_core::{ConnId, DialectTag, Event, PeerHandle, PeerId, RoomId, Seat};

use super::CommandError;

/// Whether a command acts as the connection's authenticated identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Claim {
    /// No identity involved.
    #[default]
    None,
    /// As the authenticated user (refused before `auth`); a `userId` the message names must
    /// be that user.
    Identity(Option<String>),
}

/// Who a connection authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub user: PeerId,
    /// The room it is for (the one it joined last, once it has joined).
    pub room: RoomId,
    /// Whether a verified token named the room (then room operations are bound to it).
    pub token_bound: bool,
}

/// One connection's state in the command layer: who it is and which rooms it is in.
#[derive(Debug)]
pub struct Session {
    pub(super) handle: PeerHandle,
    pub(super) client: IpAddr,
    /// Whether this connection's dialect must authenticate with a token (`REQUIRE_TOKEN`).
    pub(super) token_required: bool,
    pub(super) identity: Option<Identity>,
    /// Most connections are in one room: its seat is kept inline, not on the heap.
    pub(super) seats: SmallVec<[Seat; 1]>,
}

impl Session {
    /// A session for the connection whose outbox is `handle`, from `client`, holding
    /// `identity` when the connection presented a verified token as it connected.
    /// `token_required`: its dialect must present a token (`REQUIRE_TOKEN`).
    pub fn new(
        handle: PeerHandle,
        client: IpAddr,
        token_required: bool,
        identity: Option<Identity>,
    ) -> Self {
        Self {
            handle,
            client,
            token_required,
            identity,
            seats: SmallVec::new(),
        }
    }

    /// The connection's outbox.
    pub fn handle(&self) -> &PeerHandle {
        &self.handle
    }

    /// The connection id.
    pub fn conn(&self) -> ConnId {
        self.handle.conn()
    }

    /// The dialect the connection speaks.
    pub fn dialect(&self) -> DialectTag {
        self.handle.dialect()
    }

    /// Who the connection authenticated as, if it did.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Whether the connection is in a room now.
    pub fn in_a_room(&self) -> bool {
        !self.seats.is_empty()
    }

    /// The rooms the connection is in, in no particular order.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomId> {
        self.seats.iter().map(Seat::room)
    }

    /// Leaves every room (each hears the peer left).
    pub fn leave_all(&mut self) {
        self.seats.clear();
    }

    /// Notes what an event from the outbox means for this session: a closed room is one
    /// the connection is no longer in.
    pub fn observe(&mut self, event: &Event) {
        if let Event::RoomClosed { room, .. } = event {
            self.seats.retain(|s| s.room() != room);
        }
    }

    /// Checks a claim: `Ok(Some(user))` acting as the identity, `Ok(None)` without one.
    pub(super) fn check_claim(&self, claim: &Claim) -> Result<Option<&PeerId>, CommandError> {
        match claim {
            Claim::None => Ok(None),
            Claim::Identity(claimed) => {
                let id = self
                    .identity
                    .as_ref()
                    .ok_or(CommandError::NotAuthenticated)?;
                match claimed {
                    Some(c) if !c.is_empty() && c.as_str() != id.user.as_str() => {
                        Err(CommandError::UserMismatch)
                    }
                    _ => Ok(Some(&id.user)),
                }
            }
        }
    }

    /// The seat a message acts on: the room it names, or the connection's only room.
    pub(super) fn seat_for(&self, room: Option<&RoomId>) -> Result<usize, CommandError> {
        match room {
            Some(r) => self
                .seats
                .iter()
                .position(|s| s.room() == r)
                .ok_or_else(|| CommandError::NotInRoom(Some(r.clone()))),
            None => match self.seats.len() {
                0 => Err(CommandError::NotInRoom(None)),
                1 => Ok(0),
                _ => Err(CommandError::MissingFields("Missing roomId")),
            },
        }
    }
}
