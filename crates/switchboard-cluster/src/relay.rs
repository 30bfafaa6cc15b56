//! Relays that cross nodes: to a member's node inbox (targeted) or the room's channel
//! (room-wide), without waiting for Redis; a publish that fails or reaches too few nodes,
//! and a recipient on another node that cannot take a signal, are reported to the sender.

use super::*;

/// Whether a publish reached `min` subscribers; if not, why, worded for the sender.
pub(crate) fn reached(
    published: &Result<usize, StoreError>,
    min: usize,
    unreached: &Unreached,
) -> Result<(), String> {
    match published {
        Ok(n) if *n >= min => Ok(()),
        Ok(_) => Err(unreached.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whose node a signal did not reach (the error is worded only when it happens).
#[derive(Debug)]
pub(crate) enum Unreached {
    /// The node holding this peer.
    PeerNode(PeerId),
    /// A node holding members of the room.
    RoomNode,
}

impl Display for Unreached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PeerNode(p) => write!(f, "the node holding {p} is unreachable"),
            Self::RoomNode => f.write_str("a node holding members of this room is unreachable"),
        }
    }
}

impl Inner {
    pub(crate) fn relay_remote<'a>(
        self: &'a Arc<Self>,
        from: &SeatKey,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'a, Result<Delivery, RelayError>> {
        let (remote_count, instances, dest) = {
            let st = self.lock();
            match st.views.get(&from.room) {
                Some(v) => match &target {
                    Target::Peer(p) => (
                        v.remote.len(),
                        0,
                        v.find(p.as_str()).map(|r| r.inbox.clone()),
                    ),
                    Target::Room => (v.remote.len(), v.instances(), None),
                },
                None => (0, 0, None),
            }
        };
        let audience_extra = u32::try_from(remote_count).unwrap_or(u32::MAX);
        match target {
            Target::Peer(p) => {
                let Some(inbox) = dest else {
                    return Op::ready(self.local.relay_with(
                        from,
                        Target::Peer(p),
                        kind,
                        payload,
                        origin,
                        audience_extra,
                    ));
                };
                if !self.local.is_live(from) {
                    return Op::ready(Err(RelayError::NotInRoom(from.room.clone())));
                }
                let audience =
                    u32::try_from(self.local_count(&from.room) + remote_count).unwrap_or(u32::MAX);
                let signal = Signal {
                    room: from.room.clone(),
                    from: from.peer.clone(),
                    to: Some(p.clone()),
                    kind,
                    payload,
                    origin,
                    audience,
                };
                let msg = wire::encode_signal(&self.inst, &signal);
                let unreached = Unreached::PeerNode(p);
                self.publish_signal(from, inbox, msg, 1, unreached, Ok(1))
            }
            Target::Room => {
                let local = self.local.relay_with(
                    from,
                    Target::Room,
                    kind.clone(),
                    payload.clone(),
                    origin,
                    audience_extra,
                );
                if remote_count == 0 || matches!(local, Err(RelayError::NotInRoom(_))) {
                    return Op::ready(local);
                }
                let audience =
                    u32::try_from(self.local_count(&from.room) + remote_count).unwrap_or(u32::MAX);
                let signal = Signal {
                    room: from.room.clone(),
                    from: from.peer.clone(),
                    to: None,
                    kind,
                    payload,
                    origin,
                    audience,
                };
                let msg = wire::encode_signal(&self.inst, &signal);
                let channel = Arc::from(wire::room_channel(&from.room));
                // Every node holding members, and this one (subscribed too).
                let local = local.map(|l| l.delivered + remote_count);
                self.publish_signal(
                    from,
                    channel,
                    msg,
                    instances + 1,
                    Unreached::RoomNode,
                    local,
                )
            }
        }
    }

    /// Publishes a relayed signal. `local` is the relay's outcome so far: how many
    /// recipients it counts (this node's and the remote ones), or this node's refusal.
    ///
    /// Normally nobody waits: the relay is answered at once and the publisher tells the
    /// sender later if the publish failed or reached fewer than `min` subscribers
    /// ([`Then::Check`]). So a sender's signals flow to other nodes as they flow on one node,
    /// one after another without a Redis round trip each (their order is the publisher
    /// queue's, which is the order they were relayed in). While more than
    /// [`UNAWAITED_MAX`] bytes wait unpublished, the sender waits for its own publish
    /// instead, which bounds what a fast sender can queue against a slow Redis.
    pub(crate) fn publish_signal(
        self: &Arc<Self>,
        from: &SeatKey,
        channel: Arc<str>,
        msg: Vec<u8>,
        min: usize,
        unreached: Unreached,
        local: Result<usize, RelayError>,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        if !self.is_up() {
            return Op::ready(Err(StoreError::NotConnected.into()));
        }
        let bytes = msg.len();
        if self.unawaited.load(Ordering::Relaxed) + bytes <= UNAWAITED_MAX {
            self.unawaited.fetch_add(bytes, Ordering::Relaxed);
            let then = Then::Check {
                sender: from.clone(),
                min,
                unreached,
                bytes,
            };
            if self.pub_tx.send(Publish { channel, msg, then }).is_err() {
                self.unawaited.fetch_sub(bytes, Ordering::Relaxed);
                return Op::ready(Err(StoreError::Stopped.into()));
            }
            return Op::ready(local.map(|delivered| Delivery { delivered }));
        }
        Op::pending(async move {
            let published = self.publish(channel, msg).await;
            reached(&published, min, &unreached)
                .map_err(RelayError::Unavailable)
                .and(local)
                .map(|delivered| Delivery { delivered })
        })
    }

    /// A signal from another node: delivered to its local recipients when its sender is in
    /// this node's view of the room (ids taken from the view, not allocated per signal).
    /// Recipients that cannot take it (full outboxes: they are closed as slow consumers) are
    /// reported back to the sender's node, which tells the sender in its dialect, as one node
    /// does; a mailbox item for a recipient not here stays queued and is no error.
    pub(crate) fn on_signal(&self, h: &wire::Header<'_>, body: &[u8]) {
        let Some(f) = h.f.as_deref() else { return };
        let (room, from) = {
            let st = self.lock();
            let Some((room, view)) = st.views.get_key_value(h.r.as_ref()) else {
                return;
            };
            let Some(sender) = view.find(f) else { return };
            (room.clone(), sender.summary.id.clone())
        };
        let Some(signal) = wire::signal_of(h, room.clone(), from.clone(), body) else {
            return;
        };
        let mailbox = matches!(signal.kind, SignalKind::Mailbox(_));
        let to = signal.to.clone();
        let env = Envelope::new(Event::Signal(signal));
        let result = match to {
            Some(to) => self.local.deliver_to(&room, &to, &env),
            None => self
                .local
                .deliver_local(&room, Some(&from), &env)
                .map(|_| ()),
        };
        let failed = match result {
            Ok(()) => return,
            Err(RelayError::PeerNotFound(_)) if mailbox => return,
            Err(RelayError::PeerNotFound(p)) => vec![p],
            Err(RelayError::Undelivered(failed)) => failed,
            Err(_) => return,
        };
        self.tell_sender(&room, &from, &failed);
    }

    /// Publishes an undelivered notice to the node holding `sender` (see
    /// [`wire::encode_undelivered`]).
    pub(crate) fn tell_sender(&self, room: &RoomId, sender: &PeerId, failed: &[PeerId]) {
        let found = {
            let st = self.lock();
            st.views
                .get(room)
                .and_then(|v| v.find(sender.as_str()))
                .map(|r| (r.inbox.clone(), r.uid.clone()))
        };
        let Some((inbox, uid)) = found else { return };
        let msg = wire::encode_undelivered(&self.inst, room, sender, &uid, failed);
        let _ = self.pub_tx.send(Publish {
            channel: inbox,
            msg,
            then: Then::Forget,
        });
    }

    /// Another node could not deliver a signal one of our members sent: tell that member,
    /// if it is still the connection that sent it.
    pub(crate) fn on_undelivered(&self, room: &RoomId, h: &wire::Header<'_>) {
        let (Some(p), Some(uid), Some(failed)) = (&h.p, &h.u, &h.x) else {
            return;
        };
        let key = self
            .lock()
            .locals
            .get(room)
            .and_then(|m| m.get(p.as_ref()))
            .filter(|l| l.uid == *uid)
            .map(|l| l.key.clone());
        if let Some(key) = key {
            let failed = failed.iter().map(|f| PeerId::from(f.as_str())).collect();
            self.local
                .notify_undelivered(&key, RelayError::Undelivered(failed));
        }
    }
}
