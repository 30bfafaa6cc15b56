//! The server's background duties, both stopped at shutdown: the room sweep (empty rooms
//! after their grace, unjoined rooms after `UNJOINED_ROOM_TTL`, idle rooms closed; the rate
//! limiters' forgotten clients pruned) and the memory watch (resident memory sampled into
//! the admission gate; under pressure, empty rooms swept at once and freed memory returned
//! to the operating system, which also happens after many connections close at once).

use switchboard_core::SweepPolicy;

use crate::memory::{self, Pressure};
use crate::state::AppState;

/// The sweep as the periodic task and `POST /api/maintenance/cleanup` run it;
/// `force_empty` removes every empty room now.
pub fn sweep_policy(app: &AppState, force_empty: bool) -> SweepPolicy {
    SweepPolicy {
        empty_grace: app.config.empty_room_grace.get(),
        unjoined_ttl: app.config.unjoined_room_ttl.get(),
        inactivity_timeout: app.config.room_inactivity_timeout.get(),
        force_empty,
    }
}

/// Starts the periodic room sweep and the memory watch.
pub fn spawn(app: &AppState) {
    tokio::spawn(sweep(app.clone()));
    tokio::spawn(watch_memory(app.clone()));
}

async fn sweep(app: AppState) {
    let token = app.shutdown.token().clone();
    let mut tick = tokio::time::interval(app.config.sweep_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = tick.tick() => {
                app.shutdown.prune();
                let r = app.membership.sweep(sweep_policy(&app, false));
                app.http_rate.prune();
                app.creation.prune();
                app.auth.throttle().prune();
                if r.empty_removed + r.idle_closed > 0 {
                    tracing::info!(empty_removed = r.empty_removed, idle_closed = r.idle_closed, "room sweep");
                }
            }
        }
    }
}

async fn watch_memory(app: AppState) {
    let token = app.shutdown.token().clone();
    let mut tick = tokio::time::interval(app.config.memory_check_interval.get());
    let mut last = Pressure::Normal;
    let mut connections = open_connections(&app);
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = tick.tick() => {
                let cfg = &app.config;
                let level = app.memory.record(memory::current_rss(), cfg.memory_warning_bytes(), cfg.memory_critical_bytes());
                let now = open_connections(&app);
                if level != Pressure::Normal {
                    let r = app.membership.sweep(sweep_policy(&app, true));
                    memory::release_free_memory();
                    if level != last {
                        tracing::warn!(?level, rss = app.memory.rss_bytes(), removed = r.empty_removed, "memory pressure");
                    }
                } else if is_large_drop(connections, now) {
                    // Many connections went since the last sample: what they held is free
                    // in the allocator but still counted in RSS until it is handed back.
                    let released = memory::release_free_memory();
                    tracing::debug!(before = connections, after = now, released, "connections dropped; memory released");
                } else if last != Pressure::Normal {
                    tracing::info!("memory pressure over");
                }
                connections = now;
                last = level;
            }
        }
    }
}

/// WebSocket, Socket.io and plain HTTP connections open now.
fn open_connections(app: &AppState) -> usize {
    app.admission.open_connections() + app.http_connections.open()
}

/// At least 100 connections, and at least a tenth of them, closed between two samples.
fn is_large_drop(before: usize, after: usize) -> bool {
    let gone = before.saturating_sub(after);
    gone >= 100 && gone * 10 >= before
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_large_drop_is_a_hundred_connections_and_a_tenth_of_them() {
        assert!(super::is_large_drop(5000, 0));
        assert!(super::is_large_drop(1000, 900));
        assert!(!super::is_large_drop(1000, 901), "99 gone");
        assert!(
            !super::is_large_drop(5000, 4800),
            "200 gone but a twenty-fifth"
        );
        assert!(!super::is_large_drop(10, 20));
    }
}
