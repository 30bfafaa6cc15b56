//! Pure bookkeeping: latency percentiles and per-pair sequence checking. No I/O here, so
//! every rule that decides pass or fail is unit-tested.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Microseconds since the first call in this process. Sender and receiver of a relayed
/// message live in the same process, so this monotonic clock is enough to time a round
/// through the server without any clock synchronisation.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<u64>,
}

/// The summary of a set of latency samples, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            samples: Vec::with_capacity(n),
        }
    }

    pub fn record_us(&mut self, us: u64) {
        self.samples.push(us);
    }

    pub fn record(&mut self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Nearest-rank percentiles (the smallest sample with at least q of all samples at or
    /// below it). `None` when there are no samples.
    pub fn percentiles(&mut self) -> Option<Percentiles> {
        if self.samples.is_empty() {
            return None;
        }
        self.samples.sort_unstable();
        let s = &self.samples;
        Some(Percentiles {
            count: s.len(),
            min: s[0],
            p50: nearest_rank(s, 0.50),
            p99: nearest_rank(s, 0.99),
            p999: nearest_rank(s, 0.999),
            max: s[s.len() - 1],
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty samples.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    debug_assert!(!sorted.is_empty());
    // rank = ceil(q * n), 1-based; clamp into 1..=n.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Checks the sequence numbers that one receiver sees from one sender that sends
/// `0..expected` in order.
///
/// - a number seen twice counts as **duplicated** (and is not counted as received again);
/// - a number that arrives after a higher one counts as **reordered**;
/// - a number outside `0..expected` counts as **unexpected**;
/// - **lost** is `sent - received` (unique numbers), judged once the run has drained; the
///   sender's count is passed to [`SeqTracker::totals`], so messages never sent (a run cut
///   short) are not counted as lost.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    seen: Vec<bool>,
    received: u64,
    highest: Option<u64>,
    reordered: u64,
    duplicated: u64,
    unexpected: u64,
}

/// What [`SeqTracker::observe`] made of one sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    InOrder,
    Reordered,
    Duplicate,
    Unexpected,
}

/// Totals of sequence checking, summed over pairs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SeqTotals {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicated: u64,
    pub unexpected: u64,
}

impl SeqTracker {
    pub fn new(expected: u64) -> Self {
        Self {
            seen: vec![false; usize::try_from(expected).expect("message count fits in memory")],
            received: 0,
            highest: None,
            reordered: 0,
            duplicated: 0,
            unexpected: 0,
        }
    }

    pub fn observe(&mut self, seq: u64) -> SeqVerdict {
        let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.seen.get_mut(i)) else {
            self.unexpected += 1;
            return SeqVerdict::Unexpected;
        };
        if *slot {
            self.duplicated += 1;
            return SeqVerdict::Duplicate;
        }
        *slot = true;
        self.received += 1;
        match self.highest {
            Some(h) if seq < h => {
                self.reordered += 1;
                SeqVerdict::Reordered
            }
            _ => {
                self.highest = Some(seq);
                SeqVerdict::InOrder
            }
        }
    }

    pub fn is_complete(&self) -> bool {
        self.received == self.seen.len() as u64
    }

    /// Totals, given how many messages the sender sent (`0..sent`).
    pub fn totals(&self, sent: u64) -> SeqTotals {
        SeqTotals {
            sent,
            received: self.received,
            lost: sent.saturating_sub(self.received),
            reordered: self.reordered,
            duplicated: self.duplicated,
            unexpected: self.unexpected,
        }
    }
}

impl SeqTotals {
    /// Adds another pair's totals.
    pub fn add(&mut self, o: SeqTotals) {
        self.sent += o.sent;
        self.received += o.received;
        self.lost += o.lost;
        self.reordered += o.reordered;
        self.duplicated += o.duplicated;
        self.unexpected += o.unexpected;
    }

    /// Whether the run delivered every message once and in order.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.reordered == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

/// At most `LIMIT` distinct error messages with a count each, so that ten thousand identical
/// failures print as one line.
#[derive(Debug, Default, Clone)]
pub struct ErrorSamples {
    total: u64,
    samples: Vec<(String, u64)>,
}

impl ErrorSamples {
    const LIMIT: usize = 5;

    pub fn add(&mut self, msg: &str) {
        self.total += 1;
        if let Some(entry) = self.samples.iter_mut().find(|(m, _)| m == msg) {
            entry.1 += 1;
        } else if self.samples.len() < Self::LIMIT {
            self.samples.push((msg.to_owned(), 1));
        }
    }

    pub fn merge(&mut self, other: &ErrorSamples) {
        for (msg, n) in &other.samples {
            if let Some(entry) = self.samples.iter_mut().find(|(m, _)| m == msg) {
                entry.1 += n;
            } else if self.samples.len() < Self::LIMIT {
                self.samples.push((msg.clone(), *n));
            }
        }
        self.total += other.total;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// `"3× room full; 1× timed out"`, or an empty string.
    pub fn describe(&self) -> String {
        self.samples
            .iter()
            .map(|(m, n)| format!("{n}x {m}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_thousand() {
        let mut l = Latencies::default();
        for v in 1..=1000 {
            l.record_us(v);
        }
        let p = l.percentiles().unwrap();
        assert_eq!(p.count, 1000);
        assert_eq!(
            (p.min, p.p50, p.p99, p.p999, p.max),
            (1, 500, 990, 999, 1000)
        );
    }

    #[test]
    fn percentiles_are_order_independent_and_handle_small_sets() {
        let mut l = Latencies::default();
        for v in [30, 10, 20] {
            l.record_us(v);
        }
        let p = l.percentiles().unwrap();
        assert_eq!((p.min, p.p50, p.p99, p.p999, p.max), (10, 20, 30, 30, 30));

        let mut one = Latencies::default();
        one.record_us(7);
        let p = one.percentiles().unwrap();
        assert_eq!((p.p50, p.p999), (7, 7));

        assert!(Latencies::default().percentiles().is_none());
    }

    #[test]
    fn merge_combines_samples() {
        let mut a = Latencies::default();
        a.record(Duration::from_micros(5));
        let mut b = Latencies::default();
        b.record_us(15);
        a.merge(b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.percentiles().unwrap().max, 15);
    }

    #[test]
    fn in_order_delivery_is_clean() {
        let mut t = SeqTracker::new(4);
        for s in 0..4 {
            assert_eq!(t.observe(s), SeqVerdict::InOrder);
        }
        assert!(t.is_complete());
        let tot = t.totals(4);
        assert!(tot.is_clean(), "{tot:?}");
        assert_eq!(tot.received, 4);
    }

    #[test]
    fn loss_reorder_duplicate_and_unexpected_are_counted() {
        let mut t = SeqTracker::new(5);
        assert_eq!(t.observe(0), SeqVerdict::InOrder);
        assert_eq!(t.observe(2), SeqVerdict::InOrder); // 1 skipped for now
        assert_eq!(t.observe(1), SeqVerdict::Reordered);
        assert_eq!(t.observe(2), SeqVerdict::Duplicate);
        assert_eq!(t.observe(9), SeqVerdict::Unexpected);
        // 3 and 4 never arrive.
        assert!(!t.is_complete());
        let tot = t.totals(5);
        assert_eq!(
            tot,
            SeqTotals {
                sent: 5,
                received: 3,
                lost: 2,
                reordered: 1,
                duplicated: 1,
                unexpected: 1,
            }
        );
        assert!(!tot.is_clean());
    }

    #[test]
    fn unsent_messages_are_not_lost() {
        let mut t = SeqTracker::new(1000);
        t.observe(0);
        t.observe(1);
        // The run was cut short after 3 sends: one lost, not 998.
        assert_eq!(t.totals(3).lost, 1);
    }

    #[test]
    fn totals_add_up_over_pairs() {
        let mut all = SeqTotals::default();
        let mut a = SeqTracker::new(2);
        a.observe(0);
        a.observe(1);
        let mut b = SeqTracker::new(2);
        b.observe(1);
        all.add(a.totals(2));
        all.add(b.totals(2));
        assert_eq!((all.sent, all.received, all.lost), (4, 3, 1));
    }

    #[test]
    fn error_samples_group_identical_messages() {
        let mut e = ErrorSamples::default();
        e.add("timed out");
        e.add("timed out");
        e.add("room full");
        let mut f = ErrorSamples::default();
        f.add("room full");
        e.merge(&f);
        assert_eq!(e.total(), 4);
        assert_eq!(e.describe(), "2x timed out; 2x room full");
    }
}
