//! Per-room apply gates: what keeps a join and the room's events from other nodes in order,
//! without holding up any other room.
//!
//! A join reads the room's members from Redis (its script) and then seats the joiner
//! locally. An event for that room published after the script (a member joining or leaving
//! elsewhere) must reach this node's members *after* the joiner is seated, or the joiner
//! would miss it; one published before is already in the joiner's snapshot and is skipped
//! by its sequence number. So while a join to a room is between its script and its local
//! seat, that room's gate is closed: the subscriber defers the room's messages, in order,
//! and the last join to finish applies them. Messages for every other room are applied at
//! once (a node-wide gate made every inbound message wait behind every join's Redis round
//! trips).
//!
//! [`RoomGates`] is plain data; the cluster keeps it behind one mutex that the subscriber
//! also holds while it applies a message, so a gate never closes in the middle of applying
//! one of its room's messages, and the deferred messages are applied before any later one.

use std::collections::{HashMap, VecDeque};

use switchboard_core::RoomId;

use super::Inner;

/// A join's hold on its room's gate: closed when made, opened when dropped (on every way out
/// of the join), applying what waited.
pub(super) struct RoomGate<'a> {
    inner: &'a Inner,
    room: RoomId,
}

impl<'a> RoomGate<'a> {
    /// Closes `room`'s gate for a join; waits for a message of the room being applied.
    pub(super) fn close(inner: &'a Inner, room: &RoomId) -> Self {
        inner.gates().close(room);
        Self {
            inner,
            room: room.clone(),
        }
    }
}

impl Drop for RoomGate<'_> {
    fn drop(&mut self) {
        // Held while the deferred messages are applied: a message that arrives meanwhile is
        // applied after them.
        let mut gates = self.inner.gates();
        for msg in gates.open(&self.room) {
            self.inner.apply_message(&msg);
        }
    }
}

/// Bytes deferred per room at most. A gate is closed for at most a few Redis timeouts, so
/// this is only reached by a room flooded while Redis stalls; past it the oldest messages go,
/// with a warning, as Redis itself drops a subscriber that falls this far behind (its
/// default pub/sub output limit is 32 MB).
const DEFERRED_MAX_BYTES: usize = 32 << 20;

/// The rooms whose gate is closed, with what waits for each.
#[derive(Debug, Default)]
pub(super) struct RoomGates {
    rooms: HashMap<RoomId, Closed>,
}

#[derive(Debug, Default)]
struct Closed {
    /// Joins to the room between their script and their seat.
    joins: usize,
    /// The room's messages that arrived meanwhile, in arrival order.
    deferred: VecDeque<Vec<u8>>,
    /// Their bytes.
    bytes: usize,
}

impl RoomGates {
    /// A join to `room` is about to run its script: the room's messages wait from now on.
    pub(super) fn close(&mut self, room: &RoomId) {
        self.rooms.entry(room.clone()).or_default().joins += 1;
    }

    /// Defers `msg` when `room`'s gate is closed (true); false means apply it now.
    pub(super) fn defer(&mut self, room: &str, msg: &[u8]) -> bool {
        let Some(closed) = self.rooms.get_mut(room) else {
            return false;
        };
        closed.bytes += msg.len();
        closed.deferred.push_back(msg.to_vec());
        while closed.bytes > DEFERRED_MAX_BYTES && closed.deferred.len() > 1 {
            if let Some(old) = closed.deferred.pop_front() {
                closed.bytes -= old.len();
                tracing::warn!(%room, "cluster: a room's messages piled up behind a stalled join; the oldest was dropped");
            }
        }
        true
    }

    /// A join to `room` is seated (or failed). When it was the last one, the gate opens and
    /// the messages that waited are handed back, in order, to be applied before anything
    /// else; otherwise they keep waiting for the other joins.
    pub(super) fn open(&mut self, room: &RoomId) -> VecDeque<Vec<u8>> {
        let Some(closed) = self.rooms.get_mut(room) else {
            return VecDeque::new();
        };
        closed.joins -= 1;
        if closed.joins > 0 {
            return VecDeque::new();
        }
        self.rooms
            .remove(room)
            .map(|c| c.deferred)
            .unwrap_or_default()
    }

    /// How many rooms have a join in flight.
    #[cfg(test)]
    fn closed(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> RoomId {
        RoomId::from(id)
    }

    #[test]
    fn a_join_holds_back_its_own_room_only() {
        let mut gates = RoomGates::default();
        gates.close(&room("a"));
        assert!(gates.defer("a", b"1"), "a's event waits for the join");
        assert!(!gates.defer("b", b"x"), "b's event is applied at once");
        assert!(gates.defer("a", b"2"));
        let released: Vec<_> = gates.open(&room("a")).into_iter().collect();
        assert_eq!(released, [b"1".to_vec(), b"2".to_vec()], "in arrival order");
        assert!(!gates.defer("a", b"3"), "open again");
        assert_eq!(gates.closed(), 0);
    }

    #[test]
    fn concurrent_joins_release_only_when_the_last_one_is_seated() {
        let mut gates = RoomGates::default();
        gates.close(&room("a"));
        gates.close(&room("a"));
        assert!(gates.defer("a", b"1"));
        assert!(
            gates.open(&room("a")).is_empty(),
            "the second join still runs"
        );
        assert!(gates.defer("a", b"2"));
        assert_eq!(gates.open(&room("a")).len(), 2);
        assert_eq!(gates.closed(), 0);
    }

    #[test]
    fn opening_a_room_that_was_never_closed_changes_nothing() {
        let mut gates = RoomGates::default();
        assert!(gates.open(&room("a")).is_empty());
        assert!(!gates.defer("a", b"1"));
    }

    #[test]
    fn a_join_that_never_ends_cannot_make_the_node_hoard_messages() {
        let mut gates = RoomGates::default();
        gates.close(&room("a"));
        let chunk = vec![b'x'; 1 << 20];
        for n in 0..40u8 {
            let mut msg = chunk.clone();
            msg[0] = n;
            assert!(gates.defer("a", &msg));
        }
        let released = gates.open(&room("a"));
        assert_eq!(released.len(), DEFERRED_MAX_BYTES >> 20);
        assert_eq!(released.front().unwrap()[0], 8, "the oldest went first");
    }
}
