//! A peer's handle: its bounded outbox and the means to close it with a reason.
//!
//! The transport owns the receiving half and drains it to the socket. Everyone else holds a
//! [`PeerHandle`] and may only `try_deliver` (never wait) and `close`.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{ConnId, DialectTag, Envelope};

/// An item in a peer's outbox.
#[derive(Debug)]
pub enum Outbound {
    /// A core event, to be rendered in the peer's dialect.
    Event(Arc<Envelope>),
    /// A frame already rendered for this peer (a reply to its own request).
    Frame(Bytes),
}

/// Why the core (or another peer's task) closed a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Its outbox was full: it is not reading fast enough.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
    /// Its room was deleted through the admin API.
    RoomDeleted,
    /// Its room was closed for inactivity.
    RoomInactive,
    /// It stopped answering heartbeats.
    HeartbeatTimeout,
}

impl CloseReason {
    /// A short human-readable reason, suitable for a close frame.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow consumer: outbox full",
            Self::Shutdown => "server shutting down",
            Self::RoomDeleted => "room deleted",
            Self::RoomInactive => "room closed for inactivity",
            Self::HeartbeatTimeout => "heartbeat timeout",
        }
    }
}

/// Why an item could not be put into an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The outbox is at capacity.
    #[error("outbox full")]
    Full,
    /// The peer's connection is gone.
    #[error("peer closed")]
    Closed,
}

/// A clone-cheap handle to one connection's outbox.
#[derive(Clone, Debug)]
pub struct PeerHandle {
    conn: ConnId,
    dialect: DialectTag,
    tx: mpsc::Sender<Outbound>,
    cancel: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
}

/// Creates a connection's outbox: the handle others use, and the receiver its writer drains.
/// `cancel` should be a child of the server's shutdown token, so that shutdown closes it.
pub fn outbox(
    conn: ConnId,
    dialect: DialectTag,
    capacity: usize,
    cancel: CancellationToken,
) -> (PeerHandle, mpsc::Receiver<Outbound>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let handle = PeerHandle {
        conn,
        dialect,
        tx,
        cancel,
        reason: Arc::new(OnceLock::new()),
    };
    (handle, rx)
}

impl PeerHandle {
    /// The connection this handle belongs to.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The dialect the connection speaks.
    pub fn dialect(&self) -> DialectTag {
        self.dialect
    }

    /// Queues an item without waiting.
    ///
    /// # Errors
    /// [`SendError::Full`] when the outbox is at capacity, [`SendError::Closed`] when the
    /// connection is gone.
    pub fn try_deliver(&self, item: Outbound) -> Result<(), SendError> {
        self.tx.try_send(item).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    /// Asks the connection to close. The first reason given wins.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.cancel.cancel();
    }

    /// Resolves when the connection has been asked to close (by [`close`](Self::close) or by
    /// the parent token, i.e. shutdown).
    pub async fn closed(&self) {
        self.cancel.cancelled().await;
    }

    /// Whether a close has been asked for.
    pub fn is_closing(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The reason given to [`close`](Self::close); `Shutdown` when the parent token fired.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.reason.get() {
            Some(r) => Some(*r),
            None if self.cancel.is_cancelled() => Some(CloseReason::Shutdown),
            None => None,
        }
    }
}
