//! Rate limits, all on `governor`, built here and nowhere else:
//!
//! - [`PerIp`]: keyed by client address ([`crate::client_ip`]); the HTTP request limit
//!   (`HTTP_REQUESTS_PER_SECOND`, burst 2×, every listener, applied by the HTTP layer) and
//!   the room creation budget (`ROOM_CREATIONS_PER_MINUTE`, every dialect);
//! - [`MessageLimit`]: one connection's messages (`MAX_MESSAGES_PER_SECOND`, burst 2×), with
//!   the strike count after which the connection is closed.
//!
//! Keyed limiters forget clients whose buckets are full again when the room sweep calls
//! [`PerIp::prune`], so their state cannot grow without bound.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Consecutive rate-limited messages after which a connection is closed.
pub const RATE_STRIKES: u32 = 50;

/// `rate` per second with a burst of twice that; `None` for 0 (unlimited).
fn per_second_doubled(rate: u32) -> Option<Quota> {
    NonZeroU32::new(rate).map(|r| {
        Quota::per_second(r).allow_burst(r.saturating_mul(NonZeroU32::new(2).expect("2 > 0")))
    })
}

/// A per-client-address limit, or none when its rate is 0 (unlimited).
#[derive(Clone, Default)]
pub struct PerIp(Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>);

impl std::fmt::Debug for PerIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PerIp").field(&self.0.is_some()).finish()
    }
}

impl PerIp {
    /// `rate` per second per address, burst twice that.
    pub fn per_second(rate: u32) -> Self {
        Self(per_second_doubled(rate).map(|q| Arc::new(RateLimiter::keyed(q))))
    }

    /// `n` per minute per address, all of which may be spent at once.
    pub fn per_minute(n: u32) -> Self {
        Self(NonZeroU32::new(n).map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n)))))
    }

    /// Takes one unit for `ip`; false when its budget is spent.
    pub fn check(&self, ip: IpAddr) -> bool {
        self.0.as_ref().is_none_or(|l| l.check_key(&ip).is_ok())
    }

    /// Forgets clients whose buckets are full again.
    pub fn prune(&self) {
        if let Some(l) = &self.0 {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// What [`MessageLimit::check`] decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Process it.
    Allow,
    /// Refuse it with an error reply (`rate_limited`).
    Refuse,
    /// [`RATE_STRIKES`] refusals in a row: close the connection.
    Close,
}

/// One connection's message rate (`MAX_MESSAGES_PER_SECOND`, burst 2×).
#[derive(Debug)]
pub struct MessageLimit {
    limiter: Option<DefaultDirectRateLimiter>,
    strikes: u32,
}

impl MessageLimit {
    /// `rate` messages per second, burst twice that; 0 is unlimited.
    pub fn new(rate: u32) -> Self {
        Self {
            limiter: per_second_doubled(rate).map(RateLimiter::direct),
            strikes: 0,
        }
    }

    /// Judges the next message.
    pub fn check(&mut self) -> Verdict {
        let Some(l) = &self.limiter else {
            return Verdict::Allow;
        };
        if l.check().is_ok() {
            self.strikes = 0;
            return Verdict::Allow;
        }
        self.strikes += 1;
        if self.strikes >= RATE_STRIKES {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_refused_past_its_burst_and_closed_after_the_strikes() {
        let mut m = MessageLimit::new(1);
        assert_eq!(m.check(), Verdict::Allow);
        assert_eq!(m.check(), Verdict::Allow);
        for _ in 1..RATE_STRIKES {
            assert_eq!(m.check(), Verdict::Refuse);
        }
        assert_eq!(m.check(), Verdict::Close);
        let mut free = MessageLimit::new(0);
        assert!((0..10_000).all(|_| free.check() == Verdict::Allow));
    }

    #[test]
    fn per_ip_budgets_are_separate() {
        let b = PerIp::per_minute(2);
        let (x, y) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        assert!(b.check(x) && b.check(x));
        assert!(!b.check(x));
        assert!(b.check(y));
        assert!(PerIp::per_minute(0).check(x));
    }
}
