//! Heartbeats ([`Command::Heartbeat`](super::Command::Heartbeat)): a liveness message marks
//! every room the connection is in as active, and answers with who the connection is.

use super::{Claim, CommandError, Context, Reply, Session};

impl Session {
    pub(super) fn heartbeat(&mut self, cx: &Context, claim: &Claim) -> Result<Reply, CommandError> {
        self.check_claim(claim)?;
        for seat in &self.seats {
            cx.membership.touch(seat);
        }
        Ok(Reply::Heartbeat {
            room: self.identity.as_ref().map(|i| i.room.clone()),
            user: self.identity.as_ref().map(|i| i.user.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use switchboard_core::{PeerId, RoomId};

    use super::*;
    use crate::command::Command;
    use crate::command::testing::Fixture;

    #[tokio::test]
    async fn a_heartbeat_answers_who_the_connection_is_or_why_not() {
        let r1 = || Some(RoomId::new("r1"));
        let alice = || Some(PeerId::new("alice"));
        #[rustfmt::skip]
        let cases: Vec<(&str, bool, Claim, Result<Reply, &str>)> = vec![
            // scenario                 authenticated  claim                                    reply or code
            ("anonymous, no claim",     false,         Claim::None,                              Ok(Reply::Heartbeat { room: None, user: None })),
            ("authenticated",           true,          Claim::None,                              Ok(Reply::Heartbeat { room: r1(), user: alice() })),
            ("as the identity",         true,          Claim::Identity(Some("alice".into())),    Ok(Reply::Heartbeat { room: r1(), user: alice() })),
            ("as the identity, unnamed", true,         Claim::Identity(None),                    Ok(Reply::Heartbeat { room: r1(), user: alice() })),
            ("a claim before auth",     false,         Claim::Identity(None),                    Err("not_authenticated")),
            ("as another user",         true,          Claim::Identity(Some("bob".into())),      Err("user_mismatch")),
        ];
        for (scenario, authenticated, claim, expected) in cases {
            let f = Fixture::new();
            let mut s = match authenticated {
                true => f.authenticated("alice", "r1", false),
                false => f.session(),
            };
            let got = s.apply(&f.cx, Command::Heartbeat { claim }).outcome().await;
            assert_eq!(got.map_err(|e| e.code()), expected, "{scenario}");
        }
    }
}
