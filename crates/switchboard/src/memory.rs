//! Memory watch: samples the process's resident set size and flips the admission gate.
//!
//! Above the warning threshold the sweep runs with every empty room removed at once; above
//! the critical threshold new connections are refused (HTTP 503, close code 1013) and new
//! rooms refused, until memory is back under the critical threshold.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Whether memory is over a threshold, and the last sample.
#[derive(Debug, Default)]
pub struct MemoryGate {
    rss_bytes: AtomicU64,
    critical: AtomicBool,
    warning: AtomicBool,
}

/// Memory pressure level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    /// Under the warning threshold.
    Normal,
    /// Between warning and critical.
    Warning,
    /// Over critical.
    Critical,
}

impl MemoryGate {
    /// Records a sample against the thresholds; returns the new pressure level.
    pub fn record(&self, rss: u64, warning: u64, critical: u64) -> Pressure {
        self.rss_bytes.store(rss, Ordering::Relaxed);
        let level = if rss >= critical {
            Pressure::Critical
        } else if rss >= warning {
            Pressure::Warning
        } else {
            Pressure::Normal
        };
        self.critical
            .store(level == Pressure::Critical, Ordering::Relaxed);
        self.warning
            .store(level != Pressure::Normal, Ordering::Relaxed);
        level
    }

    /// Whether new connections and rooms are refused.
    pub fn is_critical(&self) -> bool {
        self.critical.load(Ordering::Relaxed)
    }

    /// The last sampled RSS in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.rss_bytes.load(Ordering::Relaxed)
    }

    /// The current pressure level.
    pub fn pressure(&self) -> Pressure {
        if self.is_critical() {
            Pressure::Critical
        } else if self.warning.load(Ordering::Relaxed) {
            Pressure::Warning
        } else {
            Pressure::Normal
        }
    }
}

/// The process's resident set size in bytes, from `/proc/self/statm` (0 where unavailable).
pub fn current_rss() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    4096
}

/// Gives freed heap memory back to the operating system (glibc `malloc_trim`).
/// Returns whether the allocator released anything.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointers from
        // us and is safe to call from any thread at any time.
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released != 0
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_set_the_level() {
        let g = MemoryGate::default();
        assert_eq!(g.record(10, 100, 200), Pressure::Normal);
        assert!(!g.is_critical());
        assert_eq!(g.record(150, 100, 200), Pressure::Warning);
        assert_eq!(g.record(250, 100, 200), Pressure::Critical);
        assert!(g.is_critical());
        assert_eq!(g.record(50, 100, 200), Pressure::Normal);
        assert!(!g.is_critical());
    }

    #[test]
    fn rss_is_read_from_proc() {
        assert!(current_rss() > 0);
    }
}
