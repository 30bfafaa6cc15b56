//! Limits the core enforces, as plain data. The server enforces the rest of its limits
//! (frame size, message rate, connections per IP) at its edge.

/// Capacity limits for a [`Registry`](crate::Registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Peers per room; `0` means unlimited. Default: `0`. A room may carry its own
    /// tighter capacity (see [`CreateOptions::capacity`](crate::CreateOptions)).
    pub max_peers_per_room: usize,
    /// Rooms alive at once; `0` means unlimited. Default: `10_000`.
    pub max_rooms: usize,
    /// Events a peer's outbox holds before the peer counts as too slow and is closed.
    /// Default: `256`.
    pub outbox_capacity: usize,
    /// Mailbox items kept per recipient, the oldest going first. Default: `256`.
    pub mailbox_items: usize,
    /// Mailbox bytes kept per room, the oldest items going first. Default: 1 MiB.
    pub mailbox_bytes: usize,
    /// Whether token holders are kept out of rooms that admit anonymous peers (secured and
    /// anonymous rooms never mix). Default: `false`; the server sets it in production.
    pub separate_secured: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_peers_per_room: 0,
            max_rooms: 10_000,
            outbox_capacity: 256,
            mailbox_items: 256,
            mailbox_bytes: 1 << 20,
            separate_secured: false,
        }
    }
}
