//! [`CommandError`]: every way a message or command can be refused, in one typed enum.
//! Each has a canonical machine-readable [`code`](CommandError::code) and a human message
//! ([`Display`](std::fmt::Display)); each dialect's codec maps it to its wire form (an error
//! frame, an `error` event, a close code) in one place, and may keep the wording its
//! original server used.

use switchboard_core::{JoinError, PeerId, RelayError, RoomId};

use crate::auth::TokenError;

/// Why a message or command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    // --- the message itself ---------------------------------------------------------------
    /// Not JSON (or not UTF-8).
    #[error("Invalid message format")]
    BadJson,
    /// JSON, but not an object with the fields of the right types.
    #[error("Invalid message format: expected a JSON object with a string \"type\"")]
    BadMessage,
    /// No `type`.
    #[error("Missing message type")]
    MissingType,
    /// A `type` the dialect does not know (truncated to 64 characters).
    #[error("Unknown message type: {0}")]
    UnknownType(String),
    /// Required fields are missing; the text names them.
    #[error("{0}")]
    MissingFields(&'static str),
    /// A user, peer or room id longer than [`MAX_ID_BYTES`](super::MAX_ID_BYTES): it would be
    /// repeated in every frame about its holder.
    #[error("{what} is longer than {max} bytes")]
    IdTooLong {
        /// Which id (`userId`, `peerId`, `roomId`).
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// The payload does not have the expected shape; the text says which.
    #[error("{0}")]
    BadPayload(String),
    /// A binary frame where the dialect takes only text.
    #[error("Binary frames are not supported; send JSON text")]
    BinaryUnsupported,
    /// Larger than `MAX_FRAME_BYTES`.
    #[error("Message of {len} bytes exceeds the {max} byte limit")]
    FrameTooLarge {
        /// The message's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Over `MAX_MESSAGES_PER_SECOND`.
    #[error("Too many messages; slow down")]
    RateLimited,

    // --- who is asking ----------------------------------------------------------------------
    /// A token is required and none was given.
    #[error("Missing auth token. Request token from /api/auth/token endpoint first.")]
    MissingToken,
    /// The token was refused.
    #[error("{0}")]
    Token(TokenError),
    /// A room or signal message before authenticating.
    #[error("Not authenticated")]
    NotAuthenticated,
    /// The message claims another user id than the authenticated one.
    #[error("User ID mismatch: userId must be the authenticated user")]
    UserMismatch,
    /// The token admits to another room.
    #[error("Not authorized for this room. Token is for room {0}")]
    RoomMismatch(RoomId),
    /// The rendezvous `key` is missing or wrong.
    #[error("Missing or wrong key")]
    InvalidKey,
    /// The room admits only peers holding a token for it.
    #[error("This room requires a token")]
    TokenRequired,
    /// A token holder may join token rooms only (anonymous and token rooms never mix).
    #[error("A token holder may only join rooms created with a token")]
    RoomNotSecured,

    // --- rooms ------------------------------------------------------------------------------
    /// The room does not exist.
    #[error("Room not found")]
    RoomNotFound(RoomId),
    /// The room exists already.
    #[error("Room already exists")]
    RoomExists(RoomId),
    /// The room is at capacity.
    #[error("Room is full ({capacity} peers)")]
    RoomFull {
        /// Its capacity.
        capacity: usize,
    },
    /// `MAX_ROOMS` rooms are alive.
    #[error("Room limit reached ({0} rooms)")]
    TooManyRooms(usize),
    /// The connection holds as many rooms (topics) as it may.
    #[error("A connection may be in at most {0} rooms")]
    TooManyRoomsPerConnection(usize),
    /// Another connection holds this peer id in the room.
    #[error("User {} is already in this room on another connection", truncate(.0.as_str()))]
    PeerIdTaken(PeerId),
    /// No room may be created now (memory, shutdown).
    #[error("Server is not accepting new rooms right now")]
    Overloaded,
    /// The outboxes together hold more than `BUFFERED_BYTES_MAX`: nothing is relayed until
    /// slow readers are closed.
    #[error("Server is busy delivering earlier messages; try again shortly")]
    ServerBusy,
    /// The client's room creation budget is spent.
    #[error("Too many rooms created from this address; try again later")]
    CreationRateLimited,
    /// A second join where the dialect allows one.
    #[error("Already joined")]
    AlreadyJoined,
    /// A first message that is not the dialect's join.
    #[error("The first message must be join")]
    JoinRequired,
    /// A peer id that is not a string of 1 to 128 characters.
    #[error("peerId must be a string of 1 to 128 characters")]
    InvalidPeerId,
    /// A room (topic) name over the dialect's limit.
    #[error("Room names are limited to {0} bytes")]
    RoomNameTooLong(usize),

    // --- delivery ---------------------------------------------------------------------------
    /// Not in the room the message names (or in no room).
    #[error("{}", match .0 { Some(r) => format!("Not in room {}", truncate(r.as_str())), None => "Not in a room".to_owned() })]
    NotInRoom(Option<RoomId>),
    /// The named recipient is not in the room.
    #[error("Peer {} not found in room", truncate(.0.as_str()))]
    PeerNotFound(PeerId),
    /// These recipients could not take the signal and were closed as slow consumers.
    #[error("Signal not delivered to: {}", names(.0))]
    Undelivered(Vec<PeerId>),
    /// The membership service could not be reached (cluster backend down).
    #[error("Service unavailable: {0}")]
    Unavailable(String),
}

/// At most 64 characters of a client-supplied string, for error texts.
pub fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn names(peers: &[PeerId]) -> String {
    let names: Vec<&str> = peers.iter().map(|p| truncate(p.as_str())).collect();
    names.join(", ")
}

impl CommandError {
    /// The canonical machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadMessage => "bad_message",
            Self::MissingType => "missing_type",
            Self::UnknownType(_) => "unknown_type",
            Self::MissingFields(_) => "missing_fields",
            Self::IdTooLong { .. } => "id_too_long",
            Self::BadPayload(_) => "bad_payload",
            Self::BinaryUnsupported => "binary_unsupported",
            Self::FrameTooLarge { .. } => "frame_too_large",
            Self::RateLimited => "rate_limited",
            Self::MissingToken => "missing_token",
            Self::Token(e) => e.code(),
            Self::NotAuthenticated => "not_authenticated",
            Self::UserMismatch => "user_mismatch",
            Self::RoomMismatch(_) => "room_mismatch",
            Self::InvalidKey => "invalid_key",
            Self::TokenRequired => "token_required",
            Self::RoomNotSecured => "room_not_secured",
            Self::RoomNotFound(_) => "room_not_found",
            Self::RoomExists(_) => "room_exists",
            Self::RoomFull { .. } => "room_full",
            Self::TooManyRooms(_) => "too_many_rooms",
            Self::TooManyRoomsPerConnection(_) => "too_many_rooms_per_connection",
            Self::PeerIdTaken(_) => "peer_id_taken",
            Self::Overloaded => "overloaded",
            Self::ServerBusy => "server_busy",
            Self::CreationRateLimited => "creation_rate_limited",
            Self::AlreadyJoined => "already_joined",
            Self::JoinRequired => "join_required",
            Self::InvalidPeerId => "invalid_peer_id",
            Self::RoomNameTooLong(_) => "room_name_too_long",
            Self::NotInRoom(_) => "not_in_room",
            Self::PeerNotFound(_) => "peer_not_found",
            Self::Undelivered(_) => "undelivered",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The limit this refusal counts against in `switchboard_limit_hits_total`, if any.
    pub fn limit(&self) -> Option<&'static str> {
        Some(match self {
            Self::FrameTooLarge { .. } => "frame_size",
            Self::RateLimited => "rate",
            Self::IdTooLong { .. } => "id_size",
            Self::RoomFull { .. } => "room_full",
            Self::TooManyRooms(_) => "rooms",
            Self::TooManyRoomsPerConnection(_) => "rooms_per_connection",
            Self::Overloaded => "memory",
            Self::ServerBusy => "buffered_bytes",
            Self::CreationRateLimited => "room_creations",
            _ => return None,
        })
    }
}

impl From<JoinError> for CommandError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::RoomNotFound(r) => Self::RoomNotFound(r),
            JoinError::RoomExists(r) => Self::RoomExists(r),
            JoinError::RoomFull { capacity, .. } => Self::RoomFull { capacity },
            JoinError::TooManyRooms(n) => Self::TooManyRooms(n),
            JoinError::PeerIdTaken { peer, .. } => Self::PeerIdTaken(peer),
            JoinError::NotAdmitting => Self::Overloaded,
            JoinError::CreationRateLimited => Self::CreationRateLimited,
            JoinError::TokenRequired(_) => Self::TokenRequired,
            JoinError::RoomNotSecured(_) => Self::RoomNotSecured,
            JoinError::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

impl From<RelayError> for CommandError {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::NotInRoom(r) => Self::NotInRoom(Some(r)),
            RelayError::PeerNotFound(p) => Self::PeerNotFound(p),
            RelayError::Undelivered(peers) => Self::Undelivered(peers),
            RelayError::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

impl From<TokenError> for CommandError {
    fn from(e: TokenError) -> Self {
        Self::Token(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (fuzz/fuzz_targets/socketio.rs): `PeerIdTaken` echoed the whole id a
    /// client joined with, so a 64 KiB `userId` came back in a 64 KiB `error`. Every refusal
    /// that names something a client sent names at most 64 characters of it.
    #[test]
    fn refusals_name_at_most_64_characters_of_a_client_string() {
        let long = "é".repeat(10_000);
        for e in [
            CommandError::PeerIdTaken(PeerId::new(&long)),
            CommandError::PeerNotFound(PeerId::new(&long)),
            CommandError::NotInRoom(Some(RoomId::new(&long))),
            CommandError::Undelivered(vec![PeerId::new(&long); 2]),
            CommandError::UnknownType(truncate(&long).to_owned()),
        ] {
            let text = e.to_string();
            assert!(
                text.chars().count() < 64 * 2 + 64,
                "{}: {} chars",
                e.code(),
                text.len()
            );
        }
        assert_eq!(
            CommandError::PeerIdTaken(PeerId::new("bob")).to_string(),
            "User bob is already in this room on another connection"
        );
    }
}
