//! This node's *views*: for each room where it holds members, the room's members held by
//! other nodes, the room's last sequence number reflected, and the room channel's
//! subscription (held while a member or a join is here, lingering [`LINGER`] after).
//! Remote events and snapshots are merged here, and this node's members are told of each
//! difference.

use super::*;

/// A remote member in a view.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub(crate) summary: MemberSummary,
    pub(crate) uid: String,
    pub(crate) inst: Arc<str>,
    /// The inbox channel of `inst` (named once, not per signal).
    pub(crate) inbox: Arc<str>,
}

/// What this node knows of a room's members elsewhere.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// The last room sequence number reflected here.
    pub(crate) seq: u64,
    pub(crate) remote: Vec<Remote>,
}

impl View {
    pub(crate) fn find(&self, peer: &str) -> Option<&Remote> {
        self.remote.iter().find(|r| r.summary.id.as_str() == peer)
    }

    /// Distinct instances holding members, other than this one.
    pub(crate) fn instances(&self) -> usize {
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.remote {
            if !seen.contains(&&*r.inst) {
                seen.push(&r.inst);
            }
        }
        seen.len()
    }
}

pub(crate) fn remote_of(peer: &PeerId, rec: &Record) -> Remote {
    Remote {
        summary: rec.summary(peer),
        uid: rec.u.clone(),
        inst: Arc::from(rec.o.as_str()),
        inbox: Arc::from(wire::inbox(&rec.o)),
    }
}

impl Inner {
    /// Counts a join in progress (or a member) in `room`; subscribes the room's channel on
    /// the first. False when the subscription failed.
    pub(crate) async fn hold(&self, room: &RoomId) -> bool {
        let first = {
            let mut st = self.lock();
            let n = st.subs.entry(room.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                st.views.insert(room.clone(), View::default());
                // Still subscribed from a member that left moments ago?
                st.linger.remove(room).is_none()
            } else {
                false
            }
        };
        if !first {
            return true;
        }
        let (tx, rx) = oneshot::channel();
        let _ = self
            .link_tx
            .send(LinkCmd::Subscribe(wire::room_channel(room), tx));
        let ok = matches!(tokio::time::timeout(OP_TIMEOUT, rx).await, Ok(Ok(true)));
        if !ok {
            self.unhold(room);
        }
        ok
    }

    /// The reverse of [`hold`](Self::hold); unsubscribes after the last.
    pub(crate) fn unhold(&self, room: &RoomId) {
        let mut st = self.lock();
        let Some(n) = st.subs.get_mut(room) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            st.subs.remove(room);
            st.views.remove(room);
            st.linger.insert(room.clone(), std::time::Instant::now());
        }
    }

    /// Unsubscribes the channels of rooms nobody here has held for [`LINGER`] (the upkeep
    /// task, every third of the lease).
    pub(crate) fn end_lingering(&self) {
        let mut st = self.lock();
        let now = std::time::Instant::now();
        let tx = &self.link_tx;
        st.linger.retain(|room, since| {
            let keep = now.duration_since(*since) < LINGER;
            if !keep {
                let _ = tx.send(LinkCmd::Unsubscribe(room.clone()));
            }
            keep
        });
    }

    /// Merges a room's members as Redis has them (after `seq`) into its view, telling this
    /// node's members of each difference. `remove` says whether members missing from Redis
    /// are gone (false right after a Redis restart, when their nodes may not have
    /// re-registered yet).
    pub(crate) fn merge(
        &self,
        room: &RoomId,
        seq: u64,
        members: &[(PeerId, Record)],
        remove: bool,
    ) {
        let mut announce = Vec::new();
        {
            let mut st = self.lock();
            let Some(view) = st.views.get_mut(room) else {
                return;
            };
            view.seq = view.seq.max(seq);
            if remove {
                view.remote.retain(|r| {
                    let keep = members
                        .iter()
                        .any(|(p, rec)| p == &r.summary.id && rec.u == r.uid);
                    if !keep {
                        announce.push(Event::PeerLeft {
                            room: room.clone(),
                            peer: r.summary.id.clone(),
                        });
                    }
                    keep
                });
            }
            for (peer, rec) in members.iter().filter(|(_, rec)| *rec.o != *self.inst) {
                match view.remote.iter_mut().find(|r| &r.summary.id == peer) {
                    Some(r) if r.uid == rec.u => {}
                    Some(r) => {
                        announce.push(Event::PeerLeft {
                            room: room.clone(),
                            peer: peer.clone(),
                        });
                        *r = remote_of(peer, rec);
                        announce.push(Event::PeerJoined {
                            room: room.clone(),
                            peer: r.summary.clone(),
                        });
                    }
                    None => {
                        let r = remote_of(peer, rec);
                        announce.push(Event::PeerJoined {
                            room: room.clone(),
                            peer: r.summary.clone(),
                        });
                        view.remote.push(r);
                    }
                }
            }
        }
        for e in announce {
            // A member that cannot take it is closed; its leave tells the others.
            let _ = self.local.deliver_local(room, None, &Envelope::new(e));
        }
    }

    /// Drops every member of `dead` instances from the views, telling this node's members.
    pub(crate) fn forget_instances(&self, dead: &[String]) {
        let mut gone = Vec::new();
        {
            let mut st = self.lock();
            for (room, view) in &mut st.views {
                view.remote.retain(|r| {
                    let keep = !dead.iter().any(|d| **d == *r.inst);
                    if !keep {
                        gone.push((room.clone(), r.summary.id.clone()));
                    }
                    keep
                });
            }
        }
        for (room, peer) in gone {
            tracing::info!(%room, %peer, "cluster: member of a dead node removed");
            let env = Envelope::new(Event::PeerLeft {
                room: room.clone(),
                peer,
            });
            let _ = self.local.deliver_local(&room, None, &env);
        }
    }

    /// Every instance the views name.
    pub(crate) fn view_instances(&self) -> Vec<String> {
        let st = self.lock();
        let mut out: Vec<String> = Vec::new();
        for r in st.views.values().flat_map(|v| v.remote.iter()) {
            if !out.iter().any(|o| **o == *r.inst) {
                out.push(r.inst.to_string());
            }
        }
        out
    }
}
