//! The command layer: one place that executes what any dialect asks for, against the
//! membership service, for every dialect alike.
//!
//! A dialect's codec turns a frame into a [`Command`]; [`Session::apply`] executes it for one
//! connection against a [`Context`] — the membership service, the token verifier, the ICE
//! servers and the few other things commands use, borrowed from the server's state — and
//! answers with a [`Reply`] or a [`CommandError`], which the codec renders back into its
//! frames. The rules every dialect shares are decided here and nowhere else: which room a
//! message acts on, whether the sender may claim an id, which tokens are accepted,
//! token-bound rooms, rooms per connection, and how a refusal is counted.
//!
//! | Module | Owns |
//! |---|---|
//! | [`context`] | [`Context`]: what commands may use beyond their connection |
//! | [`session`] | [`Session`]: a connection's identity and seats; claims; which room a message acts on |
//! | [`auth`] | [`check_token`], the one check of every token (message, URL, handshake, validate); `auth` |
//! | [`join`] | joining and creating rooms: [`Join`], [`PeerChoice`], [`Scope`] |
//! | [`leave`] | leaving: [`Leave`] |
//! | [`relay`] | relaying signals (the hot path): [`Relay`] |
//! | [`heartbeat`] | heartbeats |
//! | [`mailbox`] | a room's mailbox: send and replay |
//! | [`telemetry`] | WebRTC session reports: [`Telemetry`] |
//! | `error` | [`CommandError`] and its one code table |
//!
//! Each command's file carries its table-driven tests, run against the in-memory
//! [`Registry`](switchboard_core::Registry).

pub mod auth;
pub mod context;
mod error;
pub mod heartbeat;
pub mod join;
pub mod leave;
pub mod mailbox;
pub mod relay;
pub mod session;
pub mod telemetry;
#[cfg(test)]
mod testing;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use serde_json::Value;
use switchboard_core::{PeerId, RoomId};

pub use self::auth::{TokenCheck, TokenRefusal, check_token};

/// The longest user, peer or room id any dialect accepts (the rendezvous dialect's rooms and
/// y-webrtc's topics keep their tighter caps). An id is repeated in every frame about its
/// holder, so a long one turned a few bytes sent into megabytes sent to room-mates.
pub const MAX_ID_BYTES: usize = 256;

/// Refuses an id longer than [`MAX_ID_BYTES`]; `what` names it in the error.
pub fn check_id(what: &'static str, id: &str) -> Result<(), CommandError> {
    if id.len() > MAX_ID_BYTES {
        return Err(CommandError::IdTooLong {
            what,
            max: MAX_ID_BYTES,
        });
    }
    Ok(())
}
pub use self::context::Context;
pub use self::error::{CommandError, truncate};
pub use self::join::{Join, PeerChoice, Scope};
pub use self::leave::Leave;
pub use self::relay::Relay;
pub use self::session::{Claim, Identity, Session};
pub use self::telemetry::Telemetry;

/// What a connection asks the server to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Authenticate as `user` for `room`, with a token (required in production).
    Authenticate {
        /// The user id.
        user: String,
        /// The room the connection is for.
        room: String,
        /// The token, if the client sent one.
        token: Option<String>,
    },
    /// Join (or create) a room.
    Join(Join),
    /// Leave a room.
    Leave(Leave),
    /// Relay a signal.
    Relay(Relay),
    /// A liveness message: marks the connection's rooms active.
    Heartbeat {
        /// Whether it acts as the authenticated identity (then it needs one).
        claim: Claim,
    },
    /// Queue `payload` in the room's mailbox for `to`.
    MailboxSend {
        /// The recipient's id in the room.
        to: PeerId,
        /// The item, as raw JSON.
        payload: Bytes,
    },
    /// The connection has every mailbox item below `delivered_up_to`; replay the rest.
    MailboxHello {
        /// The next sequence number the client expects.
        delivered_up_to: u64,
    },
    /// A client's report about its WebRTC session (metrics only).
    Telemetry(Telemetry),
    /// Several commands in order (a y-webrtc `subscribe` to several topics); stops at the
    /// first refusal.
    Each(Vec<Command>),
    /// A refusal found while decoding, in its place among [`Command::Each`]'s commands (the
    /// ones before it still run).
    Refuse(CommandError),
    /// Nothing to do (a message the dialect ignores).
    Ignore,
}

/// What a command did, for the codec to render.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Nothing to say (the events in the outbox say it).
    None,
    /// Authenticated.
    Authenticated {
        /// As whom.
        user: PeerId,
        /// For which room.
        room: RoomId,
        /// ICE servers with TURN credentials for this user.
        ice_servers: Value,
    },
    /// Joined (the `Joined` event with the room is in the outbox).
    Joined {
        /// Where.
        room: RoomId,
        /// As whom.
        peer: PeerId,
    },
    /// Left.
    Left {
        /// Where from.
        room: RoomId,
        /// Who.
        peer: PeerId,
    },
    /// A signal went to this many recipients.
    Relayed {
        /// How many outboxes took it.
        delivered: usize,
    },
    /// A heartbeat was noted.
    Heartbeat {
        /// The authenticated room, if any.
        room: Option<RoomId>,
        /// The authenticated user, if any.
        user: Option<PeerId>,
    },
    /// Mailbox items to replay, in order.
    Mailbox(Vec<(u64, Bytes)>),
}

/// What [`Session::apply`] gives back: the outcome, or the work that leads to it.
pub enum Applied<'a> {
    /// Done now.
    Done(Result<Reply, CommandError>),
    /// Waiting on the membership service.
    Later(Pin<Box<dyn Future<Output = Result<Reply, CommandError>> + Send + 'a>>),
}

impl Applied<'_> {
    /// The outcome, waiting for it if need be.
    pub async fn outcome(self) -> Result<Reply, CommandError> {
        match self {
            Self::Done(r) => r,
            Self::Later(f) => f.await,
        }
    }
}

impl std::fmt::Debug for Applied<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Self::Later(_) => f.write_str("Later"),
        }
    }
}

impl Session {
    /// Executes `cmd` against `cx`. What every message does on one node — relays,
    /// heartbeats — is answered at once ([`Applied::Done`]); commands that may wait on the
    /// membership service (joins, mailboxes, several commands) or a relay that must cross
    /// the network come back as [`Applied::Later`], a boxed future, so that a connection's
    /// task carries no command state while it is idle.
    pub fn apply<'a>(&'a mut self, cx: &'a Context, cmd: Command) -> Applied<'a> {
        match cmd {
            Command::Authenticate { user, room, token } => {
                Applied::Done(self.authenticate(cx, user, room, token.as_deref()))
            }
            Command::Relay(r) => self.relay(cx, r),
            Command::Leave(l) => Applied::Done(self.leave(l)),
            Command::Heartbeat { claim } => Applied::Done(self.heartbeat(cx, &claim)),
            Command::Refuse(e) => Applied::Done(Err(e)),
            Command::Ignore => Applied::Done(Ok(Reply::None)),
            Command::Each(cmds) => Applied::Later(Box::pin(async move {
                let mut last = Ok(Reply::None);
                for cmd in cmds {
                    last = self.apply(cx, cmd).outcome().await;
                    if last.is_err() {
                        break;
                    }
                }
                last
            })),
            Command::Join(j) => self.join(cx, j),
            Command::MailboxSend { to, payload } => {
                Applied::Later(Box::pin(self.mailbox_send(cx, to, payload)))
            }
            Command::MailboxHello { delivered_up_to } => {
                Applied::Later(Box::pin(self.mailbox_hello(cx, delivered_up_to)))
            }
            Command::Telemetry(t) => Applied::Later(Box::pin(async move {
                self.telemetry(cx, t).await;
                Ok(Reply::None)
            })),
        }
    }
}
