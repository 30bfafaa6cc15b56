//! The nt dialect's mailbox on one node: items queued for a room's members by id, bounded
//! per recipient in items and per room in bytes (the oldest go first), replayed from a
//! sequence number.

use super::*;

#[derive(Default)]
pub(super) struct Mailbox {
    /// Per recipient: the next sequence number and the items not yet acknowledged.
    queues: HashMap<PeerId, (u64, VecDeque<(u64, Bytes)>)>,
    /// Bytes of every queued item, against [`Limits::mailbox_bytes`].
    bytes: usize,
}

impl Registry {
    /// [`MembershipService::mailbox_push`], answered at once.
    ///
    /// # Errors
    /// [`RelayError::NotInRoom`] for a stale seat; [`RelayError::Undelivered`] when the
    /// present recipient could not take the item (it stays queued for its `hello`).
    pub fn mailbox_push_now(
        &self,
        from: &SeatKey,
        to: PeerId,
        payload: Bytes,
        origin: DialectTag,
    ) -> Result<Delivery, RelayError> {
        let limits = &self.shared.limits;
        let mut state = self.lock();
        let room = room_of(&mut state, from)?;
        let mb = room.mailbox.get_or_insert_with(Box::default);
        let (next, items) = mb.queues.entry(to.clone()).or_default();
        let seq = *next;
        *next += 1;
        mb.bytes += payload.len();
        items.push_back((seq, payload.clone()));
        // Bounded per recipient in items and per room in bytes: the oldest go first.
        while items.len() > limits.mailbox_items {
            if let Some((_, old)) = items.pop_front() {
                mb.bytes -= old.len();
            }
        }
        while mb.bytes > limits.mailbox_bytes {
            let Some((_, old)) = mb
                .queues
                .values_mut()
                .filter(|(_, q)| !q.is_empty())
                .min_by_key(|(_, q)| q.front().map(|(s, _)| *s))
                .and_then(|(_, q)| q.pop_front())
            else {
                break;
            };
            mb.bytes -= old.len();
        }
        let Some(m) = room.members.iter().find(|m| m.id == to) else {
            return Ok(Delivery { delivered: 0 });
        };
        let env = Envelope::new(Event::Signal(Signal {
            room: from.room.clone(),
            from: from.peer.clone(),
            to: Some(to.clone()),
            kind: SignalKind::Mailbox(seq),
            payload,
            origin,
            audience: u32::try_from(room.members.len()).unwrap_or(u32::MAX),
        }));
        match deliver(&m.handle, &env) {
            Ok(()) => Ok(Delivery { delivered: 1 }),
            Err(_) => Err(RelayError::Undelivered(vec![to])),
        }
    }

    /// [`MembershipService::mailbox_replay`], answered at once.
    ///
    /// # Errors
    /// [`RelayError::NotInRoom`] for a stale seat.
    pub fn mailbox_replay_now(
        &self,
        seat: &SeatKey,
        from_seq: u64,
    ) -> Result<Vec<(u64, Bytes)>, RelayError> {
        let mut state = self.lock();
        let room = room_of(&mut state, seat)?;
        let Some(mb) = room.mailbox.as_mut() else {
            return Ok(Vec::new());
        };
        let Some((_, items)) = mb.queues.get_mut(&seat.peer) else {
            return Ok(Vec::new());
        };
        while items.front().is_some_and(|(seq, _)| *seq < from_seq) {
            if let Some((_, old)) = items.pop_front() {
                mb.bytes -= old.len();
            }
        }
        Ok(items.iter().cloned().collect())
    }
}
