//! The budget for unfinished inbound messages, per client address and in the global ledger.
//!
//! A WebSocket reader holds a message until its last byte. `MESSAGE_TIMEOUT` bounds that in
//! time, and the hard frame cap in size per connection, but one address with many
//! connections could still hold memory up for the whole timeout: 100 connections each with
//! an unfinished 1,000 KiB message held 98 MB for 10 s, long enough to push the server to its
//! critical memory threshold, where everyone's new connections are refused. So the bytes of
//! unfinished messages are counted per address ([`Unfinished`]): a connection whose message
//! would take its address past [`Unfinished::per_address`] is closed (1008 `too much
//! unfinished data from this address`), and they are counted in the outboxes' ledger too, so
//! that `BUFFERED_BYTES_MAX` covers them.
//!
//! The address is the TCP peer's. Behind a trusted proxy every client shares the proxy's
//! address, so connections from `TRUSTED_PROXIES` are counted in the ledger only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use switchboard_core::Ledger;

/// Unfinished-message bytes per client address, against a budget.
#[derive(Debug)]
pub struct Unfinished {
    per_address: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
    ledger: Arc<Ledger>,
}

impl Unfinished {
    /// A budget of `per_address` bytes per address, reporting to `ledger`.
    pub fn new(per_address: usize, ledger: Arc<Ledger>) -> Self {
        Self {
            per_address,
            held: Mutex::new(HashMap::new()),
            ledger,
        }
    }

    /// The budget per address.
    pub fn per_address(&self) -> usize {
        self.per_address
    }

    /// Bytes held for `address` now.
    pub fn held_by(&self, address: IpAddr) -> usize {
        self.lock().get(&address).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `more` bytes for `address` (`None`: the ledger only); false, counting
    /// nothing, when that passes the address's budget.
    fn take(&self, address: Option<IpAddr>, more: usize) -> bool {
        if let Some(a) = address {
            let mut held = self.lock();
            let now = held.entry(a).or_insert(0);
            if *now + more > self.per_address {
                if *now == 0 {
                    held.remove(&a);
                }
                return false;
            }
            *now += more;
        }
        self.ledger.add(more);
        true
    }

    /// Gives back `less` bytes of `address`.
    fn give_back(&self, address: Option<IpAddr>, less: usize) {
        if let Some(a) = address {
            let mut held = self.lock();
            if let Some(now) = held.get_mut(&a) {
                *now = now.saturating_sub(less);
                if *now == 0 {
                    held.remove(&a);
                }
            }
        }
        self.ledger.sub(less);
    }
}

/// One connection's share of its address's budget: what its unfinished message holds.
/// Given back as the message finishes, and when the connection ends.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Unfinished>,
    /// `None` for a trusted proxy's connection (ledger only).
    address: Option<IpAddr>,
    held: usize,
    over: bool,
}

impl Charge {
    /// A connection from `address`'s share of `budget`.
    pub fn new(budget: Arc<Unfinished>, address: Option<IpAddr>) -> Self {
        Self {
            budget,
            address,
            held: 0,
            over: false,
        }
    }

    /// The connection's unfinished message now holds `bytes`.
    pub fn hold(&mut self, bytes: u64) {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        if bytes > self.held {
            if self.budget.take(self.address, bytes - self.held) {
                self.held = bytes;
            } else {
                self.over = true;
            }
        } else if bytes < self.held {
            self.budget.give_back(self.address, self.held - bytes);
            self.held = bytes;
        }
    }

    /// Whether the connection's address went past its budget (its next read fails).
    pub fn is_over(&self) -> bool {
        self.over
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.give_back(self.address, self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    fn budget(per_address: usize) -> (Arc<Unfinished>, Arc<Ledger>) {
        let ledger = Arc::new(Ledger::default());
        (
            Arc::new(Unfinished::new(per_address, ledger.clone())),
            ledger,
        )
    }

    #[test]
    fn one_address_holds_at_most_its_budget_and_another_is_not_affected() {
        let (u, ledger) = budget(1000);
        let mut first = Charge::new(u.clone(), Some(A));
        let mut second = Charge::new(u.clone(), Some(A));
        let mut other = Charge::new(u.clone(), Some(B));
        first.hold(600);
        second.hold(300);
        assert!(!first.is_over() && !second.is_over());
        second.hold(500);
        assert!(second.is_over(), "600 + 500 > 1000");
        assert_eq!(u.held_by(A), 900, "the refused growth is not counted");
        other.hold(1000);
        assert!(!other.is_over(), "B has its own budget");
        assert_eq!(ledger.buffered(), 1900);
    }

    #[test]
    fn a_finished_message_and_a_closed_connection_give_their_bytes_back() {
        let (u, ledger) = budget(1000);
        let mut c = Charge::new(u.clone(), Some(A));
        c.hold(800);
        c.hold(0);
        assert_eq!((u.held_by(A), ledger.buffered()), (0, 0));
        c.hold(900);
        drop(c);
        assert_eq!((u.held_by(A), ledger.buffered()), (0, 0));
    }

    #[test]
    fn a_trusted_proxy_s_connections_count_in_the_ledger_only() {
        let (u, ledger) = budget(10);
        let mut c = Charge::new(u.clone(), None);
        c.hold(5000);
        assert!(!c.is_over());
        assert_eq!(ledger.buffered(), 5000);
    }
}
