//! The writer: the writes that may wait (leaves), done in order by one task, retrying
//! through short outages; and a node's last writes at shutdown (its members' departures,
//! concurrently, then its lease).

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{PeerId, RoomId, unix_millis};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::link::{BACKOFF_MAX, BACKOFF_MIN, timed_out};
use super::wire::{self, RoomKeys};
use super::{Inner, Job, OP_TIMEOUT, json_str};

/// Runs the leave script for one membership.
pub(crate) async fn leave(
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
pub(crate) async fn writer(inner: Arc<Inner>, mut jobs: mpsc::UnboundedReceiver<Job>) {
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
pub(crate) async fn shutdown(inner: Arc<Inner>) {
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
