//! A room's mailbox (the nt dialect's `send` and `hello`): items queued for a peer of the
//! connection's room, present or not ([`Command::MailboxSend`](super::Command::MailboxSend)),
//! and the replay of what a reconnecting peer has not yet got
//! ([`Command::MailboxHello`](super::Command::MailboxHello)). Outside a room both do nothing.

use bytes::Bytes;
use switchboard_core::PeerId;

use super::{CommandError, Context, Reply, Session};

impl Session {
    pub(super) async fn mailbox_send(
        &mut self,
        cx: &Context,
        to: PeerId,
        payload: Bytes,
    ) -> Result<Reply, CommandError> {
        let Some(seat) = self.seats.first() else {
            return Ok(Reply::None);
        };
        let d = cx
            .membership
            .mailbox_push(seat, to, payload, self.dialect())
            .await?;
        cx.metrics.signals_relayed.inc();
        Ok(Reply::Relayed {
            delivered: d.delivered,
        })
    }

    pub(super) async fn mailbox_hello(
        &mut self,
        cx: &Context,
        delivered_up_to: u64,
    ) -> Result<Reply, CommandError> {
        let Some(seat) = self.seats.first() else {
            return Ok(Reply::Mailbox(Vec::new()));
        };
        let items = cx.membership.mailbox_replay(seat, delivered_up_to).await?;
        Ok(Reply::Mailbox(items))
    }
}

#[cfg(test)]
mod tests {
    use switchboard_core::{Event, RoomId, SignalKind};

    use super::*;
    use crate::command::Command;
    use crate::command::testing::Fixture;

    fn send(to: &str, item: &'static str) -> Command {
        Command::MailboxSend {
            to: PeerId::new(to),
            payload: Bytes::from_static(item.as_bytes()),
        }
    }

    fn hello(delivered_up_to: u64) -> Command {
        Command::MailboxHello { delivered_up_to }
    }

    /// Items for a peer who is away wait for it; a `hello` replays what it has not got.
    #[tokio::test]
    async fn items_wait_for_their_recipient_and_are_replayed() {
        let f = Fixture::new();
        let mut a = f.member("r1", "A").await;
        #[rustfmt::skip]
        let steps: Vec<(&str, Command, Reply)> = vec![
            ("B is away",             send("B", "\"one\""), Reply::Relayed { delivered: 0 }),
            ("still away",            send("B", "\"two\""), Reply::Relayed { delivered: 0 }),
        ];
        for (scenario, cmd, reply) in steps {
            assert_eq!(a.apply(&f.cx, cmd).outcome().await, Ok(reply), "{scenario}");
        }
        let mut b = f.member("r1", "B").await;
        let replayed = |items: &[(u64, &'static str)]| {
            Reply::Mailbox(
                items
                    .iter()
                    .map(|&(n, s)| (n, Bytes::from_static(s.as_bytes())))
                    .collect(),
            )
        };
        #[rustfmt::skip]
        let steps: Vec<(&str, u64, Reply)> = vec![
            // scenario                            hello(n)  replayed
            ("has nothing: both",                  0,        replayed(&[(0, "\"one\""), (1, "\"two\"")])),
            ("has the first: the second",          1,        replayed(&[(1, "\"two\"")])),
            ("has both: nothing",                  2,        replayed(&[])),
        ];
        for (scenario, n, reply) in steps {
            assert_eq!(
                b.apply(&f.cx, hello(n)).outcome().await,
                Ok(reply),
                "{scenario}"
            );
        }
        assert_eq!(
            f.cx.metrics.signals_relayed.get(),
            2,
            "each item counts once"
        );
        // B is here now: the next item is delivered at once, as a mailbox signal.
        let got = a.apply(&f.cx, send("B", "\"three\"")).outcome().await;
        assert_eq!(got, Ok(Reply::Relayed { delivered: 1 }));
        let events = b.drain();
        assert!(
            matches!(events.as_slice(), [Event::Signal(s)] if s.kind == SignalKind::Mailbox(2) && &s.payload[..] == b"\"three\""),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn outside_a_room_the_mailbox_does_nothing() {
        let f = Fixture::new();
        let mut s = f.session();
        assert_eq!(
            s.apply(&f.cx, send("B", "1")).outcome().await,
            Ok(Reply::None)
        );
        assert_eq!(
            s.apply(&f.cx, hello(0)).outcome().await,
            Ok(Reply::Mailbox(Vec::new()))
        );
    }

    #[tokio::test]
    async fn a_mailbox_the_service_cannot_reach_is_unavailable() {
        let f = Fixture::new();
        let mut s = f.member("r1", "A").await;
        let down = f.down();
        for cmd in [send("B", "1"), hello(0)] {
            let got = s.apply(&down, cmd).outcome().await;
            assert_eq!(got.map_err(|e| e.code()), Err("unavailable"));
        }
    }

    /// The room was deleted under the connection: its seat is stale.
    #[tokio::test]
    async fn a_closed_room_has_no_mailbox() {
        let f = Fixture::new();
        let mut s = f.member("r1", "A").await;
        f.registry.delete_room_now(&RoomId::new("r1"));
        for cmd in [send("B", "1"), hello(0)] {
            let got = s.apply(&f.cx, cmd).outcome().await;
            assert_eq!(got.map_err(|e| e.code()), Err("not_in_room"));
        }
    }
}
