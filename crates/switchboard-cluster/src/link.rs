//! The node's link to Redis: one task that (re)connects the command and subscriber
//! connections, resubscribes, re-registers and resynchronises after a reconnect, renews the
//! lease, runs the reaper ([`reaper`](crate::reaper)) and fences this node when it lost its
//! place.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use switchboard_core::{CloseReason, PeerId, RoomId, unix_millis};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::wire::{self, Record, RoomKeys};
use super::{Inner, LinkCmd, OP_TIMEOUT, json_str, push_create_args};

/// Reconnect back-off bounds.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);

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
    let mut channels = vec![wire::inbox(&inner.inst), wire::REVOKE.to_owned()];
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
        if let Err(e) = super::reaper::reap(&inner, &mut conn).await {
            break format!("reaper: {e}");
        }
        if let Err(e) = super::reaper::prune_rooms(&inner, &mut conn).await {
            break format!("rooms index: {e}");
        }
    };
    let _ = broken.send(why);
}

pub(crate) fn timed_out() -> redis::RedisError {
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
