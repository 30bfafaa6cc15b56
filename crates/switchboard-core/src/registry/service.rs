//! The registry as the single-node [`MembershipService`]: every operation answered at once.

use super::*;

impl MembershipService for Registry {
    fn name(&self) -> &'static str {
        "local"
    }

    fn join(&self, request: JoinRequest) -> Op<'_, Result<Seat, JoinError>> {
        Op::ready(self.join_now(request))
    }

    fn relay(
        &self,
        from: &Seat,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        Op::ready(self.relay_now(from.key(), target, kind, payload, origin))
    }

    fn touch(&self, seat: &Seat) {
        self.touch_now(seat.key());
    }

    fn mailbox_push(
        &self,
        from: &Seat,
        to: PeerId,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        Op::ready(self.mailbox_push_now(from.key(), to, payload, origin))
    }

    fn mailbox_replay(
        &self,
        seat: &Seat,
        from_seq: u64,
    ) -> Op<'_, Result<Vec<(u64, Bytes)>, RelayError>> {
        Op::ready(self.mailbox_replay_now(seat.key(), from_seq))
    }

    fn first_flow(&self, seat: &Seat) -> Op<'_, Option<FirstFlow>> {
        Op::ready(self.first_flow_now(seat.key()))
    }

    fn create_room(
        &self,
        id: RoomId,
        opts: CreateOptions,
    ) -> Op<'_, Result<RoomSnapshot, JoinError>> {
        Op::ready(self.create_room_now(id, opts))
    }

    fn delete_room(&self, id: RoomId) -> Op<'_, Result<bool, JoinError>> {
        Op::ready(Ok(self.delete_room_now(&id)))
    }

    fn room(&self, id: RoomId) -> Op<'_, Result<Option<RoomSnapshot>, JoinError>> {
        Op::ready(Ok(self.room_now(&id)))
    }

    fn rooms(&self) -> Op<'_, Result<Vec<RoomSnapshot>, JoinError>> {
        Op::ready(Ok(self.rooms_now()))
    }

    fn stats(&self) -> Op<'_, Result<RegistryStats, JoinError>> {
        Op::ready(Ok(self.stats_now()))
    }

    fn local_stats(&self, pick: &dyn Fn(DialectTag) -> bool) -> RegistryStats {
        let state = self.lock();
        let mut out = RegistryStats::default();
        for room in state.rooms.values() {
            let n = room
                .members
                .iter()
                .filter(|m| pick(m.handle.dialect()))
                .count();
            out.peers += n;
            out.rooms += usize::from(n > 0);
        }
        out
    }

    fn revoke(&self, user: PeerId) -> Op<'_, Result<usize, JoinError>> {
        Op::ready(Ok(self.close_peer(&user, CloseReason::Revoked)))
    }

    fn sweep(&self, policy: SweepPolicy) -> SweepReport {
        let now = Instant::now();
        let mut report = SweepReport::default();
        let mut state = self.lock();
        let State { rooms, peers, .. } = &mut *state;
        rooms.retain(|id, room| {
            let idle_after = room.inactivity_timeout.unwrap_or(policy.inactivity_timeout);
            let idle = now.duration_since(room.last_activity) >= idle_after;
            if room.members.is_empty() {
                let grace_over = match room.empty_since {
                    Some(since) => {
                        let grace = room.empty_grace.unwrap_or(policy.empty_grace);
                        now.duration_since(since) >= grace
                    }
                    // Never joined: nothing has touched it since it was created.
                    None => now.duration_since(room.last_activity) >= policy.unjoined_ttl,
                };
                let expired = policy.force_empty || grace_over || idle;
                if expired {
                    report.empty_removed += 1;
                }
                return !expired;
            }
            if idle {
                report.idle_closed += 1;
                *peers -= room.members.len();
                close_members(id, room, RoomClosedReason::Inactive);
                return false;
            }
            true
        });
        report
    }
}
