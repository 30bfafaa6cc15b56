//! Joining and creating rooms ([`Command::Join`](super::Command::Join)): who the connection
//! becomes in the room ([`PeerChoice`]), which room (the one named, or the authenticated
//! one; a token binds it), how many rooms it may hold ([`Scope`]), and the join itself
//! through the membership service, which creates the room under the one creation policy
//! when the join may create it.

use std::sync::Arc;

use switchboard_core::{
    CreateOptions, JoinError, JoinMode, JoinOptions, JoinRequest, PeerId, RoomId, Seat,
};

use super::{Applied, Claim, CommandError, Context, Reply, Session};

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

impl Session {
    pub(super) fn join<'a>(&'a mut self, cx: &'a Context, j: Join) -> Applied<'a> {
        let request = match self.prepare_join(cx, j) {
            Ok(Some(request)) => request,
            Ok(None) => return Applied::Done(Ok(Reply::None)),
            Err(e) => return Applied::Done(Err(e)),
        };
        let (room, peer) = (request.room.clone(), request.peer.clone());
        match cx.membership.join(request).now() {
            Ok(outcome) => Applied::Done(self.joined(room, peer, outcome)),
            Err(op) => Applied::Later(Box::pin(async move {
                let outcome = op.await;
                self.joined(room, peer, outcome)
            })),
        }
    }

    /// Who joins where, under the connection's rules; `None` when there is nothing to do
    /// (a y-webrtc topic already held).
    fn prepare_join(&mut self, cx: &Context, j: Join) -> Result<Option<JoinRequest>, CommandError> {
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
            PeerChoice::Connection => match &cx.cluster_node {
                Some(node) => PeerId::from(format!("y-{node}-{}", self.conn())),
                None => PeerId::from(format!("y-{}", self.conn())),
            },
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
        super::check_id("peerId", peer.as_str())?;
        super::check_id("roomId", room.as_str())?;
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use switchboard_core::{
        CreateOptions, CreationGate, JoinError, JoinMode, Limits, PeerId, RoomId,
    };

    use super::*;
    use crate::command::Command;
    use crate::command::testing::{Fixture, Refuse, join};

    /// One join, in a world set up beforehand.
    struct Case {
        scenario: &'static str,
        limits: Limits,
        /// Every room creation is refused with this.
        gate: Option<JoinError>,
        /// Who the joining connection authenticated as: user, room, with a token.
        identity: Option<(&'static str, &'static str, bool)>,
        /// Rooms that exist: id, a member on another connection, whether token-only.
        rooms: &'static [(&'static str, Option<&'static str>, bool)],
        /// A room the joining connection is in already.
        already_in: Option<&'static str>,
        join: Join,
        /// The room and peer joined, or the refusal's code.
        expect: Result<(&'static str, &'static str), &'static str>,
    }

    fn case(
        scenario: &'static str,
        join: Join,
        expect: Result<(&'static str, &'static str), &'static str>,
    ) -> Case {
        Case {
            scenario,
            limits: Limits::default(),
            gate: None,
            identity: None,
            rooms: &[],
            already_in: None,
            join,
            expect,
        }
    }

    fn named(room: &str, peer: &str, mode: JoinMode) -> Join {
        join(Some(room), PeerChoice::Named(PeerId::new(peer)), mode)
    }

    fn cases() -> Vec<Case> {
        use JoinMode::{Create, CreateOrJoin, Existing};
        let many = |max| Join {
            scope: Scope::Many { max },
            ..named("r1", "alice", CreateOrJoin)
        };
        let claiming = |claim: Option<&str>| Join {
            claim: Claim::Identity(claim.map(Into::into)),
            ..named("r1", "alice", CreateOrJoin)
        };
        let longest: &'static str = Box::leak("p".repeat(crate::command::MAX_ID_BYTES).into());
        let too_long = "p".repeat(crate::command::MAX_ID_BYTES + 1);
        vec![
            case(
                "create a room",
                named("r1", "alice", Create),
                Ok(("r1", "alice")),
            ),
            case(
                "a peer id of the longest length",
                named("r1", longest, Create),
                Ok(("r1", longest)),
            ),
            case(
                "a peer id one byte too long",
                named("r1", &too_long, Create),
                Err("id_too_long"),
            ),
            case(
                "a room id one byte too long",
                named(&too_long, "alice", CreateOrJoin),
                Err("id_too_long"),
            ),
            case(
                "create or join a missing room",
                named("r1", "alice", CreateOrJoin),
                Ok(("r1", "alice")),
            ),
            Case {
                rooms: &[("r1", Some("bob"), false)],
                ..case(
                    "join an existing room",
                    named("r1", "alice", Existing),
                    Ok(("r1", "alice")),
                )
            },
            Case {
                identity: Some(("alice", "r1", false)),
                ..case(
                    "as the identity, into its room",
                    join(None, PeerChoice::Identity, CreateOrJoin),
                    Ok(("r1", "alice")),
                )
            },
            Case {
                identity: Some(("alice", "r1", true)),
                ..case(
                    "a token holder's generated id is its user",
                    join(Some("r1"), PeerChoice::Generated, CreateOrJoin),
                    Ok(("r1", "alice")),
                )
            },
            Case {
                identity: Some(("alice", "r1", true)),
                ..case(
                    "a slot is not bound by the token",
                    join(Some("r1"), PeerChoice::Side(PeerId::new("A")), CreateOrJoin),
                    Ok(("r1", "A")),
                )
            },
            case(
                "no room, no identity",
                join(None, PeerChoice::Named(PeerId::new("alice")), CreateOrJoin),
                Err("missing_fields"),
            ),
            case(
                "as the identity before auth",
                join(Some("r1"), PeerChoice::Identity, CreateOrJoin),
                Err("not_authenticated"),
            ),
            case(
                "a claim before auth",
                claiming(None),
                Err("not_authenticated"),
            ),
            Case {
                identity: Some(("alice", "r1", false)),
                ..case(
                    "claiming another user",
                    claiming(Some("mallory")),
                    Err("user_mismatch"),
                )
            },
            Case {
                identity: Some(("alice", "r1", true)),
                ..case(
                    "another name with a token",
                    named("r1", "mallory", CreateOrJoin),
                    Err("user_mismatch"),
                )
            },
            Case {
                identity: Some(("alice", "r1", true)),
                ..case(
                    "another room with a token",
                    named("r2", "alice", CreateOrJoin),
                    Err("room_mismatch"),
                )
            },
            case(
                "a missing room",
                named("r1", "alice", Existing),
                Err("room_not_found"),
            ),
            Case {
                rooms: &[("r1", None, false)],
                ..case(
                    "creating a room that exists",
                    named("r1", "alice", Create),
                    Err("room_exists"),
                )
            },
            Case {
                limits: Limits {
                    max_peers_per_room: 1,
                    ..Limits::default()
                },
                rooms: &[("r1", Some("bob"), false)],
                ..case(
                    "a full room",
                    named("r1", "alice", Existing),
                    Err("room_full"),
                )
            },
            Case {
                limits: Limits {
                    max_rooms: 1,
                    ..Limits::default()
                },
                rooms: &[("r0", None, false)],
                ..case(
                    "one room too many",
                    named("r1", "alice", CreateOrJoin),
                    Err("too_many_rooms"),
                )
            },
            Case {
                rooms: &[("r1", Some("alice"), false)],
                ..case(
                    "an id held on another connection",
                    named("r1", "alice", Existing),
                    Err("peer_id_taken"),
                )
            },
            Case {
                gate: Some(JoinError::NotAdmitting),
                ..case(
                    "creation while overloaded",
                    named("r1", "alice", CreateOrJoin),
                    Err("overloaded"),
                )
            },
            Case {
                gate: Some(JoinError::CreationRateLimited),
                ..case(
                    "creation past the budget",
                    named("r1", "alice", CreateOrJoin),
                    Err("creation_rate_limited"),
                )
            },
            Case {
                rooms: &[("r1", Some("bob"), true)],
                ..case(
                    "a token room without a token",
                    named("r1", "alice", Existing),
                    Err("token_required"),
                )
            },
            Case {
                limits: Limits {
                    separate_secured: true,
                    ..Limits::default()
                },
                identity: Some(("alice", "r1", true)),
                rooms: &[("r1", Some("bob"), false)],
                ..case(
                    "an anonymous room with a token",
                    named("r1", "alice", Existing),
                    Err("room_not_secured"),
                )
            },
            Case {
                already_in: Some("r0"),
                ..case(
                    "one room per connection past its max",
                    many(1),
                    Err("too_many_rooms_per_connection"),
                )
            },
            Case {
                already_in: Some("r0"),
                ..case("a second room within the max", many(2), Ok(("r1", "alice")))
            },
        ]
    }

    #[tokio::test]
    async fn join_succeeds_or_says_why_not() {
        for c in cases() {
            let gate = c.gate.map(|e| Arc::new(Refuse(e)) as Arc<dyn CreationGate>);
            let f = Fixture::with(c.limits, gate);
            let mut others = Vec::new();
            for &(room, member, secured) in c.rooms {
                let opts = CreateOptions {
                    secured,
                    ..CreateOptions::default()
                };
                f.registry.create_room_now(RoomId::new(room), opts).unwrap();
                if let Some(m) = member {
                    let mut p = match secured {
                        true => f.authenticated(m, room, true),
                        false => f.session(),
                    };
                    let j = named(room, m, JoinMode::Existing);
                    p.apply(&f.cx, Command::Join(j)).outcome().await.unwrap();
                    others.push(p);
                }
            }
            let mut s = match c.identity {
                Some((user, room, bound)) => f.authenticated(user, room, bound),
                None => f.session(),
            };
            if let Some(room) = c.already_in {
                let j = Join {
                    scope: c.join.scope,
                    ..named(room, "alice", JoinMode::CreateOrJoin)
                };
                s.apply(&f.cx, Command::Join(j)).outcome().await.unwrap();
            }
            let got = s.apply(&f.cx, Command::Join(c.join)).outcome().await;
            match (c.expect, got) {
                (Ok((room, peer)), Ok(Reply::Joined { room: r, peer: p })) => {
                    assert_eq!((r.as_str(), p.as_str()), (room, peer), "{}", c.scenario);
                    assert!(s.rooms().any(|r| r.as_str() == room), "{}", c.scenario);
                    assert_eq!(
                        f.members(room),
                        1 + others.len(),
                        "{}: every member in the room",
                        c.scenario
                    );
                }
                (Err(code), Err(e)) => assert_eq!(e.code(), code, "{}: {e}", c.scenario),
                (expected, got) => panic!("{}: expected {expected:?}, got {got:?}", c.scenario),
            }
        }
    }

    /// A membership service that answers later (over the network) and then cannot: the
    /// join waits, then says the service is unavailable, and holds no seat.
    #[tokio::test]
    async fn a_join_the_service_cannot_answer_is_unavailable() {
        let f = Fixture::new();
        let down = f.down();
        let mut s = f.session();
        let applied = s.apply(
            &down,
            Command::Join(named("r1", "alice", JoinMode::CreateOrJoin)),
        );
        assert!(matches!(applied, Applied::Later(_)), "{applied:?}");
        let got = applied.outcome().await;
        assert_eq!(got.map_err(|e| e.code()), Err("unavailable"));
        assert!(!s.in_a_room());
    }

    #[tokio::test]
    async fn one_room_per_connection_leaves_the_last_one() {
        let f = Fixture::new();
        let mut s = f.session();
        for room in ["r1", "r2"] {
            let j = named(room, "alice", JoinMode::CreateOrJoin);
            s.apply(&f.cx, Command::Join(j)).outcome().await.unwrap();
        }
        assert_eq!((f.members("r1"), f.members("r2")), (0, 1));
        assert_eq!(s.rooms().map(RoomId::as_str).collect::<Vec<_>>(), ["r2"]);
    }

    /// A y-webrtc `subscribe` to a topic held: nothing to do, unless it re-joins.
    #[tokio::test]
    async fn joining_a_room_held_does_nothing_or_joins_again() {
        let f = Fixture::new();
        let mut s = f.session();
        let topic = |rejoin| Join {
            scope: Scope::Many { max: 4 },
            rejoin,
            ..named("t", "y-1", JoinMode::CreateOrJoin)
        };
        let first = s.apply(&f.cx, Command::Join(topic(false))).outcome().await;
        assert!(matches!(first, Ok(Reply::Joined { .. })), "{first:?}");
        s.drain();
        let again = s.apply(&f.cx, Command::Join(topic(false))).outcome().await;
        assert_eq!(again, Ok(Reply::None));
        assert!(s.drain().is_empty(), "no second Joined");
        let rejoin = s.apply(&f.cx, Command::Join(topic(true))).outcome().await;
        assert!(matches!(rejoin, Ok(Reply::Joined { .. })), "{rejoin:?}");
        assert_eq!(f.members("t"), 1);
    }

    #[tokio::test]
    async fn ids_made_for_a_connection() {
        let mut f = Fixture::new();
        let peer_of = async |f: &Fixture, choice| {
            let mut s = f.session();
            let j = join(Some("r1"), choice, JoinMode::CreateOrJoin);
            match s.apply(&f.cx, Command::Join(j)).outcome().await {
                Ok(Reply::Joined { peer, .. }) => (peer, s.conn()),
                other => panic!("{other:?}"),
            }
        };
        let (peer, conn) = peer_of(&f, PeerChoice::Connection).await;
        assert_eq!(peer.as_str(), format!("y-{conn}"));
        let (generated, _) = peer_of(&f, PeerChoice::Generated).await;
        assert_eq!(generated.as_str().len(), 32, "a UUID, simple form");
        f.cx.cluster_node = Some("node-1".into());
        let (peer, conn) = peer_of(&f, PeerChoice::Connection).await;
        assert_eq!(
            peer.as_str(),
            format!("y-node-1-{conn}"),
            "unique cluster-wide"
        );
    }

    /// A join names the room the identity is for from then on.
    #[tokio::test]
    async fn the_identity_follows_the_room_joined() {
        let f = Fixture::new();
        let mut s = f.authenticated("alice", "r1", false);
        let j = Join {
            claim: Claim::Identity(Some("alice".into())),
            ..join(Some("r2"), PeerChoice::Identity, JoinMode::CreateOrJoin)
        };
        s.apply(&f.cx, Command::Join(j)).outcome().await.unwrap();
        assert_eq!(s.identity().map(|i| i.room.as_str()), Some("r2"));
    }
}
