//! The command layer: one place that executes what any dialect asks for, against the
//! membership service, for every dialect alike.
//!
//! A dialect's codec turns a frame into a [`Command`]; [`Session::apply`] executes it for one
//! connection — authenticate, join (creating rooms through the one creation policy), leave,
//! relay, heartbeat, the mailbox — and answers with a [`Reply`] or a [`CommandError`], which
//! the codec renders back into its frames. The rules every dialect shares are decided here
//! and nowhere else: which room a message acts on, whether the sender may claim an id,
//! token-bound rooms, rooms per connection, and how a refusal is counted.

mod error;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use smallvec::SmallVec;
use switchboard_core::{
    ConnId, CreateOptions, Delivery, DialectTag, Event, FirstFlow, JoinError, JoinMode,
    JoinOptions, JoinRequest, PeerHandle, PeerId, RelayError, RoomId, Seat, SignalKind, Target,
};

pub use self::error::{CommandError, truncate};
use crate::metrics::{NtModeLabel, NtReasonLabel};
use crate::state::AppState;

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

/// Who a join makes the connection in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChoice {
    /// The authenticated user.
    Identity,
    /// This id.
    Named(PeerId),
    /// A fresh random id (UUID v4, simple form).
    Generated,
    /// An id derived from the connection, unique on this server (`y-c123`).
    Connection,
    /// A fixed slot of the room (the nt dialect's side `A`/`B`); a token binds the room, not
    /// the slot.
    Side(PeerId),
}

/// How many rooms the connection may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One: joining another room leaves the current one.
    One,
    /// Up to `max` at once.
    Many {
        /// The most at once.
        max: usize,
    },
}

/// A join.
#[derive(Debug, Clone)]
pub struct Join {
    /// The room; `None` is the authenticated room.
    pub room: Option<RoomId>,
    /// As whom.
    pub peer: PeerChoice,
    /// The identity claim it carries.
    pub claim: Claim,
    /// Existing, create, or either.
    pub mode: JoinMode,
    /// A display name.
    pub name: Option<Arc<str>>,
    /// How the room is made if this join creates it (its creator is filled in here).
    pub create: CreateOptions,
    /// Rooms per connection.
    pub scope: Scope,
    /// Joining a room the connection is already in: `true` joins again (the joiner hears
    /// `Joined` again), `false` does nothing.
    pub rejoin: bool,
}

/// A leave.
#[derive(Debug, Clone)]
pub struct Leave {
    /// The room; `None` is the connection's only room.
    pub room: Option<RoomId>,
    /// The identity claim it carries.
    pub claim: Claim,
    /// Not being in the room is fine (nothing happens) rather than an error.
    pub quiet: bool,
}

/// A relay.
#[derive(Debug, Clone)]
pub struct Relay {
    /// The room; `None` is the connection's only room.
    pub room: Option<RoomId>,
    /// One peer, or everyone else in the room.
    pub target: Target,
    /// What it is.
    pub kind: SignalKind,
    /// The payload bytes, relayed as they came.
    pub payload: Bytes,
    /// The identity claim it carries.
    pub claim: Claim,
}

/// A WebRTC session report (the nt dialect's `telemetry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Telemetry {
    /// ICE connected; counted once per room, with its `mode`.
    Connected {
        /// The connection mode the client names (`direct`, `relay`, …).
        mode: Option<String>,
    },
    /// ICE failed, with a reason.
    Failed {
        /// Why, as the client says.
        reason: Option<String>,
    },
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

/// Who a connection authenticated as.
#[derive(Debug, Clone)]
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
    handle: PeerHandle,
    client: IpAddr,
    /// Whether this connection's dialect must authenticate with a token (`REQUIRE_TOKEN`).
    token_required: bool,
    identity: Option<Identity>,
    /// Most connections are in one room: its seat is kept inline, not on the heap.
    seats: SmallVec<[Seat; 1]>,
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

    /// Leaves every room (each hears the peer left).
    /// Whether the connection is in a room now.
    pub fn in_a_room(&self) -> bool {
        !self.seats.is_empty()
    }

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

    /// Executes `cmd`. What every message does on one node — relays, heartbeats — is
    /// answered at once ([`Applied::Done`]); commands that may wait on the membership
    /// service (joins, mailboxes, several commands) or a relay that must cross the network
    /// come back as [`Applied::Later`], a boxed future, so that a connection's task carries
    /// no command state while it is idle.
    pub fn apply<'a>(&'a mut self, app: &'a AppState, cmd: Command) -> Applied<'a> {
        match cmd {
            Command::Authenticate { user, room, token } => {
                Applied::Done(self.authenticate(app, user, room, token))
            }
            Command::Relay(r) => self.relay(app, r),
            Command::Leave(l) => Applied::Done(self.leave(l)),
            Command::Heartbeat { claim } => Applied::Done(self.heartbeat(app, &claim)),
            Command::Refuse(e) => Applied::Done(Err(e)),
            Command::Ignore => Applied::Done(Ok(Reply::None)),
            Command::Each(cmds) => Applied::Later(Box::pin(async move {
                let mut last = Ok(Reply::None);
                for cmd in cmds {
                    last = self.apply(app, cmd).outcome().await;
                    if last.is_err() {
                        break;
                    }
                }
                last
            })),
            Command::Join(j) => self.join(app, j),
            Command::MailboxSend { to, payload } => Applied::Later(Box::pin(async move {
                let Some(seat) = self.seats.first() else {
                    return Ok(Reply::None);
                };
                let d = app
                    .membership
                    .mailbox_push(seat, to, payload, self.dialect())
                    .await?;
                app.metrics.signals_relayed.inc();
                Ok(Reply::Relayed {
                    delivered: d.delivered,
                })
            })),
            Command::MailboxHello { delivered_up_to } => Applied::Later(Box::pin(async move {
                let Some(seat) = self.seats.first() else {
                    return Ok(Reply::Mailbox(Vec::new()));
                };
                let items = app.membership.mailbox_replay(seat, delivered_up_to).await?;
                Ok(Reply::Mailbox(items))
            })),
            Command::Telemetry(t) => Applied::Later(Box::pin(async move {
                self.telemetry(app, t).await;
                Ok(Reply::None)
            })),
        }
    }

    fn authenticate(
        &mut self,
        app: &AppState,
        user: String,
        room: String,
        token: Option<String>,
    ) -> Result<Reply, CommandError> {
        if user.is_empty() || room.is_empty() {
            return Err(CommandError::MissingFields("Missing userId or roomId"));
        }
        let token_bound = match token.filter(|t| !t.is_empty()) {
            Some(t) => {
                app.auth.verify_for(self.client, &t, &user, &room)?;
                true
            }
            None if self.token_required => return Err(CommandError::MissingToken),
            None => false,
        };
        // Re-authenticating replaces the identity: leave every room joined under the old one.
        self.seats.clear();
        let user = PeerId::from(user);
        let room = RoomId::from(room);
        self.identity = Some(Identity {
            user: user.clone(),
            room: room.clone(),
            token_bound,
        });
        let ice_servers = Value::Array(crate::turn::ice_servers(&app.config, Some(user.as_str())));
        Ok(Reply::Authenticated {
            user,
            room,
            ice_servers,
        })
    }

    /// Checks a claim: `Ok(Some(user))` acting as the identity, `Ok(None)` without one.
    fn check_claim(&self, claim: &Claim) -> Result<Option<&PeerId>, CommandError> {
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

    fn join<'a>(&'a mut self, app: &'a AppState, j: Join) -> Applied<'a> {
        let request = match self.prepare_join(app, j) {
            Ok(Some(request)) => request,
            Ok(None) => return Applied::Done(Ok(Reply::None)),
            Err(e) => return Applied::Done(Err(e)),
        };
        let (room, peer) = (request.room.clone(), request.peer.clone());
        match app.membership.join(request).now() {
            Ok(outcome) => Applied::Done(self.joined(room, peer, outcome)),
            Err(op) => Applied::Later(Box::pin(async move {
                let outcome = op.await;
                self.joined(room, peer, outcome)
            })),
        }
    }

    /// Who joins where, under the connection's rules; `None` when there is nothing to do
    /// (a y-webrtc topic already held).
    fn prepare_join(
        &mut self,
        app: &AppState,
        j: Join,
    ) -> Result<Option<JoinRequest>, CommandError> {
        self.check_claim(&j.claim)?;
        // A token names its holder: the holder joins as that user (slot dialects as their
        // slot), and no one else can take that id with the token's room.
        let token_user = self
            .identity
            .as_ref()
            .filter(|id| id.token_bound)
            .map(|id| &id.user);
        let peer = match j.peer {
            PeerChoice::Identity => self
                .identity
                .as_ref()
                .ok_or(CommandError::NotAuthenticated)?
                .user
                .clone(),
            PeerChoice::Named(p) => match token_user {
                Some(user) if *user != p => return Err(CommandError::UserMismatch),
                _ => p,
            },
            PeerChoice::Generated => match token_user {
                Some(user) => user.clone(),
                None => PeerId::from(uuid::Uuid::new_v4().simple().to_string()),
            },
            // Connection ids are unique per process; in a cluster the node's id makes them
            // unique cluster-wide.
            PeerChoice::Connection if app.config.redis_url.is_some() => {
                PeerId::from(format!("y-{}-{}", app.node_id, self.conn()))
            }
            PeerChoice::Connection => PeerId::from(format!("y-{}", self.conn())),
            PeerChoice::Side(p) => p,
        };
        let room = match (j.room, &self.identity) {
            (Some(r), Some(id)) if id.token_bound && r != id.room => {
                return Err(CommandError::RoomMismatch(id.room.clone()));
            }
            (Some(r), _) => r,
            (None, Some(id)) => id.room.clone(),
            (None, None) => return Err(CommandError::MissingFields("Missing roomId")),
        };
        match j.scope {
            Scope::One => {
                if self.seats.iter().any(|s| s.room() != &room) {
                    self.seats.clear();
                }
            }
            Scope::Many { max } => match self.seats.iter().position(|s| s.room() == &room) {
                // Joining again under another name: the old name leaves.
                Some(i) if self.seats[i].peer() != &peer => drop(self.seats.swap_remove(i)),
                Some(_) if !j.rejoin => return Ok(None),
                Some(_) => {}
                None if self.seats.len() >= max => {
                    return Err(CommandError::TooManyRoomsPerConnection(max));
                }
                None => {}
            },
        }
        let mut create = j.create;
        create.creator = Some(self.client);
        // The room was checked against the token's above: a token holder's join is an
        // authenticated one.
        let authenticated = token_user.is_some();
        Ok(Some(JoinRequest {
            room,
            peer,
            handle: self.handle.clone(),
            opts: JoinOptions {
                mode: j.mode,
                name: j.name,
                create,
                authenticated,
            },
        }))
    }

    fn joined(
        &mut self,
        room: RoomId,
        peer: PeerId,
        outcome: Result<Seat, JoinError>,
    ) -> Result<Reply, CommandError> {
        let seat = outcome?;
        if let Some(id) = &mut self.identity {
            id.room = room.clone();
        }
        match self.seats.iter_mut().find(|s| s.room() == &room) {
            // A re-join retires the old seat (the member stays, under the new seat).
            Some(old) => *old = seat,
            None => self.seats.push(seat),
        }
        Ok(Reply::Joined { room, peer })
    }

    fn leave(&mut self, l: Leave) -> Result<Reply, CommandError> {
        self.check_claim(&l.claim)?;
        let found = match &l.room {
            Some(r) => self.seats.iter().position(|s| s.room() == r),
            None if self.seats.len() == 1 => Some(0),
            None => None,
        };
        let Some(i) = found else {
            return if l.quiet {
                Ok(Reply::None)
            } else {
                Err(CommandError::NotInRoom(l.room))
            };
        };
        let seat = self.seats.swap_remove(i);
        let (room, peer) = (seat.room().clone(), seat.peer().clone());
        drop(seat);
        Ok(Reply::Left { room, peer })
    }

    /// The seat a message acts on: the room it names, or the connection's only room.
    fn seat_for(&self, room: Option<&RoomId>) -> Result<usize, CommandError> {
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

    fn relay<'a>(&'a mut self, app: &'a AppState, r: Relay) -> Applied<'a> {
        if app.buffers_full() {
            return Applied::Done(Err(CommandError::ServerBusy));
        }
        let i = match self
            .check_claim(&r.claim)
            .and_then(|_| self.seat_for(r.room.as_ref()))
        {
            Ok(i) => i,
            Err(e) => return Applied::Done(Err(e)),
        };
        let op = app
            .membership
            .relay(&self.seats[i], r.target, r.kind, r.payload, self.dialect());
        match op.now() {
            Ok(outcome) => Applied::Done(self.relayed(app, i, outcome)),
            Err(op) => Applied::Later(Box::pin(async move {
                let outcome = op.await;
                self.relayed(app, i, outcome)
            })),
        }
    }

    fn relayed(
        &mut self,
        app: &AppState,
        seat: usize,
        outcome: Result<Delivery, RelayError>,
    ) -> Result<Reply, CommandError> {
        match outcome {
            Ok(d) => {
                app.metrics.signals_relayed.inc();
                Ok(Reply::Relayed {
                    delivered: d.delivered,
                })
            }
            Err(e) => {
                let e = CommandError::from(e);
                if matches!(e, CommandError::NotInRoom(_)) {
                    // The room was closed or deleted under us.
                    self.seats.swap_remove(seat);
                }
                Err(e)
            }
        }
    }

    fn heartbeat(&mut self, app: &AppState, claim: &Claim) -> Result<Reply, CommandError> {
        self.check_claim(claim)?;
        for seat in &self.seats {
            app.membership.touch(seat);
        }
        Ok(Reply::Heartbeat {
            room: self.identity.as_ref().map(|i| i.room.clone()),
            user: self.identity.as_ref().map(|i| i.user.clone()),
        })
    }

    async fn telemetry(&mut self, app: &AppState, t: Telemetry) {
        let nt = &app.metrics.nt;
        match t {
            Telemetry::Connected { mode } => {
                let Some(seat) = self.seats.first() else {
                    return;
                };
                let Some(FirstFlow::First { paired_for }) = app.membership.first_flow(seat).await
                else {
                    return;
                };
                let mode = nt.modes.value(mode.as_deref().unwrap_or(""), "unspecified");
                nt.session_established
                    .get_or_create(&NtModeLabel { mode })
                    .inc();
                if let Some(d) = paired_for {
                    nt.session_time_to_first_flow.observe(d.as_secs_f64());
                }
            }
            Telemetry::Failed { reason } => {
                let reason = nt
                    .reasons
                    .value(reason.as_deref().unwrap_or(""), "ice-failed");
                nt.session_failed
                    .get_or_create(&NtReasonLabel { reason })
                    .inc();
            }
        }
    }
}

/// Counts a refusal: `switchboard_errors_total{kind}` and, for limits,
/// `switchboard_limit_hits_total{limit}`. The transports call it for every refusal, decoded
/// or applied.
pub fn count(app: &AppState, e: &CommandError) {
    app.metrics.error(e.code());
    if let Some(limit) = e.limit() {
        app.metrics.limit(limit);
    }
}
