//! A client's report about its WebRTC session
//! ([`Command::Telemetry`](super::Command::Telemetry), the nt dialect's `telemetry`):
//! counted in the nt series, never answered. `ice-connected` counts once per room (the
//! membership service knows whether it is the room's first).

use switchboard_core::FirstFlow;

use super::{Context, Session};
use crate::metrics::{NtModeLabel, NtReasonLabel};

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

impl Session {
    pub(super) async fn telemetry(&mut self, cx: &Context, t: Telemetry) {
        let nt = &cx.metrics.nt;
        match t {
            Telemetry::Connected { mode } => {
                let Some(seat) = self.seats.first() else {
                    return;
                };
                let Some(FirstFlow::First { paired_for }) = cx.membership.first_flow(seat).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::Fixture;
    use crate::command::{Command, Reply};

    fn connected(mode: &str) -> Command {
        Command::Telemetry(Telemetry::Connected {
            mode: Some(mode.into()),
        })
    }

    fn established(f: &Fixture, mode: &str) -> u64 {
        let label = NtModeLabel { mode: mode.into() };
        f.cx.metrics
            .nt
            .session_established
            .get_or_create(&label)
            .get()
    }

    fn failed(f: &Fixture, reason: &str) -> u64 {
        let label = NtReasonLabel {
            reason: reason.into(),
        };
        f.cx.metrics.nt.session_failed.get_or_create(&label).get()
    }

    /// `ice-connected` counts once per room; `ice-failed` every time; neither is answered.
    #[tokio::test]
    async fn reports_are_counted_and_never_answered() {
        let f = Fixture::new();
        let (outside, a, b) = (0, 1, 2);
        let mut peers = [
            f.session(),
            f.member("r1", "A").await,
            f.member("r1", "B").await,
        ];
        let failure = |reason: &str| {
            Command::Telemetry(Telemetry::Failed {
                reason: Some(reason.into()),
            })
        };
        #[rustfmt::skip]
        let steps: Vec<(&str, usize, Command, u64, u64)> = vec![
            // scenario                      who      report               established{direct}  failed{timeout}
            ("outside a room: not counted",  outside, connected("direct"), 0,                   0),
            ("the room's first",             a,       connected("direct"), 1,                   0),
            ("the other side: same room",    b,       connected("direct"), 1,                   0),
            ("a failure",                    a,       failure("timeout"),  1,                   1),
            ("another, in other case",       b,       failure("TIMEOUT"),  1,                   2),
        ];
        for (scenario, who, cmd, direct, timeouts) in steps {
            let got = peers[who].apply(&f.cx, cmd).outcome().await;
            assert_eq!(got, Ok(Reply::None), "{scenario}");
            assert_eq!(
                (established(&f, "direct"), failed(&f, "timeout")),
                (direct, timeouts),
                "{scenario}"
            );
        }
        let unnamed = Command::Telemetry(Telemetry::Failed { reason: None });
        peers[a].apply(&f.cx, unnamed).outcome().await.unwrap();
        assert_eq!(failed(&f, "ice-failed"), 1, "a failure without a reason");
    }
}
