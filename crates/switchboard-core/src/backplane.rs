//! The backplane seam: how a registry reaches members that other nodes hold.
//!
//! A single node needs nothing: [`LocalOnly`] is the default. A cluster implementation
//! (Redis pub/sub) forwards each room event to the nodes that hold the room's other members
//! and feeds what it receives back into the local registry. The trait is object-safe so the
//! server holds an `Arc<dyn Backplane>` chosen at start-up.

use std::sync::Arc;

use crate::{Envelope, RoomId};

/// Cross-node delivery of room events.
pub trait Backplane: Send + Sync + 'static {
    /// A short name for logs and `/api/info` (`"local"`, `"redis"`).
    fn name(&self) -> &'static str;

    /// Called after an event was delivered to the local members of `room`, so that other
    /// nodes can deliver it to theirs. Must not block.
    fn forward(&self, room: &RoomId, envelope: &Arc<Envelope>);

    /// Whether the backplane is connected; `/readyz` reports not ready while it is not.
    fn is_ready(&self) -> bool {
        true
    }
}

/// The single-node backplane: every member is local, so there is nothing to forward.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalOnly;

impl Backplane for LocalOnly {
    fn name(&self) -> &'static str {
        "local"
    }

    fn forward(&self, _room: &RoomId, _envelope: &Arc<Envelope>) {}
}
