//! Probes and metrics: `GET /healthz` (liveness, always `{"ok":true}`), `GET /readyz`
//! (`{"ready":true}`, 503 `{"ready":false}` while draining or while the membership service
//! cannot serve) and `GET /metrics` (Prometheus text; in production it needs the admin key).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Admin;
use crate::dialect::tags;
use crate::memory;
use crate::state::AppState;

/// The probe and metrics routes; `/metrics` is mounted at `metrics_path`.
pub fn router(metrics_path: &str) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(metrics_path, get(metrics))
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"ok":true}"#,
    )
        .into_response()
}

async fn readyz(State(app): State<AppState>) -> Response {
    let ready = !app.shutdown.is_draining() && app.membership.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if ready {
        r#"{"ready":true}"#
    } else {
        r#"{"ready":false}"#
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(app): State<AppState>, admin: Admin) -> Response {
    if let Err(e) = admin.require() {
        return e.into_response();
    }
    // Gauges are this node's: in a cluster, Prometheus sums the nodes.
    let s = app.registry.stats_now();
    let m = &app.metrics;
    m.rooms_active.set(s.rooms as i64);
    m.panics.inner().store(
        crate::metrics::PANICS.load(std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::Ordering::Relaxed,
    );
    m.peers_active.set(s.peers as i64);
    // Seed 004's gauges count its own protocol: peers connected through `/ws` (both forms)
    // and the rooms holding them.
    let nt = app
        .membership
        .local_stats(&|d| d == tags::RENDEZVOUS || d == tags::NT);
    m.nt.rooms_active.set(nt.rooms as i64);
    m.nt.peers_active.set(nt.peers as i64);
    m.resident_memory.set(memory::current_rss() as i64);
    m.backplane_up.set(i64::from(app.membership.is_ready()));
    m.memory_warning_bytes
        .set(i64::try_from(app.config.memory_warning_bytes()).unwrap_or(i64::MAX));
    m.memory_critical_bytes
        .set(i64::try_from(app.config.memory_critical_bytes()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}
