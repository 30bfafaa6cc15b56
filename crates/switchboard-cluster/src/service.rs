//! [`MembershipService`] on Redis: what the command layer and the HTTP API call (joins,
//! relays, mailboxes, room listings and counts), and the seats' release (a leave, written
//! by the writer task).

use super::*;

/// A room's metadata and members as a script or `HGETALL` returns them.
#[derive(Debug, Default)]
pub(crate) struct RoomData {
    meta: HashMap<String, String>,
    pub(crate) members: Vec<(PeerId, Record)>,
}

impl RoomData {
    pub(crate) fn from_pairs(meta: &[String], members: &[String]) -> Self {
        let meta = meta
            .chunks_exact(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect();
        let mut members: Vec<(PeerId, Record)> = members
            .chunks_exact(2)
            .filter_map(|kv| {
                Some((
                    PeerId::from(kv[0].as_str()),
                    serde_json::from_str(&kv[1]).ok()?,
                ))
            })
            .collect();
        members.sort_by_key(|(_, r)| r.t);
        Self { meta, members }
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.meta
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn num(&self, k: &str) -> Option<i64> {
        self.get(k)?.parse().ok()
    }

    pub(crate) fn options(&self) -> CreateOptions {
        let dur = |k| {
            self.num(k)
                .filter(|n| *n >= 0)
                .map(|n| Duration::from_millis(n.unsigned_abs()))
        };
        let attrs: Vec<[String; 2]> = self
            .get("attrs")
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_default();
        CreateOptions {
            name: self.get("name").map(Arc::from),
            host: self.get("host").map(PeerId::from),
            host_name: self.get("host_name").map(Arc::from),
            attributes: attrs
                .into_iter()
                .map(|[k, v]| (Arc::from(k), Arc::from(v)))
                .collect(),
            capacity: self
                .num("cap")
                .filter(|c| *c > 0)
                .and_then(|c| usize::try_from(c).ok()),
            empty_grace: dur("grace"),
            inactivity_timeout: dur("idle"),
            creator: None,
            secured: self.get("sec") == Some("1"),
        }
    }

    pub(crate) fn snapshot(&self, id: &RoomId) -> Option<RoomSnapshot> {
        if self.meta.is_empty() && self.members.is_empty() {
            return None;
        }
        let o = self.options();
        let created = self
            .num("created")
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let act = self
            .num("act")
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(created);
        let host = o.host.clone();
        Some(RoomSnapshot {
            id: id.clone(),
            name: o.name.unwrap_or_else(|| Arc::from(id.as_str())),
            host: host.clone(),
            host_name: o.host_name,
            attributes: o.attributes,
            created_at_ms: created,
            last_activity_ms: act,
            capacity: o.capacity,
            secured: o.secured,
            members: self
                .members
                .iter()
                .map(|(p, r)| {
                    let mut s = r.summary(p);
                    s.is_host = host.as_ref() == Some(p);
                    s
                })
                .collect(),
        })
    }
}

impl SeatOwner for Inner {
    fn release(&self, key: &SeatKey) {
        self.local.release(key);
        if self.local.has_member(&key.room, &key.peer) {
            // A re-join retired this seat; the member stays under the new one.
            return;
        }
        let removed = {
            let mut st = self.lock();
            let Some(m) = st.locals.get_mut(&key.room) else {
                return;
            };
            let uid = self.uid(key.conn);
            let removed = m.get(&key.peer).is_some_and(|l| l.uid == uid);
            if removed {
                m.remove(&key.peer);
                if m.is_empty() {
                    st.locals.remove(&key.room);
                }
            }
            removed.then_some(uid)
        };
        if let Some(uid) = removed {
            let _ = self.writer_tx.send(Job::Leave {
                room: key.room.clone(),
                peer: key.peer.clone(),
                uid,
            });
            self.unhold(&key.room);
        }
    }

    fn is_live(&self, key: &SeatKey) -> bool {
        self.local.is_live(key)
    }
}

impl MembershipService for Cluster {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_ready(&self) -> bool {
        self.inner.is_up()
    }

    fn join(&self, request: JoinRequest) -> Op<'_, Result<Seat, JoinError>> {
        Op::pending(self.inner.join_async(request))
    }

    fn relay(
        &self,
        from: &Seat,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        self.inner
            .relay_remote(from.key(), target, kind, payload, origin)
    }

    fn touch(&self, seat: &Seat) {
        self.inner.local.registry().touch_now(seat.key());
    }

    fn mailbox_push(
        &self,
        from: &Seat,
        to: PeerId,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        let key = from.key().clone();
        let inner = &self.inner;
        Op::pending(async move {
            if !inner.local.is_live(&key) {
                return Err(RelayError::NotInRoom(key.room.clone()));
            }
            let keys = RoomKeys::new(&key.room);
            let limits = inner.local.registry().limits();
            let mut c = inner.conn()?;
            let seq: u64 = store::call(
                "script mailbox_push",
                inner
                    .scripts
                    .mailbox_push
                    .key(&keys.mbseq)
                    .key(keys.mailbox(&to))
                    .key(keys.mailbox_bytes())
                    .arg(to.as_str())
                    .arg(payload.as_ref())
                    .arg(limits.mailbox_items)
                    .arg(limits.mailbox_bytes)
                    .arg(keys.prefix())
                    .invoke_async(&mut c),
            )
            .await?;
            let remote = inner
                .lock()
                .views
                .get(&key.room)
                .and_then(|v| v.find(to.as_str()).map(|r| r.inbox.clone()));
            let signal = Signal {
                room: key.room.clone(),
                from: key.peer.clone(),
                to: Some(to.clone()),
                kind: SignalKind::Mailbox(seq),
                payload,
                origin,
                audience: 2,
            };
            if let Some(inbox) = remote {
                let msg = wire::encode_signal(&inner.inst, &signal);
                return match inner.publish(inbox, msg).await {
                    Ok(0) => Err(RelayError::Unavailable(
                        "the recipient's node is unreachable (the item stays queued)".into(),
                    )),
                    Ok(_) => Ok(Delivery { delivered: 1 }),
                    Err(e) => Err(e.into()),
                };
            }
            let env = Envelope::new(Event::Signal(signal));
            match inner.local.deliver_to(&key.room, &to, &env) {
                Ok(()) => Ok(Delivery { delivered: 1 }),
                // Gone meanwhile: the item stays queued for its next hello.
                Err(RelayError::PeerNotFound(_)) => Ok(Delivery { delivered: 0 }),
                Err(e) => Err(e),
            }
        })
    }

    fn mailbox_replay(
        &self,
        seat: &Seat,
        from_seq: u64,
    ) -> Op<'_, Result<Vec<(u64, Bytes)>, RelayError>> {
        let key = seat.key().clone();
        let inner = &self.inner;
        Op::pending(async move {
            if !inner.local.is_live(&key) {
                return Err(RelayError::NotInRoom(key.room.clone()));
            }
            let keys = RoomKeys::new(&key.room);
            let mut c = inner.conn()?;
            let items: Vec<Vec<u8>> = store::call(
                "script mailbox_replay",
                inner
                    .scripts
                    .mailbox_replay
                    .key(keys.mailbox(&key.peer))
                    .key(keys.mailbox_bytes())
                    .arg(from_seq)
                    .invoke_async(&mut c),
            )
            .await?;
            Ok(items
                .into_iter()
                .filter_map(|item| {
                    let i = item.iter().position(|&b| b == b'\n')?;
                    let seq = std::str::from_utf8(&item[..i]).ok()?.parse().ok()?;
                    Some((seq, Bytes::copy_from_slice(&item[i + 1..])))
                })
                .collect())
        })
    }

    fn first_flow(&self, seat: &Seat) -> Op<'_, Option<FirstFlow>> {
        let key = seat.key().clone();
        let inner = &self.inner;
        Op::pending(async move {
            if !inner.local.is_live(&key) {
                return None;
            }
            let keys = RoomKeys::new(&key.room);
            let mut c = inner.conn().ok()?;
            let now = unix_millis();
            let v: Vec<i64> = tokio::time::timeout(
                OP_TIMEOUT,
                inner
                    .scripts
                    .first_flow
                    .key(&keys.meta)
                    .arg(now)
                    .invoke_async(&mut c),
            )
            .await
            .ok()?
            .ok()?;
            match v.as_slice() {
                [1, paired] => Some(FirstFlow::First {
                    paired_for: u64::try_from(*paired)
                        .ok()
                        .map(|p| Duration::from_millis(now.saturating_sub(p))),
                }),
                [0] => Some(FirstFlow::Again),
                _ => None,
            }
        })
    }

    fn create_room(
        &self,
        id: RoomId,
        opts: CreateOptions,
    ) -> Op<'_, Result<RoomSnapshot, JoinError>> {
        let inner = &self.inner;
        Op::pending(async move {
            let keys = RoomKeys::new(&id);
            let exists = inner.room_data(&id).await?.snapshot(&id).is_some();
            if exists {
                return Err(JoinError::RoomExists(id));
            }
            inner.may_create(opts.creator).await?;
            let mut c = inner.conn()?;
            let now = unix_millis();
            let mut inv = inner.scripts.create.prepare_invoke();
            inv.key(&keys.meta).key(&keys.members);
            push_create_args(&mut inv, &opts);
            inv.arg(now).arg(
                u64::try_from(inner.settings.unjoined_ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
            let made: i64 = store::call("script inv", inv.invoke_async(&mut c)).await?;
            if made == 0 {
                return Err(JoinError::RoomExists(id));
            }
            let _: redis::RedisResult<()> = redis::cmd("ZADD")
                .arg(wire::ROOMS)
                .arg(now)
                .arg(id.as_str())
                .query_async(&mut c)
                .await;
            inner
                .room_data(&id)
                .await?
                .snapshot(&id)
                .ok_or(JoinError::RoomNotFound(id))
        })
    }

    fn delete_room(&self, id: RoomId) -> Op<'_, Result<bool, JoinError>> {
        let inner = &self.inner;
        Op::pending(async move {
            let keys = RoomKeys::new(&id);
            let mut c = inner.conn()?;
            let existed: i64 = store::call(
                "script delete",
                inner
                    .scripts
                    .delete
                    .key(&keys.meta)
                    .key(&keys.members)
                    .key(&keys.mbseq)
                    .arg(&keys.channel)
                    .arg(json_str(id.as_str()))
                    .invoke_async(&mut c),
            )
            .await?;
            let _: redis::RedisResult<()> = redis::cmd("ZREM")
                .arg(wire::ROOMS)
                .arg(id.as_str())
                .query_async(&mut c)
                .await;
            // This node's members go now (others hear the room's `c` event).
            let local = inner.local.registry().delete_room_now(&id);
            Ok(existed == 1 || local)
        })
    }

    fn room(&self, id: RoomId) -> Op<'_, Result<Option<RoomSnapshot>, JoinError>> {
        let inner = &self.inner;
        Op::pending(async move { Ok(inner.room_data(&id).await?.snapshot(&id)) })
    }

    fn rooms(&self) -> Op<'_, Result<Vec<RoomSnapshot>, JoinError>> {
        Op::pending(self.inner.all_rooms())
    }

    fn stats(&self) -> Op<'_, Result<RegistryStats, JoinError>> {
        Op::pending(self.inner.counts())
    }

    fn local_stats(&self, pick: &dyn Fn(DialectTag) -> bool) -> RegistryStats {
        self.inner.local.registry().local_stats(pick)
    }

    fn sweep(&self, policy: SweepPolicy) -> SweepReport {
        // Rooms in Redis expire by themselves; this node's copies are swept as on one node
        // (an idle room's local members are closed, and leave).
        self.inner.local.registry().sweep(policy)
    }

    fn revoke(&self, user: PeerId) -> Op<'_, Result<usize, JoinError>> {
        let inner = &self.inner;
        Op::pending(async move {
            let here = inner
                .local
                .registry()
                .close_peer(&user, CloseReason::Revoked);
            let msg = wire::encode_revoke(&inner.inst, &user);
            inner.publish(Arc::from(wire::REVOKE), msg).await?;
            Ok(here)
        })
    }

    fn shutdown(&self) -> Op<'_, ()> {
        Op::pending(writer::shutdown(self.inner.clone()))
    }
}

/// Every room id in the listings' index.
async fn room_ids(c: &mut redis::aio::MultiplexedConnection) -> Result<Vec<String>, StoreError> {
    store::call(
        "ZRANGE",
        redis::cmd("ZRANGE")
            .arg(wire::ROOMS)
            .arg(0)
            .arg(-1)
            .query_async(c),
    )
    .await
}

impl Inner {
    pub(crate) async fn room_data(&self, id: &RoomId) -> Result<RoomData, JoinError> {
        let keys = RoomKeys::new(id);
        let mut c = self.conn()?;
        let (meta, members): (Vec<String>, Vec<String>) = store::call(
            "HGETALL",
            redis::pipe()
                .cmd("HGETALL")
                .arg(&keys.meta)
                .cmd("HGETALL")
                .arg(&keys.members)
                .query_async(&mut c),
        )
        .await?;
        Ok(RoomData::from_pairs(&meta, &members))
    }

    /// Rooms and members cluster-wide: the index, and one `EXISTS`/`HLEN` pair per room
    /// (cheaper than the listing, for `/api/health`).
    pub(crate) async fn counts(&self) -> Result<RegistryStats, JoinError> {
        let mut c = self.conn()?;
        let ids = room_ids(&mut c).await?;
        let mut out = RegistryStats::default();
        for chunk in ids.chunks(512) {
            let mut pipe = redis::pipe();
            for id in chunk {
                let k = RoomKeys::new(&RoomId::from(id.as_str()));
                pipe.cmd("EXISTS").arg(&k.meta).cmd("HLEN").arg(&k.members);
            }
            let v: Vec<usize> = store::call("pipeline", pipe.query_async(&mut c)).await?;
            for pair in v.chunks_exact(2) {
                if pair[0] + pair[1] > 0 {
                    out.rooms += 1;
                    out.peers += pair[1];
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn all_rooms(&self) -> Result<Vec<RoomSnapshot>, JoinError> {
        let mut c = self.conn()?;
        let ids = room_ids(&mut c).await?;
        let mut out = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for chunk in ids.chunks(256) {
            let mut pipe = redis::pipe();
            for id in chunk {
                let k = RoomKeys::new(&RoomId::from(id.as_str()));
                pipe.cmd("HGETALL")
                    .arg(&k.meta)
                    .cmd("HGETALL")
                    .arg(&k.members);
            }
            let v: Vec<Vec<String>> = store::call("pipeline", pipe.query_async(&mut c)).await?;
            for (id, pair) in chunk.iter().zip(v.chunks_exact(2)) {
                let id = RoomId::from(id.as_str());
                match RoomData::from_pairs(&pair[0], &pair[1]).snapshot(&id) {
                    Some(s) => out.push(s),
                    None => gone.push(id),
                }
            }
        }
        if !gone.is_empty() {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(wire::ROOMS);
            for id in &gone {
                cmd.arg(id.as_str());
            }
            let _: redis::RedisResult<()> = cmd.query_async(&mut c).await;
        }
        out.sort_by(|a, b| (a.created_at_ms, a.id.as_str()).cmp(&(b.created_at_ms, b.id.as_str())));
        Ok(out)
    }
}
