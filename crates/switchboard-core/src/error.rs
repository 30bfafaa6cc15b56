//! Typed errors of the registry's operations. Adapters map each variant to their own
//! dialect's error frame or close code.

use crate::{PeerId, RoomId};

/// Why a peer could not create or join a room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The room does not exist (and the caller did not ask for it to be created).
    #[error("room {0} not found")]
    RoomNotFound(RoomId),
    /// `create` was asked for a room that already exists.
    #[error("room {0} already exists")]
    RoomExists(RoomId),
    /// The room is at its capacity.
    #[error("room {room} is full ({capacity} peers)")]
    RoomFull {
        /// The room.
        room: RoomId,
        /// Its capacity.
        capacity: usize,
    },
    /// The server holds as many rooms as it may.
    #[error("room limit reached ({0} rooms)")]
    TooManyRooms(usize),
    /// Another connection already holds this peer id in the room.
    #[error("peer id {peer} is already in room {room}")]
    PeerIdTaken {
        /// The room.
        room: RoomId,
        /// The contested id.
        peer: PeerId,
    },
    /// The server is refusing new rooms (memory pressure or shutdown).
    #[error("server is not admitting new rooms right now")]
    NotAdmitting,
    /// The creating client has created as many rooms as its budget allows for now.
    #[error("too many rooms created from this address; try again later")]
    CreationRateLimited,
    /// The room admits only peers holding a token for it, and the joiner has none.
    #[error("room {0} requires a token")]
    TokenRequired(RoomId),
    /// The joiner holds a token, and the room admits anonymous peers: the two never mix.
    #[error("room {0} is not a token room")]
    RoomNotSecured(RoomId),
    /// The membership service could not be reached (a cluster backend is down).
    #[error("membership service unavailable: {0}")]
    Unavailable(String),
}

/// Why a signal could not be relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The sender is no longer in the room (it was closed or swept).
    #[error("not in room {0}")]
    NotInRoom(RoomId),
    /// The named recipient is not in the sender's room.
    #[error("peer {0} not found in room")]
    PeerNotFound(PeerId),
    /// Recipients that could not take the signal (their outbox was full or closed);
    /// each of them has been closed. Everyone else got it.
    #[error("signal not delivered to {} peer(s)", .0.len())]
    Undelivered(Vec<PeerId>),
    /// The signal could not reach a recipient's node (a cluster backend is down).
    #[error("signal not delivered: {0}")]
    Unavailable(String),
}
