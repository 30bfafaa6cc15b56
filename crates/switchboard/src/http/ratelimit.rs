//! Per-client-IP rate limit for the HTTP API (`HTTP_REQUESTS_PER_SECOND`, burst twice that).
//! Over the limit a request gets 429 JSON. The limiter's per-IP state is pruned by the
//! room sweep so it cannot grow without bound.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::state::AppState;

/// A keyed limiter, or none when the limit is 0 (unlimited).
#[derive(Clone, Default)]
pub struct HttpRateLimit(Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>);

impl std::fmt::Debug for HttpRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HttpRateLimit")
            .field(&self.0.is_some())
            .finish()
    }
}

impl HttpRateLimit {
    /// `per_second` requests per IP (burst 2×); 0 disables the limit.
    pub fn new(per_second: u32) -> Self {
        Self(NonZeroU32::new(per_second).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is non-zero"));
            Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        }))
    }

    /// Whether a request from `ip` may proceed.
    pub fn check(&self, ip: IpAddr) -> bool {
        self.0.as_ref().is_none_or(|l| l.check_key(&ip).is_ok())
    }

    /// Forgets clients whose buckets are full again.
    pub fn prune(&self) {
        if let Some(l) = &self.0 {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Middleware: 429 when the client IP is over its HTTP rate.
pub async fn limit(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip
        && !app.http_rate.check(ip)
    {
        app.metrics.limit("http_rate");
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests; slow down",
        )
        .into_response();
    }
    next.run(req).await
}
