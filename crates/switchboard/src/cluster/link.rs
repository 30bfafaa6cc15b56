//! The node's link to Redis: one task that (re)connects the command and subscriber
//! connections, resubscribes, re-registers and resynchronises after a reconnect, renews the
//! lease, reaps dead instances and fences this node when it lost its place; and one writer
//! task that does the writes that may wait (leaves), in order, retrying through short
//! outages.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use switchboard_core::{CloseReason, PeerId, RoomId, unix_millis};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::wire::{self, Record, RoomKeys};
use super::{Inner, Job, LinkCmd, OP_TIMEOUT, Publish, Then, json_str, push_create_args};

/// Reconnect back-off bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a survivor's reaping lock lasts.
const REAP_LOCK: Duration = Duration::from_secs(10);

/// Why the connected phase ended.
enum Lost {
    Stopped,
    Broken(String),
}

/// The link task: runs until the cluster is shut down.
pub(super) async fn run(inner: Arc<Inner>, mut cmds: mpsc::UnboundedReceiver<LinkCmd>) {
    let mut backoff = BACKOFF_MIN;
    let mut down_since: Option<Instant> = None;
    let mut fenced = false;
    let mut run_id: Option<String> = None;
    loop {
        if inner.stop.is_cancelled() {
            break;
        }
        match connected(&inner, &mut cmds, &mut run_id, &mut fenced).await {
            Lost::Stopped => break,
            Lost::Broken(why) => {
                if down_since.is_none() {
                    tracing::warn!(reason = %why, "cluster: Redis unreachable");
                    down_since = Some(Instant::now());
                }
            }
        }
        inner.up.store(false, Ordering::Release);
        *inner
            .conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        // Subscriptions asked for while down fail at once (the join is refused).
        while let Ok(cmd) = cmds.try_recv() {
            if let LinkCmd::Subscribe(_, ack) = cmd {
                let _ = ack.send(false);
            }
        }
        if let Some(since) = down_since
            && !fenced
            && since.elapsed() >= inner.settings.fence_timeout
        {
            fence(&inner, "Redis unreachable for CLUSTER_FENCE_TIMEOUT");
            fenced = true;
        }
        tokio::select! {
            () = inner.stop.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if inner.is_up() {
            backoff = BACKOFF_MIN;
        }
    }
    inner.up.store(false, Ordering::Release);
}

/// Closes every local peer: this node may no longer be part of the rooms it serves.
fn fence(inner: &Inner, why: &str) {
    let n = inner.local.close_all(CloseReason::ClusterLost);
    tracing::warn!(
        peers = n,
        reason = why,
        "cluster: lost our place; closing local peers"
    );
}

async fn connect(
    inner: &Inner,
) -> redis::RedisResult<(redis::aio::MultiplexedConnection, redis::aio::PubSub)> {
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)));
    let timeout = |e| redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, e));
    let conn = tokio::time::timeout(
        OP_TIMEOUT,
        inner
            .client
            .get_multiplexed_async_connection_with_config(&cfg),
    )
    .await
    .map_err(|_| timeout("connect"))??;
    let pubsub = tokio::time::timeout(OP_TIMEOUT, inner.client.get_async_pubsub())
        .await
        .map_err(|_| timeout("connect pubsub"))??;
    Ok((conn, pubsub))
}

/// One connected phase: connect, subscribe, resync, then serve until something breaks.
async fn connected(
    inner: &Arc<Inner>,
    cmds: &mut mpsc::UnboundedReceiver<LinkCmd>,
    run_id: &mut Option<String>,
    fenced: &mut bool,
) -> Lost {
    let (mut conn, pubsub) = match connect(inner).await {
        Ok(c) => c,
        Err(e) => return Lost::Broken(e.to_string()),
    };
    let (mut sink, mut stream) = pubsub.split();
    // The gate is held from the resubscription to the end of the resync: events that
    // arrive meanwhile are applied after, against the rebuilt views.
    let gate = inner.apply.write().await;
    let rooms: Vec<RoomId> = {
        let mut st = inner.lock();
        // A new connection has none of the old one's lingering subscriptions.
        st.linger.clear();
        st.subs.keys().cloned().collect()
    };
    let mut channels = vec![wire::inbox(&inner.inst)];
    channels.extend(rooms.iter().map(|r| RoomKeys::new(r).channel));
    // Many channels per SUBSCRIBE: a node holding thousands of rooms resubscribes in a few
    // round trips.
    for chunk in channels.chunks(512) {
        if let Err(e) = tokio::time::timeout(OP_TIMEOUT, sink.subscribe(chunk))
            .await
            .unwrap_or_else(|_| Err(timed_out()))
        {
            return Lost::Broken(e.to_string());
        }
    }
    *inner
        .conn
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(conn.clone());
    let restarted = match resync(inner, &mut conn, run_id, fenced, &rooms).await {
        Ok(r) => r,
        Err(e) => return Lost::Broken(e.to_string()),
    };
    drop(gate);
    inner.up.store(true, Ordering::Release);
    tracing::info!(instance = %inner.inst, rooms = rooms.len(), restarted, "cluster: connected to Redis");
    *fenced = false;
    // The lease, the reaper and the late refresh run beside the subscriber loop, so that
    // their round trips never hold up the messages it applies.
    let phase = inner.stop.child_token();
    let _end_phase = phase.clone().drop_guard();
    let (broken_tx, mut broken) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(upkeep(inner.clone(), conn, restarted, phase, broken_tx));
    loop {
        tokio::select! {
            () = inner.stop.cancelled() => return Lost::Stopped,
            why = &mut broken => return Lost::Broken(why.unwrap_or_else(|_| "upkeep stopped".into())),
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Lost::Broken("subscriber connection closed".into());
                };
                let _resync = inner.apply.read().await;
                inner.receive(msg.get_payload_bytes());
                // Apply what else is already here under the same hold.
                for _ in 0..256 {
                    match futures_util::FutureExt::now_or_never(stream.next()) {
                        Some(Some(m)) => inner.receive(m.get_payload_bytes()),
                        Some(None) => return Lost::Broken("subscriber connection closed".into()),
                        None => break,
                    }
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(LinkCmd::Subscribe(ch, ack)) => {
                    let ok = tokio::time::timeout(OP_TIMEOUT, sink.subscribe(&ch)).await;
                    let ok = matches!(ok, Ok(Ok(())));
                    let _ = ack.send(ok);
                    if !ok {
                        return Lost::Broken("subscribe failed".into());
                    }
                }
                Some(LinkCmd::Unsubscribe(room)) => {
                    // Still wanted (a join re-held the room meanwhile)? Then keep it.
                    let wanted = inner.lock().subs.contains_key(&room);
                    if !wanted {
                        let ch = wire::room_channel(&room);
                        let _ = tokio::time::timeout(OP_TIMEOUT, sink.unsubscribe(&ch)).await;
                    }
                }
                None => return Lost::Stopped,
            },
        }
    }
}

/// Renews the lease every third of it and reaps dead instances; after a Redis restart,
/// waits out a grace (other nodes re-registering) and then drops from the views the members
/// nobody re-registered. Reports a failure through `broken` (the link reconnects).
async fn upkeep(
    inner: Arc<Inner>,
    mut conn: redis::aio::MultiplexedConnection,
    restarted: bool,
    phase: tokio_util::sync::CancellationToken,
    broken: tokio::sync::oneshot::Sender<String>,
) {
    let lease = inner.settings.lease;
    let mut late_refresh = restarted.then(|| Instant::now() + lease + Duration::from_millis(500));
    let mut grace_until = restarted.then(|| Instant::now() + lease * 2);
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        tokio::select! {
            () = phase.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = renew(&inner, &mut conn).await {
            break format!("lease renewal: {e}");
        }
        inner.end_lingering();
        if grace_until.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        grace_until = None;
        if late_refresh.is_some_and(|t| Instant::now() >= t) {
            late_refresh = None;
            let _gate = inner.apply.write().await;
            let rooms: Vec<RoomId> = inner.lock().subs.keys().cloned().collect();
            if let Err(e) = refresh_views(&inner, &mut conn, &rooms, true).await {
                break e.to_string();
            }
        }
        if let Err(e) = reap(&inner, &mut conn).await {
            break format!("reaper: {e}");
        }
        if let Err(e) = prune_rooms(&inner, &mut conn).await {
            break format!("rooms index: {e}");
        }
    };
    let _ = broken.send(why);
}

/// Messages waiting together are published together: one pipeline per round, one publish
/// per run of messages for one channel (a run goes as one batch, in order). While a round is
/// in flight the next one gathers, so batches grow with the load and a lone message goes
/// out at once.
pub(super) async fn publisher(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Publish>) {
    const MOST: usize = 256;
    // A round's bytes at most (one message of any size always goes): Redis pushes a batch to
    // each subscriber whole, and drops a subscriber whose unread output passes its pub/sub
    // limit (32 MB by default), so batches stay far below it.
    const MOST_BYTES: usize = 1 << 20;
    let mut round: Vec<Publish> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut bytes = first.msg.len();
        round.push(first);
        while round.len() < MOST && bytes < MOST_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.msg.len();
                    round.push(p);
                }
                Err(_) => break,
            }
        }
        // Runs of messages for one channel, in order: a sender's signals may go to two
        // channels (a peer's node inbox, the room's channel), and the receiving node reads
        // both on one connection in publish order, so runs must not be merged across others.
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        for (i, p) in round.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if round[run.start].channel == p.channel => run.end = i + 1,
                _ => runs.push(i..i + 1),
            }
        }
        let mut pipe = redis::pipe();
        for run in &runs {
            let channel = round[run.start].channel.clone();
            let body = if run.len() == 1 {
                std::mem::take(&mut round[run.start].msg)
            } else {
                let msgs: Vec<Vec<u8>> = round[run.clone()]
                    .iter_mut()
                    .map(|p| std::mem::take(&mut p.msg))
                    .collect();
                wire::encode_batch(&msgs)
            };
            pipe.cmd("PUBLISH").arg(&*channel).arg(body);
        }
        let counts: Result<Vec<usize>, String> = match inner.conn() {
            Ok(mut c) => match tokio::time::timeout(OP_TIMEOUT, pipe.query_async(&mut c)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(super::unavailable(e)),
                Err(_) => Err(super::unavailable("timeout")),
            },
            Err(e) => Err(e),
        };
        let mut then: Vec<Option<Then>> = round.drain(..).map(|p| Some(p.then)).collect();
        for (g, run) in runs.iter().enumerate() {
            let r = match &counts {
                Ok(v) => Ok(v.get(g).copied().unwrap_or(0)),
                Err(e) => Err(e.clone()),
            };
            for i in run.clone() {
                if let Some(t) = then[i].take() {
                    inner.published(t, &r);
                }
            }
        }
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// After (re)connecting: learn whether Redis restarted, fence if our lease lapsed, renew
/// it, re-register our members after a restart, and rebuild the views. Returns whether
/// Redis restarted.
async fn resync(
    inner: &Arc<Inner>,
    conn: &mut redis::aio::MultiplexedConnection,
    last_run_id: &mut Option<String>,
    fenced: &mut bool,
    rooms: &[RoomId],
) -> redis::RedisResult<bool> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let restarted = last_run_id.as_ref().is_some_and(|old| *old != id);
    let first = last_run_id.is_none();
    let lease_alive: bool = redis::cmd("EXISTS")
        .arg(wire::lease(&inner.inst))
        .query_async(conn)
        .await?;
    if !first && !restarted && !lease_alive && !*fenced {
        // Cut off past our lease: the others have removed (or are removing) our members.
        fence(inner, "our lease lapsed while Redis was out of reach");
        *fenced = true;
    }
    renew(inner, conn).await?;
    if restarted {
        tracing::warn!("cluster: Redis restarted; re-registering this node's members");
        reregister(inner, conn).await?;
    }
    refresh_views(inner, conn, rooms, !restarted).await?;
    // Only a resync that went through settles which Redis we know: one that failed halfway
    // after a restart is redone as a restart.
    *last_run_id = Some(id);
    Ok(restarted)
}

/// Renews the lease (and our place in the node set).
async fn renew(
    inner: &Inner,
    conn: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<()> {
    let ms = u64::try_from(inner.settings.lease.as_millis()).unwrap_or(u64::MAX);
    tokio::time::timeout(
        OP_TIMEOUT,
        redis::pipe()
            .cmd("SET")
            .arg(wire::lease(&inner.inst))
            .arg(unix_millis())
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("SADD")
            .arg(wire::NODES)
            .arg(&*inner.inst)
            .ignore()
            .query_async::<()>(conn),
    )
    .await
    .unwrap_or_else(|_| Err(timed_out()))
}

/// Writes every local member back (Redis restarted empty). Idempotent: a member already
/// there under the same membership id is not announced again.
async fn reregister(
    inner: &Arc<Inner>,
    conn: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<()> {
    let locals: Vec<(RoomId, PeerId, super::Local)> = {
        let st = inner.lock();
        st.locals
            .iter()
            .flat_map(|(r, m)| m.iter().map(|(p, l)| (r.clone(), p.clone(), l.clone())))
            .collect()
    };
    let now = unix_millis();
    for (room, peer, l) in locals {
        let keys = RoomKeys::new(&room);
        let mut inv = inner.scripts.join.prepare_invoke();
        inv.key(&keys.meta).key(&keys.members).key(&keys.seq);
        inv.arg(peer.as_str())
            .arg(&l.record)
            .arg("r")
            .arg(0)
            .arg(&l.uid)
            .arg(&*inner.inst)
            .arg(&keys.channel)
            .arg(json_str(room.as_str()))
            .arg(now);
        push_create_args(&mut inv, &l.create);
        // A re-registration is not checked against the room's access: it was at the join.
        inv.arg(u8::from(l.create.secured)).arg(0);
        let v: redis::Value = inv.invoke_async(conn).await?;
        if let Err(e) = super::Joined::parse(v, &room, &peer) {
            // Someone else took the id meanwhile: ours cannot stay.
            tracing::warn!(%room, %peer, error = %e, "cluster: re-registration refused; closing the member");
            inner
                .local
                .close_member(&room, &peer, CloseReason::ClusterLost);
            continue;
        }
        let entry = serde_json::json!([room.as_str(), peer.as_str(), l.uid]).to_string();
        redis::pipe()
            .cmd("SADD")
            .arg(wire::node_peers(&inner.inst))
            .arg(entry)
            .ignore()
            .cmd("ZADD")
            .arg(wire::ROOMS)
            .arg("NX")
            .arg(now)
            .arg(room.as_str())
            .ignore()
            .query_async::<()>(conn)
            .await?;
    }
    Ok(())
}

/// Reads each room's members and sequence and merges them into the views.
async fn refresh_views(
    inner: &Inner,
    conn: &mut redis::aio::MultiplexedConnection,
    rooms: &[RoomId],
    remove: bool,
) -> redis::RedisResult<()> {
    for chunk in rooms.chunks(128) {
        let mut pipe = redis::pipe();
        for r in chunk {
            let k = RoomKeys::new(r);
            pipe.cmd("HGETALL").arg(&k.members).cmd("GET").arg(&k.seq);
        }
        let v: Vec<redis::Value> = tokio::time::timeout(OP_TIMEOUT, pipe.query_async(conn))
            .await
            .unwrap_or_else(|_| Err(timed_out()))?;
        for (room, pair) in chunk.iter().zip(v.chunks_exact(2)) {
            let members: Vec<String> =
                redis::FromRedisValue::from_redis_value_ref(&pair[0]).unwrap_or_default();
            let seq: Option<u64> =
                redis::FromRedisValue::from_redis_value_ref(&pair[1]).unwrap_or_default();
            let members: Vec<(PeerId, Record)> = members
                .chunks_exact(2)
                .filter_map(|kv| {
                    Some((
                        PeerId::from(kv[0].as_str()),
                        serde_json::from_str(&kv[1]).ok()?,
                    ))
                })
                .collect();
            if !remove {
                // Sequence numbers restarted with Redis.
                if let Some(v) = inner.lock().views.get_mut(room) {
                    v.seq = 0;
                }
            }
            inner.merge(room, seq.unwrap_or(0), &members, remove);
        }
    }
    Ok(())
}

/// Finds instances whose lease lapsed: forgets their members here, and (one survivor, under
/// a lock) removes them from their rooms, which announces their departure.
async fn reap(
    inner: &Arc<Inner>,
    conn: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<()> {
    let mut insts: Vec<String> = tokio::time::timeout(
        OP_TIMEOUT,
        redis::cmd("SMEMBERS").arg(wire::NODES).query_async(conn),
    )
    .await
    .unwrap_or_else(|_| Err(timed_out()))?;
    for i in inner.view_instances() {
        if !insts.contains(&i) {
            insts.push(i);
        }
    }
    insts.retain(|i| **i != *inner.inst);
    if insts.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for i in &insts {
        pipe.cmd("EXISTS").arg(wire::lease(i));
    }
    let alive: Vec<bool> = tokio::time::timeout(OP_TIMEOUT, pipe.query_async(conn))
        .await
        .unwrap_or_else(|_| Err(timed_out()))?;
    let dead: Vec<String> = insts
        .into_iter()
        .zip(alive)
        .filter_map(|(i, a)| (!a).then_some(i))
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    inner.forget_instances(&dead);
    for d in &dead {
        let won: bool = redis::cmd("SET")
            .arg(wire::reap_lock(d))
            .arg(&*inner.inst)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(REAP_LOCK.as_millis()).unwrap_or(10_000))
            .query_async::<Option<String>>(conn)
            .await?
            .is_some();
        if !won {
            continue;
        }
        let entries: Vec<String> = redis::cmd("SMEMBERS")
            .arg(wire::node_peers(d))
            .query_async(conn)
            .await?;
        tracing::warn!(instance = %d, members = entries.len(), "cluster: reaping a dead node");
        for e in entries {
            let Ok([room, peer, uid]) = serde_json::from_str::<[String; 3]>(&e) else {
                continue;
            };
            leave(inner, conn, &RoomId::from(room), &PeerId::from(peer), &uid).await?;
        }
        redis::pipe()
            .cmd("DEL")
            .arg(wire::node_peers(d))
            .ignore()
            .cmd("SREM")
            .arg(wire::NODES)
            .arg(d)
            .ignore()
            .query_async::<()>(conn)
            .await?;
    }
    Ok(())
}

/// Drops rooms that expired from the listings' index: one node every `PRUNE_EVERY` (a lock
/// key decides which), in chunks.
async fn prune_rooms(
    inner: &Inner,
    conn: &mut redis::aio::MultiplexedConnection,
) -> redis::RedisResult<()> {
    const PRUNE_EVERY: Duration = Duration::from_secs(30);
    let won: Option<String> = redis::cmd("SET")
        .arg(wire::PRUNE_LOCK)
        .arg(&*inner.inst)
        .arg("NX")
        .arg("PX")
        .arg(u64::try_from(PRUNE_EVERY.as_millis()).unwrap_or(30_000))
        .query_async(conn)
        .await?;
    if won.is_none() {
        return Ok(());
    }
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(wire::ROOMS)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    for chunk in ids.chunks(512) {
        let mut pipe = redis::pipe();
        for id in chunk {
            let k = RoomKeys::new(&RoomId::from(id.as_str()));
            pipe.cmd("EXISTS").arg(&k.meta).arg(&k.members);
        }
        let alive: Vec<usize> = tokio::time::timeout(OP_TIMEOUT, pipe.query_async(conn))
            .await
            .unwrap_or_else(|_| Err(timed_out()))?;
        let gone: Vec<&String> = chunk
            .iter()
            .zip(alive)
            .filter_map(|(id, n)| (n == 0).then_some(id))
            .collect();
        if !gone.is_empty() {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(wire::ROOMS);
            for id in gone {
                cmd.arg(id);
            }
            cmd.query_async::<()>(conn).await?;
        }
    }
    Ok(())
}

/// Runs the leave script for one membership.
async fn leave(
    inner: &Inner,
    conn: &mut redis::aio::MultiplexedConnection,
    room: &RoomId,
    peer: &PeerId,
    uid: &str,
) -> redis::RedisResult<()> {
    let keys = RoomKeys::new(room);
    let grace = u64::try_from(inner.settings.empty_grace.as_millis()).unwrap_or(u64::MAX);
    let _: i64 = tokio::time::timeout(
        OP_TIMEOUT,
        inner
            .scripts
            .leave
            .key(&keys.meta)
            .key(&keys.members)
            .key(&keys.seq)
            .key(&keys.mbseq)
            .arg(peer.as_str())
            .arg(uid)
            .arg(&*inner.inst)
            .arg(&keys.channel)
            .arg(json_str(room.as_str()))
            .arg(grace)
            .arg(unix_millis())
            .invoke_async(conn),
    )
    .await
    .unwrap_or_else(|_| Err(timed_out()))?;
    Ok(())
}

/// The writer task: the leaves queued together are written together (concurrently on the
/// multiplexed connection: a node closing thousands of peers at shutdown tells the others in
/// a few round trips); a leave that fails is retried while Redis comes back, for up to
/// `CLUSTER_FENCE_TIMEOUT` (after a restart it has nothing left to do). A barrier completes
/// once every leave queued before it is done.
pub(super) async fn writer(inner: Arc<Inner>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    const MOST: usize = 256;
    let mut batch: Vec<(RoomId, PeerId, String)> = Vec::new();
    let mut barriers = Vec::new();
    while let Some(first) = jobs.recv().await {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Leave { room, peer, uid } => batch.push((room, peer, uid)),
                // Everything before the barrier is in this batch.
                Job::Barrier(done) => barriers.push(done),
            }
            if batch.len() < MOST {
                next = jobs.try_recv().ok();
            }
        }
        let started = Instant::now();
        let mut wait = BACKOFF_MIN;
        while !batch.is_empty() {
            let results = match inner.conn() {
                Ok(c) => {
                    futures_util::future::join_all(batch.iter().map(|(room, peer, uid)| {
                        let (inner, mut c) = (&inner, c.clone());
                        let mut c2 = c.clone();
                        async move {
                            let entry =
                                serde_json::json!([room.as_str(), peer.as_str(), uid]).to_string();
                            // Sent together on the multiplexed connection: one round trip.
                            let (left, forgotten) = futures_util::future::join(
                                leave(inner, &mut c, room, peer, uid),
                                redis::cmd("SREM")
                                    .arg(wire::node_peers(&inner.inst))
                                    .arg(entry)
                                    .query_async::<()>(&mut c2),
                            )
                            .await;
                            left.and(forgotten)
                        }
                    }))
                    .await
                }
                Err(_) => batch.iter().map(|_| Err(timed_out())).collect(),
            };
            let mut left = results.into_iter();
            batch.retain(|_| left.next().is_some_and(|r| r.is_err()));
            if batch.is_empty() {
                break;
            }
            if started.elapsed() >= inner.settings.fence_timeout || inner.stop.is_cancelled() {
                for (room, peer, _) in batch.drain(..) {
                    tracing::warn!(%room, %peer, "cluster: leave not written (Redis unreachable)");
                }
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(BACKOFF_MAX);
        }
        for done in barriers.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Shutdown: the pending leaves are written (others hear this node's peers left), then the
/// lease and the node's entries go, then the link stops.
pub(super) async fn shutdown(inner: Arc<Inner>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = inner.writer_tx.send(Job::Barrier(tx));
    let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
    if let Ok(mut c) = inner.conn() {
        // Without its lease the instance is reaped at once by a survivor: whatever leave
        // could not be written is removed then (and the node set forgets it).
        let _ = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("DEL")
                .arg(wire::lease(&inner.inst))
                .query_async::<()>(&mut c),
        )
        .await;
    }
    inner.stop.cancel();
    tracing::info!("cluster: left the cluster");
}
