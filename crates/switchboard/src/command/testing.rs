//! What the command files' tests share: a [`Context`] over a fresh in-memory [`Registry`],
//! and connections ([`Peer`]) whose outboxes the test can read.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_core::{
    ConnId, CreateOptions, CreationGate, Delivery, DialectTag, Event, FirstFlow, JoinError,
    JoinMode, JoinRequest, Limits, MembershipService, Op, Outbound, OutboxBounds, OutboxReceiver,
    PeerId, Registry, RegistryStats, RelayError, RoomId, RoomSnapshot, Seat, SignalKind,
    SweepPolicy, SweepReport, Target, outbox,
};

use super::{
    Claim, Command, CommandError, Context, Identity, Join, PeerChoice, Reply, Scope, Session,
};
use crate::auth::Authenticator;

/// The address every test connection comes from.
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A dialect tag no dialect uses.
const TEST_DIALECT: DialectTag = DialectTag(200);

/// A token verifier for `secret`, unthrottled.
pub fn auth(secret: &str) -> Authenticator {
    Authenticator::new(secret, Duration::from_secs(60), None, 0)
}

/// A context over a registry the test can look into.
pub struct Fixture {
    pub registry: Registry,
    pub cx: Context,
}

impl Fixture {
    /// The default limits, every room creation allowed.
    pub fn new() -> Self {
        Self::with(Limits::default(), None)
    }

    /// `limits`, and `gate` deciding room creations (all allowed without one).
    pub fn with(limits: Limits, gate: Option<Arc<dyn CreationGate>>) -> Self {
        let registry = match gate {
            Some(g) => Registry::with_gate(limits, g),
            None => Registry::new(limits),
        };
        let cx = Context::new(Arc::new(registry.clone()), auth("test-secret"));
        Self { registry, cx }
    }

    /// A connection of a dialect that need not present a token, not authenticated.
    pub fn session(&self) -> Peer {
        self.session_with(false, None)
    }

    /// A connection whose dialect must (or need not) present a token, holding `identity`.
    pub fn session_with(&self, token_required: bool, identity: Option<Identity>) -> Peer {
        let bounds = OutboxBounds {
            ledger: Some(Arc::clone(&self.cx.ledger)),
            ..OutboxBounds::items(64)
        };
        let (handle, outbox) = outbox(ConnId::next(), TEST_DIALECT, bounds);
        Peer {
            session: Session::new(handle, CLIENT, token_required, identity),
            outbox,
        }
    }

    /// A connection authenticated as `user` for `room` (with a token when `token_bound`).
    pub fn authenticated(&self, user: &str, room: &str, token_bound: bool) -> Peer {
        self.session_with(
            false,
            Some(Identity {
                user: PeerId::new(user),
                room: RoomId::new(room),
                token_bound,
            }),
        )
    }

    /// Joins (creating when missing) the authenticated room as the authenticated user.
    pub async fn join_as_identity(&self, s: &mut Session) -> Result<Reply, CommandError> {
        let j = join(None, PeerChoice::Identity, JoinMode::CreateOrJoin);
        s.apply(&self.cx, Command::Join(j)).outcome().await
    }

    /// A connection that is `peer` in `room` (created when missing).
    pub async fn member(&self, room: &str, peer: &str) -> Peer {
        let mut p = self.session();
        let j = join(
            Some(room),
            PeerChoice::Named(PeerId::new(peer)),
            JoinMode::CreateOrJoin,
        );
        p.apply(&self.cx, Command::Join(j))
            .outcome()
            .await
            .expect("joins");
        p.drain();
        p
    }

    /// Members of `room` now.
    pub fn members(&self, room: &str) -> usize {
        self.registry
            .room_now(&RoomId::new(room))
            .map_or(0, |r| r.members.len())
    }
}

/// A join of `room` as `peer`, one room per connection, no claim.
pub fn join(room: Option<&str>, peer: PeerChoice, mode: JoinMode) -> Join {
    Join {
        room: room.map(RoomId::new),
        peer,
        claim: Claim::None,
        mode,
        name: None,
        create: CreateOptions::default(),
        scope: Scope::One,
        rejoin: true,
    }
}

/// A test connection: its session and its outbox.
pub struct Peer {
    pub session: Session,
    pub outbox: OutboxReceiver,
}

impl Peer {
    /// The events waiting in the outbox, taken.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(item) = self.outbox.try_recv() {
            if let Outbound::Event(env) = item {
                events.push(env.event.clone());
            }
        }
        events
    }
}

impl Deref for Peer {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl DerefMut for Peer {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// A creation gate that refuses every creation with one error.
pub struct Refuse(pub JoinError);

impl CreationGate for Refuse {
    fn allow(&self, _: Option<IpAddr>) -> Result<(), JoinError> {
        Err(self.0.clone())
    }
}

/// A membership service that cannot be reached (a cluster backend that is down): every
/// operation answers later, and with `Unavailable`.
#[derive(Debug)]
pub struct Down;

const DOWN: &str = "backend down";

impl MembershipService for Down {
    fn name(&self) -> &'static str {
        "down"
    }

    fn join(&self, _: JoinRequest) -> Op<'_, Result<Seat, JoinError>> {
        Op::pending(async { Err(JoinError::Unavailable(DOWN.into())) })
    }

    fn relay(
        &self,
        _: &Seat,
        _: Target,
        _: SignalKind,
        _: Bytes,
        _: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        Op::pending(async { Err(RelayError::Unavailable(DOWN.into())) })
    }

    fn touch(&self, _: &Seat) {}

    fn mailbox_push(
        &self,
        _: &Seat,
        _: PeerId,
        _: Bytes,
        _: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        Op::pending(async { Err(RelayError::Unavailable(DOWN.into())) })
    }

    fn mailbox_replay(&self, _: &Seat, _: u64) -> Op<'_, Result<Vec<(u64, Bytes)>, RelayError>> {
        Op::pending(async { Err(RelayError::Unavailable(DOWN.into())) })
    }

    fn first_flow(&self, _: &Seat) -> Op<'_, Option<FirstFlow>> {
        Op::pending(async { None })
    }

    fn create_room(&self, _: RoomId, _: CreateOptions) -> Op<'_, Result<RoomSnapshot, JoinError>> {
        Op::ready(Err(JoinError::Unavailable(DOWN.into())))
    }

    fn delete_room(&self, _: RoomId) -> Op<'_, Result<bool, JoinError>> {
        Op::ready(Err(JoinError::Unavailable(DOWN.into())))
    }

    fn revoke(&self, _: PeerId) -> Op<'_, Result<usize, JoinError>> {
        Op::ready(Err(JoinError::Unavailable(DOWN.into())))
    }

    fn room(&self, _: RoomId) -> Op<'_, Result<Option<RoomSnapshot>, JoinError>> {
        Op::ready(Err(JoinError::Unavailable(DOWN.into())))
    }

    fn rooms(&self) -> Op<'_, Result<Vec<RoomSnapshot>, JoinError>> {
        Op::ready(Err(JoinError::Unavailable(DOWN.into())))
    }

    fn stats(&self) -> Op<'_, Result<RegistryStats, JoinError>> {
        Op::ready(Err(JoinError::Unavailable(DOWN.into())))
    }

    fn local_stats(&self, _: &dyn Fn(DialectTag) -> bool) -> RegistryStats {
        RegistryStats::default()
    }

    fn sweep(&self, _: SweepPolicy) -> SweepReport {
        SweepReport::default()
    }
}

impl Fixture {
    /// This fixture's context with the membership service down (the seats already handed
    /// out stay as they are).
    pub fn down(&self) -> Context {
        Context {
            membership: Arc::new(Down),
            ..self.cx.clone()
        }
    }
}
