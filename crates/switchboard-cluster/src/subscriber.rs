//! What arrives on the subscriber connection: this node's own signals skipped undecoded,
//! a room's messages deferred while a join to it is under way ([`gate`](crate::gate)),
//! everything else applied in order: signals delivered, membership events merged into the
//! views (skipped when their sequence number is already reflected), undelivered notices
//! passed to their sender, room deletions.

use super::*;

impl Inner {
    /// One publish from the subscriber connection: a message or a batch, applied in order,
    /// except a room's messages while a join to it is under way (deferred, see [`gate`]).
    /// This node's own room-wide signals come back to it and are skipped undecoded.
    pub(crate) fn receive(&self, publish: &[u8]) {
        if wire::is_own_signal(publish, &self.own_signal) {
            return;
        }
        let mut gates = self.gates();
        for msg in wire::split(publish) {
            let Ok((h, body)) = wire::decode(msg) else {
                tracing::warn!("cluster: unreadable message ignored");
                continue;
            };
            if !gates.defer(&h.r, msg) {
                self.apply_decoded(&h, body);
            }
        }
    }

    /// Applies one message that waited behind a join.
    pub(crate) fn apply_message(&self, msg: &[u8]) {
        match wire::decode(msg) {
            Ok((h, body)) => self.apply_decoded(&h, body),
            Err(_) => tracing::warn!("cluster: unreadable message ignored"),
        }
    }

    /// Applies one message from the subscriber connection (with the gates held).
    pub(crate) fn apply_decoded(&self, h: &wire::Header<'_>, body: &[u8]) {
        if h.t == "s" {
            if h.o != *self.inst {
                self.on_signal(h, body);
            }
            return;
        }
        let room = RoomId::from(h.r.as_ref());
        match h.t.as_ref() {
            "j" if h.o != *self.inst => {
                let (Some(p), Some(rec)) = (&h.p, &h.m) else {
                    return;
                };
                let peer = PeerId::from(p.as_ref());
                let event = {
                    let mut st = self.lock();
                    let Some(view) = st.views.get_mut(&room) else {
                        return;
                    };
                    if h.q <= view.seq {
                        return;
                    }
                    view.seq = h.q;
                    if view.find(peer.as_str()).is_some_and(|r| r.uid == rec.u) {
                        return;
                    }
                    view.remote.retain(|r| r.summary.id != peer);
                    let r = remote_of(&peer, rec);
                    let summary = r.summary.clone();
                    view.remote.push(r);
                    Event::PeerJoined {
                        room: room.clone(),
                        peer: summary,
                    }
                };
                // A member that cannot take it is closed; its leave tells the others.
                let _ = self.local.deliver_local(&room, None, &Envelope::new(event));
            }
            "l" => {
                let (Some(p), Some(uid)) = (&h.p, &h.u) else {
                    return;
                };
                let peer = PeerId::from(p.as_ref());
                if wire::owner_of(uid) == &*self.inst {
                    if h.o != *self.inst {
                        // One of ours was removed by another node (it thought us dead).
                        let ours = self
                            .lock()
                            .locals
                            .get(&room)
                            .and_then(|m| m.get(&peer))
                            .is_some_and(|l| l.uid == *uid);
                        if ours {
                            tracing::warn!(%room, %peer, "cluster: our member was reaped; closing it");
                            self.local
                                .close_member(&room, &peer, CloseReason::ClusterLost);
                        }
                    }
                    return;
                }
                let removed = {
                    let mut st = self.lock();
                    let Some(view) = st.views.get_mut(&room) else {
                        return;
                    };
                    if h.q <= view.seq {
                        return;
                    }
                    view.seq = h.q;
                    let before = view.remote.len();
                    view.remote
                        .retain(|r| !(r.summary.id == peer && r.uid == *uid));
                    before != view.remote.len()
                };
                if removed {
                    let env = Envelope::new(Event::PeerLeft {
                        room: room.clone(),
                        peer,
                    });
                    let _ = self.local.deliver_local(&room, None, &env);
                }
            }
            "u" => self.on_undelivered(&room, h),
            "v" => {
                if let Some(user) = &h.p {
                    let n = self
                        .local
                        .registry()
                        .close_peer(&PeerId::from(user.as_ref()), CloseReason::Revoked);
                    if n > 0 {
                        tracing::info!(user = %user, connections = n, "cluster: access revoked");
                    }
                }
            }
            "c" => {
                if let Some(v) = self.lock().views.get_mut(&room) {
                    v.remote.clear();
                }
                self.local.registry().delete_room_now(&room);
            }
            _ => {}
        }
    }
}
