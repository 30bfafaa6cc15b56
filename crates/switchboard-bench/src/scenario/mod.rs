//! The scenarios, and what they share: the progress line and size defaults.

pub mod churn;
pub mod idle;
pub mod relay;
pub mod soak;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{Counters, Ctx};

/// Prints a progress line to stderr about once a second until dropped.
pub struct Progress(JoinHandle<()>);

impl Progress {
    pub fn start(
        ctx: &Arc<Ctx>,
        name: &'static str,
        mut line: impl FnMut(&Counters, Duration) -> String + Send + 'static,
    ) -> Self {
        let ctx = ctx.clone();
        Self(tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await; // the first tick is immediate
            loop {
                tokio::select! {
                    () = ctx.cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let elapsed = start.elapsed();
                eprintln!(
                    "[{name} {:>5.1}s] {}",
                    elapsed.as_secs_f64(),
                    line(&ctx.counters, elapsed)
                );
            }
        }))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An explicit size, else the `--quick` size, else the normal default.
pub fn pick<T>(explicit: Option<T>, quick: bool, quick_value: T, normal: T) -> T {
    explicit.unwrap_or(if quick { quick_value } else { normal })
}

/// Sleeps for `d` unless the run is cancelled first; returns whether the full time passed.
pub async fn sleep_unless_cancelled(ctx: &Ctx, d: Duration) -> bool {
    tokio::select! {
        () = ctx.cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Events per second, or 0 for an empty interval.
pub fn per_sec(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_prefers_explicit_then_quick() {
        assert_eq!(pick(Some(5), true, 1, 100), 5);
        assert_eq!(pick(None, true, 1, 100), 1);
        assert_eq!(pick(None, false, 1, 100), 100);
    }

    #[test]
    fn rate() {
        assert!((per_sec(10, Duration::from_secs(2)) - 5.0).abs() < 1e-9);
        assert!(per_sec(10, Duration::ZERO).abs() < f64::EPSILON);
    }
}
