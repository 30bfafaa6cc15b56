//! How the process's descriptors are shared out ([`Budget`]) and which plain HTTP
//! connections hold them ([`HttpConnections`]), oldest first, so that the oldest idle one
//! can be closed to make room.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Descriptors the server keeps for itself (listeners, the event loop, log and `/proc`
/// files, a Redis connection) out of any budget.
const OWN_DESCRIPTORS: usize = 64;

/// How the descriptor limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The process's descriptor limit (`RLIMIT_NOFILE`, soft).
    pub descriptors: usize,
    /// TCP connections of every kind at once.
    pub connections: usize,
    /// The default `MAX_CONNECTIONS`: WebSocket and Socket.io connections, a tenth of
    /// `connections` (at least 32) short, kept for plain HTTP.
    pub sockets: usize,
}

impl Budget {
    /// The budget for a limit of `descriptors`.
    pub fn for_limit(descriptors: usize) -> Self {
        let connections = descriptors.saturating_sub(OWN_DESCRIPTORS).max(1);
        let headroom = (connections / 10).max(32).min(connections / 2);
        Self {
            descriptors,
            connections,
            sockets: (connections - headroom).max(1),
        }
    }

    /// The budget for this process's current descriptor limit.
    pub fn current() -> Self {
        let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
        Self::for_limit(usize::try_from(soft).unwrap_or(usize::MAX))
    }
}

/// One accepted HTTP connection, as the budget sees it.
#[derive(Debug, Default)]
pub(crate) struct Tracked {
    /// Requests being served (0: idle, may be closed to make room).
    in_flight: AtomicU32,
    /// Told to close to make room.
    pub(crate) evict: Notify,
}

/// The HTTP connections open on every listener, oldest first.
#[derive(Debug, Default)]
pub struct HttpConnections {
    next: AtomicU64,
    /// Invariant: never held across an `.await`.
    open: Mutex<BTreeMap<u64, Arc<Tracked>>>,
}

impl HttpConnections {
    /// HTTP connections open now (not counting upgraded ones).
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Tracked>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self) -> (u64, Arc<Tracked>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(Tracked::default());
        self.lock().insert(id, Arc::clone(&t));
        (id, t)
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes the oldest connection with no request in progress; false when every one is
    /// busy.
    pub(crate) fn evict_oldest_idle(&self) -> bool {
        let mut open = self.lock();
        let Some(id) = open
            .iter()
            .find(|(_, t)| t.in_flight.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(t) = open.remove(&id) {
            t.evict.notify_one();
        }
        true
    }
}

/// Counts a request in progress on its connection while alive.
pub(crate) struct Busy(Arc<Tracked>);

impl Busy {
    pub(crate) fn new(t: &Arc<Tracked>) -> Self {
        t.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(t))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_headroom_for_http_and_the_server_itself() {
        let b = Budget::for_limit(20_000);
        assert_eq!(b.connections, 19_936);
        assert_eq!(b.sockets, 19_936 - 1_993);
        let small = Budget::for_limit(256);
        assert_eq!(small.connections, 192);
        assert_eq!(small.sockets, 160, "at least 32 kept for HTTP");
        let tiny = Budget::for_limit(70);
        assert!(tiny.sockets >= 1 && tiny.sockets < tiny.connections);
    }

    #[test]
    fn eviction_takes_the_oldest_idle_connection() {
        let c = HttpConnections::default();
        let (a, ta) = c.insert();
        let (_b, tb) = c.insert();
        let (_c, _tc) = c.insert();
        let busy = Busy::new(&ta);
        assert!(c.evict_oldest_idle());
        assert_eq!(c.open(), 2);
        assert!(c.lock().contains_key(&a), "the busy one stays");
        // The evicted one was told.
        assert!(
            futures_util::FutureExt::now_or_never(tb.evict.notified()).is_some(),
            "b was notified"
        );
        drop(busy);
        assert!(c.evict_oldest_idle());
        assert!(!c.lock().contains_key(&a));
    }
}
