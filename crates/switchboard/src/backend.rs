//! Which membership service and code book a node runs on: the in-memory registry (one node,
//! the embedded default), or cluster mode on Redis (`REDIS_URL`, the
//! [`switchboard_cluster`] crate, present when the `cluster` feature is on, as it is by
//! default).

use std::sync::Arc;

use switchboard_core::{CodeBook, CreationGate, LocalCodes, MembershipService, Registry};

use crate::config::Config;

/// The node id when `NODE_ID` is unset: the host name and a random suffix.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .take(48)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{:04x}", rand::random::<u16>())
}

/// The membership service and code book the configuration asks for: in memory (the
/// registry itself), or on Redis when `REDIS_URL` is set.
pub fn backends(
    config: &Config,
    node_id: &str,
    registry: &Registry,
    gate: Arc<dyn CreationGate>,
) -> (Arc<dyn MembershipService>, Arc<dyn CodeBook>) {
    match &config.redis_url {
        None => (Arc::new(registry.clone()), Arc::new(LocalCodes::default())),
        Some(url) => cluster(config, url, node_id, registry, gate),
    }
}

#[cfg(feature = "cluster")]
fn cluster(
    config: &Config,
    url: &str,
    node_id: &str,
    registry: &Registry,
    gate: Arc<dyn CreationGate>,
) -> (Arc<dyn MembershipService>, Arc<dyn CodeBook>) {
    let settings = switchboard_cluster::Settings {
        url: url.to_owned(),
        node_id: node_id.to_owned(),
        lease: config.cluster_lease.get(),
        fence_timeout: config.cluster_fence_timeout.get(),
        empty_grace: config.empty_room_grace.get(),
        unjoined_ttl: config.unjoined_room_ttl.get(),
        max_rooms: config.max_rooms,
        max_peers_per_room: config.max_peers_per_room,
        separate_secured: config.limits().separate_secured,
    };
    // The URL was checked with the configuration; a client that still cannot be built is a
    // programming error worth stopping for.
    let cluster = switchboard_cluster::Cluster::start(settings, registry.clone(), gate)
        .expect("REDIS_URL was validated with the configuration");
    let codes = Arc::new(cluster.codes());
    (Arc::new(cluster), codes)
}

/// A build without the `cluster` feature refuses `REDIS_URL` when the configuration is
/// checked, so this is never reached.
#[cfg(not(feature = "cluster"))]
fn cluster(
    _: &Config,
    _: &str,
    _: &str,
    _: &Registry,
    _: Arc<dyn CreationGate>,
) -> (Arc<dyn MembershipService>, Arc<dyn CodeBook>) {
    unreachable!("REDIS_URL is refused by a build without the cluster feature")
}
