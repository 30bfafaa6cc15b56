//! Joins: the join script (capacity, peer-id uniqueness, nt sides, secured rooms: checked,
//! written and announced in one step), the room's gate around it, and the local seat that
//! mirrors the room as Redis has it.

use super::*;

/// A join script's answer.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) created: bool,
    pub(crate) seq: u64,
    pub(crate) data: RoomData,
    pub(crate) members: Vec<(PeerId, Record)>,
}

impl Joined {
    pub(crate) fn parse(v: redis::Value, room: &RoomId, peer: &PeerId) -> Result<Self, JoinError> {
        let items: Vec<redis::Value> = redis::FromRedisValue::from_redis_value(v)
            .map_err(|e| JoinError::from(store::failed("join script answer", &e)))?;
        let text = |v: &redis::Value| -> String {
            redis::FromRedisValue::from_redis_value_ref(v).unwrap_or_default()
        };
        let num = |v: &redis::Value| -> i64 {
            redis::FromRedisValue::from_redis_value_ref(v).unwrap_or_default()
        };
        let head = items.first().map(text).unwrap_or_default();
        if head == "err" {
            let code = items.get(1).map(text).unwrap_or_default();
            let n = items.get(2).map(num).unwrap_or_default();
            return Err(match code.as_str() {
                "not_found" | "would_create" => JoinError::RoomNotFound(room.clone()),
                "exists" => JoinError::RoomExists(room.clone()),
                "taken" => JoinError::PeerIdTaken {
                    room: room.clone(),
                    peer: peer.clone(),
                },
                "full" => JoinError::RoomFull {
                    room: room.clone(),
                    capacity: usize::try_from(n).unwrap_or(0),
                },
                "token_required" => JoinError::TokenRequired(room.clone()),
                "not_secured" => JoinError::RoomNotSecured(room.clone()),
                other => JoinError::Unavailable(format!("join script: {other}")),
            });
        }
        let created = items.get(1).map(num).unwrap_or_default() == 1;
        let seq = u64::try_from(items.get(2).map(num).unwrap_or_default()).unwrap_or(0);
        let rest: Vec<String> = items.iter().skip(3).map(text).collect();
        let split = rest.iter().position(|s| s == "|").unwrap_or(rest.len());
        let data = RoomData::from_pairs(&rest[..split], rest.get(split + 1..).unwrap_or_default());
        let members = data.members.clone();
        Ok(Self {
            created,
            seq,
            data,
            members,
        })
    }

    /// This node's copy of the room: as Redis describes it, removed with its last local
    /// member (Redis keeps the room through its grace).
    pub(crate) fn mirror_options(&self) -> CreateOptions {
        CreateOptions {
            empty_grace: Some(Duration::ZERO),
            ..self.data.options()
        }
    }
}

/// A string as a JSON string literal (for the scripts, which splice it into events).
pub(crate) fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub(crate) fn ms(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn push_create_args(inv: &mut redis::ScriptInvocation<'_>, c: &CreateOptions) {
    let attrs: Vec<[&str; 2]> = c.attributes.iter().map(|(k, v)| [&**k, &**v]).collect();
    inv.arg(c.name.as_deref().unwrap_or(""))
        .arg(c.host.as_ref().map_or("", PeerId::as_str))
        .arg(c.host_name.as_deref().unwrap_or(""))
        .arg(serde_json::to_string(&attrs).unwrap_or_else(|_| "[]".into()))
        .arg(c.capacity.unwrap_or(0))
        .arg(ms(c.empty_grace))
        .arg(ms(c.inactivity_timeout))
        .arg(u8::from(c.secured));
}

impl Inner {
    pub(crate) async fn join_async(self: &Arc<Self>, req: JoinRequest) -> Result<Seat, JoinError> {
        let room = req.room.clone();
        let peer = req.peer.clone();
        let uid = self.uid(req.handle.conn());
        // Leaves queued before this join go first (a quick reconnect under the same id).
        let (tx, rx) = oneshot::channel();
        let _ = self.writer_tx.send(Job::Barrier(tx));
        let _ = tokio::time::timeout(OP_TIMEOUT, rx).await;
        let rejoin = self
            .lock()
            .locals
            .get(&room)
            .and_then(|m| m.get(&peer))
            .is_some_and(|l| l.uid == uid);
        if !rejoin && !self.hold(&room).await {
            return Err(StoreError::NotConnected.into());
        }
        let result = self.join_held(req, &uid, rejoin).await;
        if result.is_err() && !rejoin {
            self.unhold(&room);
        }
        let key = result?;
        let owner: Arc<dyn SeatOwner> = self.clone();
        tracing::debug!(%room, %peer, "cluster: joined");
        Ok(Seat::new(owner, key))
    }

    pub(crate) async fn join_held(
        self: &Arc<Self>,
        req: JoinRequest,
        uid: &str,
        rejoin: bool,
    ) -> Result<SeatKey, JoinError> {
        let keys = RoomKeys::new(&req.room);
        let now = unix_millis();
        let mut create = req.opts.create.clone();
        create.host = Some(req.peer.clone());
        create.host_name.clone_from(&req.opts.name);
        // A room a token holder creates admits token holders only, as on one node.
        create.secured = req.opts.authenticated;
        let record = Record {
            u: uid.to_owned(),
            o: self.inst.to_string(),
            n: req.opts.name.as_deref().map(str::to_owned),
            h: false,
            t: now,
            d: req.handle.dialect().0,
        };
        let mode = match req.opts.mode {
            JoinMode::Existing => "e",
            JoinMode::Create => {
                self.may_create(create.creator).await?;
                "c"
            }
            JoinMode::CreateOrJoin => "q",
        };
        // Not while the views are being rebuilt; and the room's own events wait for the seat
        // (see [`gate`]), every other room's go on.
        let _resync = self.apply.read().await;
        let gate = RoomGate::close(self, &req.room);
        let mut answer = self
            .run_join(&req, &keys, &record, &create, mode, now)
            .await;
        if matches!(&answer, Err(JoinError::RoomNotFound(_))) && mode == "q" {
            self.may_create(create.creator).await?;
            answer = self.run_join(&req, &keys, &record, &create, "j", now).await;
        }
        let joined = answer?;
        let room = req.room.clone();
        let peer = req.peer.clone();
        self.merge(&room, joined.seq, &joined.members, true);
        let remote: Vec<MemberSummary> = self
            .lock()
            .views
            .get(&room)
            .map(|v| {
                v.remote
                    .iter()
                    .filter(|r| r.summary.id != peer)
                    .map(|r| r.summary.clone())
                    .collect()
            })
            .unwrap_or_default();
        let joined_room = joined.data.options();
        let mirror = Mirror {
            create: joined.mirror_options(),
            created: joined.created,
            remote,
        };
        let seat = self.local.join_mirrored(req, mirror);
        drop(gate);
        drop(_resync);
        let seat = match seat {
            Ok(s) => s,
            Err(e) => {
                if !rejoin {
                    let _ = self.writer_tx.send(Job::Leave {
                        room: room.clone(),
                        peer: peer.clone(),
                        uid: uid.to_owned(),
                    });
                }
                return Err(e);
            }
        };
        // The listings' index and the node's member set live in other slots, so they are not
        // in the script: both go out together, one round trip.
        let mut after = redis::pipe();
        if joined.created {
            after
                .cmd("ZADD")
                .arg(wire::ROOMS)
                .arg(now)
                .arg(room.as_str())
                .ignore();
        }
        if rejoin {
            // The member stays; its seat is the new one.
            if let Some(l) = self
                .lock()
                .locals
                .get_mut(&room)
                .and_then(|m| m.get_mut(&peer))
            {
                l.key = seat.key().clone();
            }
        } else {
            let record = serde_json::to_string(&record).unwrap_or_default();
            self.lock().locals.entry(room.clone()).or_default().insert(
                peer.clone(),
                Local {
                    uid: uid.to_owned(),
                    record,
                    key: seat.key().clone(),
                    // The room as Redis had it, to recreate it as it was after a restart.
                    create: CreateOptions {
                        creator: None,
                        ..joined_room.clone()
                    },
                },
            );
            let entry = serde_json::json!([room.as_str(), peer.as_str(), uid]).to_string();
            after
                .cmd("SADD")
                .arg(wire::node_peers(&self.inst))
                .arg(entry)
                .ignore();
        }
        if (joined.created || !rejoin)
            && let Ok(mut c) = self.conn()
        {
            let _ = tokio::time::timeout(OP_TIMEOUT, after.query_async::<()>(&mut c)).await;
        }
        Ok(seat.into_key())
    }

    /// The creation gate and the (best-effort) room limit, asked when a join or `POST
    /// /api/rooms` would create a room.
    pub(crate) async fn may_create(
        &self,
        creator: Option<std::net::IpAddr>,
    ) -> Result<(), JoinError> {
        let max = self.settings.max_rooms;
        if max != 0 {
            let mut c = self.conn()?;
            let n: usize = store::call(
                "ZCARD",
                redis::cmd("ZCARD").arg(wire::ROOMS).query_async(&mut c),
            )
            .await?;
            if n >= max {
                return Err(JoinError::TooManyRooms(max));
            }
        }
        self.gate.allow(creator)
    }

    pub(crate) async fn run_join(
        &self,
        req: &JoinRequest,
        keys: &RoomKeys,
        record: &Record,
        create: &CreateOptions,
        mode: &str,
        now: u64,
    ) -> Result<Joined, JoinError> {
        let mut c = self.conn()?;
        let record_json = serde_json::to_string(record).unwrap_or_default();
        let mut inv = self.scripts.join.prepare_invoke();
        inv.key(&keys.meta).key(&keys.members).key(&keys.seq);
        inv.arg(req.peer.as_str())
            .arg(&record_json)
            .arg(mode)
            .arg(self.settings.max_peers_per_room)
            .arg(&record.u)
            .arg(&*self.inst)
            .arg(&keys.channel)
            .arg(json_str(req.room.as_str()))
            .arg(now);
        push_create_args(&mut inv, create);
        inv.arg(u8::from(req.opts.authenticated))
            .arg(u8::from(self.settings.separate_secured));
        let v: redis::Value = store::call("script inv", inv.invoke_async(&mut c)).await?;
        Joined::parse(v, &req.room, &req.peer)
    }
}
