//! Relaying a signal ([`Command::Relay`](super::Command::Relay)) — an offer, an answer, a
//! candidate, a broadcast — from the connection's seat in a room to one peer or to the rest
//! of the room. This is the hot path: on one node a relay is answered at once, allocating
//! nothing of its own; only a relay that must cross the network is boxed.

use bytes::Bytes;
use switchboard_core::{Delivery, RelayError, RoomId, SignalKind, Target};

use super::{Applied, Claim, CommandError, Context, Reply, Session};

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

impl Session {
    pub(super) fn relay<'a>(&'a mut self, cx: &'a Context, r: Relay) -> Applied<'a> {
        if cx.buffers_full() {
            return Applied::Done(Err(CommandError::ServerBusy));
        }
        let i = match self
            .check_claim(&r.claim)
            .and_then(|_| self.seat_for(r.room.as_ref()))
        {
            Ok(i) => i,
            Err(e) => return Applied::Done(Err(e)),
        };
        let op = cx
            .membership
            .relay(&self.seats[i], r.target, r.kind, r.payload, self.dialect());
        match op.now() {
            Ok(outcome) => Applied::Done(self.relayed(cx, i, outcome)),
            Err(op) => Applied::Later(Box::pin(async move {
                let outcome = op.await;
                self.relayed(cx, i, outcome)
            })),
        }
    }

    fn relayed(
        &mut self,
        cx: &Context,
        seat: usize,
        outcome: Result<Delivery, RelayError>,
    ) -> Result<Reply, CommandError> {
        match outcome {
            Ok(d) => {
                cx.metrics.signals_relayed.inc();
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
}

#[cfg(test)]
mod tests {
    use switchboard_core::{CloseReason, Event, JoinMode, PeerId};

    use super::*;
    use crate::command::testing::{Fixture, Peer, join};
    use crate::command::{Command, Join, PeerChoice, Scope};

    fn relay(room: Option<&str>, target: Option<&str>, claim: Claim) -> Command {
        Command::Relay(Relay {
            room: room.map(RoomId::new),
            target: target.map_or(Target::Room, |p| Target::Peer(PeerId::new(p))),
            kind: SignalKind::Offer,
            payload: Bytes::from_static(b"{\"sdp\":\"v=0\"}"),
            claim,
        })
    }

    /// Alice and Bob in `r1` (Carol too, in `r2`, when a case wants two rooms).
    struct Room {
        f: Fixture,
        alice: Peer,
        bob: Peer,
    }

    async fn room() -> Room {
        let f = Fixture::new();
        let bob = f.member("r1", "bob").await;
        let mut alice = f.member("r1", "alice").await;
        alice.identity = Some(crate::command::Identity {
            user: PeerId::new("alice"),
            room: RoomId::new("r1"),
            token_bound: false,
        });
        Room { f, alice, bob }
    }

    #[tokio::test]
    async fn relay_succeeds_or_says_why_not() {
        let alice = || Claim::Identity(Some("alice".into()));
        #[rustfmt::skip]
        let cases: Vec<(&str, Command, Result<usize, &str>)> = vec![
            // scenario                      relay                                          delivered or code
            ("to a peer",                    relay(Some("r1"), Some("bob"), Claim::None),   Ok(1)),
            ("to the room",                  relay(Some("r1"), None, Claim::None),          Ok(1)),
            ("in the only room",             relay(None, Some("bob"), Claim::None),         Ok(1)),
            ("as the identity",              relay(None, Some("bob"), alice()),             Ok(1)),
            ("as another user",              relay(None, Some("bob"), Claim::Identity(Some("bob".into()))), Err("user_mismatch")),
            ("to someone not there",         relay(None, Some("carol"), Claim::None),       Err("peer_not_found")),
            ("in a room not held",           relay(Some("r2"), Some("bob"), Claim::None),   Err("not_in_room")),
        ];
        for (scenario, cmd, expected) in cases {
            let Room {
                f,
                mut alice,
                mut bob,
            } = room().await;
            bob.drain();
            let got = alice.apply(&f.cx, cmd).outcome().await;
            match expected {
                Ok(delivered) => {
                    assert_eq!(got, Ok(Reply::Relayed { delivered }), "{scenario}");
                    let events = bob.drain();
                    assert!(
                        matches!(events.as_slice(), [Event::Signal(s)] if s.from.as_str() == "alice"),
                        "{scenario}: {events:?}"
                    );
                    assert_eq!(f.cx.metrics.signals_relayed.get(), 1, "{scenario}");
                }
                Err(code) => {
                    assert_eq!(got.map_err(|e| e.code()), Err(code), "{scenario}");
                    assert!(bob.drain().is_empty(), "{scenario}");
                    assert_eq!(f.cx.metrics.signals_relayed.get(), 0, "{scenario}");
                }
            }
        }
    }

    #[tokio::test]
    async fn relay_refusals_that_need_their_own_world() {
        // Before auth, a claim is refused.
        let f = Fixture::new();
        let mut s = f.session();
        let got = s
            .apply(&f.cx, relay(None, None, Claim::Identity(None)))
            .outcome()
            .await;
        assert_eq!(got.map_err(|e| e.code()), Err("not_authenticated"));
        // In no room.
        let got = s
            .apply(&f.cx, relay(None, None, Claim::None))
            .outcome()
            .await;
        assert_eq!(got.map_err(|e| e.code()), Err("not_in_room"));

        // In two rooms, a relay must name one.
        let Room {
            f,
            mut alice,
            bob: _bob,
        } = room().await;
        let mut two = f.session();
        for room in ["r1", "r2"] {
            let j = Join {
                scope: Scope::Many { max: 2 },
                ..join(
                    Some(room),
                    PeerChoice::Named(PeerId::new("dave")),
                    JoinMode::CreateOrJoin,
                )
            };
            two.apply(&f.cx, Command::Join(j)).outcome().await.unwrap();
        }
        let got = two
            .apply(&f.cx, relay(None, Some("bob"), Claim::None))
            .outcome()
            .await;
        assert_eq!(got.map_err(|e| e.code()), Err("missing_fields"));

        // Past BUFFERED_BYTES_MAX (bob has not read his outbox): nothing is relayed.
        let mut busy = f.cx.clone();
        busy.buffered_cap = 0;
        let got = alice
            .apply(&busy, relay(None, Some("bob"), Claim::None))
            .outcome()
            .await;
        assert_eq!(got.map_err(|e| e.code()), Err("server_busy"));
    }

    #[tokio::test]
    async fn a_recipient_that_cannot_take_it_is_named() {
        let Room { f, mut alice, bob } = room().await;
        bob.handle().close(CloseReason::SlowConsumer);
        let got = alice
            .apply(&f.cx, relay(None, Some("bob"), Claim::None))
            .outcome()
            .await;
        assert_eq!(
            got,
            Err(CommandError::Undelivered(vec![PeerId::new("bob")]))
        );
    }

    /// A relay that must cross the network waits for it, and says so when it cannot.
    #[tokio::test]
    async fn a_relay_the_service_cannot_carry_is_unavailable() {
        let Room {
            f,
            mut alice,
            bob: _bob,
        } = room().await;
        let down = f.down();
        let applied = alice.apply(&down, relay(None, Some("bob"), Claim::None));
        assert!(matches!(applied, Applied::Later(_)), "{applied:?}");
        assert_eq!(
            applied.outcome().await.map_err(|e| e.code()),
            Err("unavailable")
        );
        assert!(
            alice.in_a_room(),
            "the seat is kept: only the service is down"
        );
        assert_eq!(f.cx.metrics.signals_relayed.get(), 0);
    }

    /// On one node a relay is answered at once (nothing boxed).
    #[tokio::test]
    async fn a_relay_on_one_node_is_done_at_once() {
        let Room {
            f,
            mut alice,
            bob: _bob,
        } = room().await;
        let applied = alice.apply(&f.cx, relay(None, Some("bob"), Claim::None));
        assert!(matches!(applied, Applied::Done(Ok(_))), "{applied:?}");
    }

    /// A room deleted under the sender: the relay says so and the seat is let go.
    #[tokio::test]
    async fn a_relay_into_a_closed_room_leaves_it() {
        let Room {
            f,
            mut alice,
            bob: _bob,
        } = room().await;
        f.registry.delete_room_now(&RoomId::new("r1"));
        let got = alice
            .apply(&f.cx, relay(Some("r1"), None, Claim::None))
            .outcome()
            .await;
        assert_eq!(got.map_err(|e| e.code()), Err("not_in_room"));
        assert!(!alice.in_a_room());
    }
}
