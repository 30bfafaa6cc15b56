//! Shutdown: one cancellation token for the whole server and a tracker for every WebSocket
//! task. `axum::serve`'s graceful shutdown does not see upgraded sockets, so connections
//! are tracked here explicitly: on SIGINT/SIGTERM the listeners stop accepting, the token is
//! cancelled (every connection sends its close frame), and `drain` waits for the tracked
//! tasks within the grace period.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The server-wide shutdown handle. Clone-cheap.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
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

    /// Begins shutdown and waits up to `grace` for every tracked task. Returns whether all
    /// of them finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.token.cancel();
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
