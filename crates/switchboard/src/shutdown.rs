//! Shutdown: one cancellation token for the whole server, a tracker for every WebSocket
//! task, and a list of every WebSocket connection's outbox. `axum::serve`'s graceful
//! shutdown does not see upgraded sockets, so connections are tracked here explicitly: on
//! SIGINT/SIGTERM the listeners stop accepting, the token is cancelled, every listed
//! connection's outbox is closed with [`CloseReason::Shutdown`] (each sends its close
//! frame), and `drain` waits for the tracked tasks within the grace period.
//!
//! The list holds weak handles, so a connection keeps no shutdown future of its own (an
//! 80-byte waiter per idle peer); gone connections are pruned as the list grows and at each
//! room sweep.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use switchboard_core::{CloseReason, PeerHandle, WeakPeerHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The server-wide shutdown handle. Clone-cheap.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    connections: Arc<Mutex<Connections>>,
}

/// Every WebSocket connection's outbox, weakly.
#[derive(Debug, Default)]
struct Connections {
    list: Vec<WeakPeerHandle>,
    /// The list's length after it was last pruned.
    kept: usize,
}

impl Connections {
    fn prune(&mut self) {
        self.list.retain(WeakPeerHandle::is_alive);
        self.list.shrink_to(self.list.len() * 2);
        self.kept = self.list.len();
    }
}

impl Shutdown {
    /// A fresh handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token every connection's token descends from.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The tracker connection tasks are spawned on.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Lists a connection's outbox, to be closed with [`CloseReason::Shutdown`] when
    /// shutdown begins (at once if it has begun).
    pub fn watch(&self, handle: &PeerHandle) {
        {
            let mut c = self.lock();
            if c.list.len() >= 64 && c.list.len() >= 2 * c.kept {
                c.prune();
            }
            c.list.push(handle.downgrade());
        }
        // After the push: a shutdown that began before it closes this one here, one that
        // begins after it finds it in the list.
        if self.token.is_cancelled() {
            handle.close(CloseReason::Shutdown);
        }
    }

    /// Forgets the connections that have gone (the room sweep calls this).
    pub fn prune(&self) {
        self.lock().prune();
    }

    /// How many connections the list holds, gone ones not yet pruned included.
    #[cfg(test)]
    fn listed(&self) -> usize {
        self.lock().list.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connections> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Cancels the token and closes every listed connection's outbox.
    fn begin(&self) {
        self.token.cancel();
        let list = std::mem::take(&mut self.lock().list);
        // Test builds only: a pause after each close stands in for this thread being
        // preempted mid-loop, so that a test can make connections close while others are
        // still being written to (tests/lifecycle.rs).
        #[cfg(debug_assertions)]
        let pause = std::env::var("SWITCHBOARD_TEST_SHUTDOWN_PAUSE_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_micros);
        for handle in list.iter().filter_map(WeakPeerHandle::upgrade) {
            handle.close(CloseReason::Shutdown);
            #[cfg(debug_assertions)]
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
        }
    }

    /// Begins shutdown and waits up to `grace` for every tracked task. Returns whether all
    /// of them finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.begin();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use switchboard_core::{ConnId, OutboxBounds, Received, outbox};

    use super::*;
    use crate::dialect::tags;

    fn connection() -> (PeerHandle, switchboard_core::OutboxReceiver) {
        outbox(ConnId::next(), tags::OCTATE, OutboxBounds::items(8))
    }

    async fn closed_with(rx: &mut switchboard_core::OutboxReceiver) -> Option<CloseReason> {
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Received::Closed(reason)) => Some(reason),
            _ => None,
        }
    }

    #[tokio::test]
    async fn shutdown_closes_every_listed_connection_and_any_listed_after_it() {
        let shutdown = Shutdown::new();
        let (a, mut a_rx) = connection();
        let (b, mut b_rx) = connection();
        shutdown.watch(&a);
        shutdown.watch(&b);
        assert!(shutdown.drain(Duration::from_millis(10)).await);
        assert_eq!(closed_with(&mut a_rx).await, Some(CloseReason::Shutdown));
        assert_eq!(closed_with(&mut b_rx).await, Some(CloseReason::Shutdown));
        let (late, mut late_rx) = connection();
        shutdown.watch(&late);
        assert_eq!(closed_with(&mut late_rx).await, Some(CloseReason::Shutdown));
    }

    #[test]
    fn gone_connections_are_pruned_as_the_list_grows_and_on_demand() {
        let shutdown = Shutdown::new();
        let kept: Vec<_> = (0..10).map(|_| connection()).collect();
        kept.iter().for_each(|(h, _)| shutdown.watch(h));
        for _ in 0..1000 {
            let (h, rx) = connection();
            shutdown.watch(&h);
            drop((h, rx));
        }
        assert!(
            shutdown.listed() < 200,
            "{} listed for 10 live connections",
            shutdown.listed()
        );
        shutdown.prune();
        assert_eq!(shutdown.listed(), 10);
    }
}
