//! The reaper: a node whose lease lapsed (killed, or cut off) is found by the survivors;
//! each forgets its members at once, and one (under a lock) removes them from their rooms,
//! which announces their departure. Also the rooms index's pruning (one node at a time).

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{PeerId, RoomId};

use super::link::timed_out;
use super::wire::{self, RoomKeys};
use super::writer::leave;
use super::{Inner, OP_TIMEOUT};

/// How long a survivor's reaping lock lasts.
const REAP_LOCK: Duration = Duration::from_secs(10);

/// Finds instances whose lease lapsed: forgets their members here, and (one survivor, under
/// a lock) removes them from their rooms, which announces their departure.
pub(crate) async fn reap(
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
pub(crate) async fn prune_rooms(
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
