//! Leaving a room ([`Command::Leave`](super::Command::Leave)): the room named, or the
//! connection's only room. Dropping the seat is the leave: the room hears the peer left.

use switchboard_core::RoomId;

use super::{Claim, CommandError, Reply, Session};

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

impl Session {
    pub(super) fn leave(&mut self, l: Leave) -> Result<Reply, CommandError> {
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
}

#[cfg(test)]
mod tests {
    use switchboard_core::{Event, JoinMode, PeerId, RoomId};

    use super::*;
    use crate::command::testing::{Fixture, join};
    use crate::command::{Command, PeerChoice, Scope};

    fn leave(room: Option<&str>, claim: Claim, quiet: bool) -> Command {
        Command::Leave(Leave {
            room: room.map(RoomId::new),
            claim,
            quiet,
        })
    }

    /// Scenario, the rooms the connection is in, the leave, and the reply (or the refusal's
    /// code).
    type Row = (
        &'static str,
        &'static [&'static str],
        Command,
        Result<Reply, &'static str>,
    );

    #[tokio::test]
    async fn leave_succeeds_or_says_why_not() {
        let as_alice = || Claim::Identity(Some("alice".into()));
        #[rustfmt::skip]
        let cases: Vec<Row> = vec![
            // scenario                       in rooms      leave                                   reply or code
            ("the room named",                &["r1"],      leave(Some("r1"), Claim::None, false), Ok(left("r1"))),
            ("the only room",                 &["r1"],      leave(None, Claim::None, false),       Ok(left("r1"))),
            ("as the identity",               &["r1"],      leave(None, as_alice(), false),        Ok(left("r1"))),
            ("one of two, named",             &["r1", "r2"], leave(Some("r2"), Claim::None, false), Ok(left("r2"))),
            ("quietly, a room not held",      &["r1"],      leave(Some("r9"), Claim::None, true),  Ok(Reply::None)),
            ("a room not held",               &["r1"],      leave(Some("r9"), Claim::None, false), Err("not_in_room")),
            ("no room at all",                &[],          leave(None, Claim::None, false),       Err("not_in_room")),
            ("which of two?",                 &["r1", "r2"], leave(None, Claim::None, false),       Err("not_in_room")),
            ("as another user",               &["r1"],      leave(None, Claim::Identity(Some("bob".into())), false), Err("user_mismatch")),
        ];
        for (scenario, rooms, cmd, expected) in cases {
            let f = Fixture::new();
            let mut s = f.authenticated("alice", "r1", false);
            for room in rooms {
                let j = crate::command::Join {
                    scope: Scope::Many { max: 2 },
                    ..join(
                        Some(room),
                        PeerChoice::Named(PeerId::new("alice")),
                        JoinMode::CreateOrJoin,
                    )
                };
                s.apply(&f.cx, Command::Join(j)).outcome().await.unwrap();
            }
            let got = s.apply(&f.cx, cmd).outcome().await;
            match expected {
                Ok(reply) => {
                    assert_eq!(got, Ok(reply.clone()), "{scenario}");
                    if let Reply::Left { room, .. } = reply {
                        assert_eq!(f.members(room.as_str()), 0, "{scenario}");
                        assert!(s.rooms().all(|r| *r != room), "{scenario}");
                    }
                }
                Err(code) => assert_eq!(got.map_err(|e| e.code()), Err(code), "{scenario}"),
            }
        }
        let f = Fixture::new();
        let mut anonymous = f.session();
        let got = anonymous
            .apply(&f.cx, leave(None, Claim::Identity(None), false))
            .outcome()
            .await;
        assert_eq!(
            got.map_err(|e| e.code()),
            Err("not_authenticated"),
            "before auth"
        );
    }

    fn left(room: &str) -> Reply {
        Reply::Left {
            room: RoomId::new(room),
            peer: PeerId::new("alice"),
        }
    }

    #[tokio::test]
    async fn the_room_hears_the_peer_left() {
        let f = Fixture::new();
        let mut bob = f.member("r1", "bob").await;
        let mut alice = f.member("r1", "alice").await;
        bob.drain();
        alice
            .apply(&f.cx, leave(None, Claim::None, false))
            .outcome()
            .await
            .unwrap();
        let events = bob.drain();
        assert!(
            matches!(events.as_slice(), [Event::PeerLeft { peer, .. }] if peer.as_str() == "alice"),
            "{events:?}"
        );
    }
}
