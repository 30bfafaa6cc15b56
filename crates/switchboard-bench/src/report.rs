//! The end-of-run summary: one list of named values, printed as a human table (always) and
//! as one JSON line (`--json`), so the two can never disagree.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::procfs::cpu_us_per;
use crate::stats::{ErrorSamples, Percentiles};

/// A scenario's results and the reasons, if any, that the run failed.
#[derive(Debug)]
pub struct Report {
    scenario: &'static str,
    rows: Vec<(String, Value)>,
    failures: Vec<String>,
}

impl Report {
    pub fn new(scenario: &'static str) -> Self {
        Self {
            scenario,
            rows: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Adds a value; `None` prints as `n/a` and `null`.
    pub fn row(&mut self, key: &str, value: impl Into<Value>) {
        self.rows.push((key.to_owned(), value.into()));
    }

    /// Adds `<key>_p50_us`, `<key>_p99_us`, ... for a latency summary.
    pub fn latency(&mut self, key: &str, p: Option<Percentiles>, with_p999: bool) {
        let p = p.map(|p| json!(p));
        let pick = |field: &str| p.as_ref().map(|p| p[field].clone());
        self.row(&format!("{key}_p50_us"), pick("p50"));
        self.row(&format!("{key}_p99_us"), pick("p99"));
        if with_p999 {
            self.row(&format!("{key}_p999_us"), pick("p999"));
        }
        self.row(&format!("{key}_max_us"), pick("max"));
    }

    /// Adds `<who>_cpu_ms` (CPU time between two readings; /proc counts in 10 ms ticks, so
    /// small totals are coarse) and `<who>_cpu_us_per_<unit>`.
    pub fn cpu(
        &mut self,
        who: &str,
        unit: &str,
        before: Option<Duration>,
        after: Option<Duration>,
        units: u64,
    ) {
        let total = before
            .zip(after)
            .map(|(b, a)| round2(a.saturating_sub(b).as_secs_f64() * 1e3));
        self.row(&format!("{who}_cpu_ms"), total);
        self.row(
            &format!("{who}_cpu_us_per_{unit}"),
            cpu_us_per(before, after, units).map(round2),
        );
    }

    /// Adds `close_errors`: peers whose close handshake did not finish cleanly. Worth a note
    /// on stderr, but not a failure of the run.
    pub fn close_errors(&mut self, errors: &ErrorSamples) {
        self.row("close_errors", errors.total());
        if errors.total() > 0 {
            eprintln!(
                "note: {} connections did not close cleanly: {}",
                errors.total(),
                errors.describe()
            );
        }
    }

    /// Marks the run as failed.
    pub fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }

    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// The human summary table.
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("== switchboard-bench {} ==\n", self.scenario);
        for (k, v) in &self.rows {
            out.push_str(&format!("{k:<width$}  {}\n", human(v)));
        }
        let verdict = if self.ok() { "PASS" } else { "FAIL" };
        out.push_str(&format!("{:<width$}  {verdict}\n", "result"));
        for f in &self.failures {
            out.push_str(&format!("  - {f}\n"));
        }
        out
    }

    /// The one-line JSON summary.
    pub fn json_line(&self) -> String {
        let mut m = Map::new();
        m.insert("scenario".into(), json!(self.scenario));
        m.insert("ok".into(), json!(self.ok()));
        m.insert("failures".into(), json!(self.failures));
        for (k, v) in &self.rows {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m).to_string()
    }
}

fn human(v: &Value) -> String {
    match v {
        Value::Null => "n/a".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.abs() >= 100.0 {
                format!("{f:.0}")
            } else {
                format!("{f:.2}")
            }
        }
        other => other.to_string(),
    }
}

/// Rounds for display and JSON (two decimals are plenty for rates and per-unit costs).
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json_carry_the_same_rows() {
        let mut r = Report::new("relay");
        r.row("msgs_per_sec", 1234.5678);
        r.row("lost", 0);
        r.row("server_cpu_us_per_msg", Option::<f64>::None);
        r.latency(
            "latency",
            Some(Percentiles {
                count: 3,
                min: 1,
                p50: 2,
                p99: 3,
                p999: 3,
                max: 3,
            }),
            true,
        );
        let t = r.table();
        assert!(t.contains("msgs_per_sec"), "{t}");
        assert!(t.contains("1235"), "{t}");
        assert!(t.contains("n/a"), "{t}");
        assert!(t.contains("PASS"), "{t}");
        let j: Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(j["scenario"], "relay");
        assert_eq!(j["ok"], true);
        assert_eq!(j["latency_p999_us"], 3);
        assert_eq!(j["server_cpu_us_per_msg"], Value::Null);

        r.fail("2 messages lost");
        assert!(!r.ok());
        assert!(r.table().contains("FAIL"));
        let j: Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(j["failures"][0], "2 messages lost");
    }

    #[test]
    fn rounding() {
        assert!((round2(1.23456) - 1.23).abs() < f64::EPSILON);
    }
}
