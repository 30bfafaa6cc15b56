//! Reading a process's memory and CPU from `/proc` (Linux only), plus raising our own file
//! descriptor limit. The parsers take the file's text so they can be tested without a
//! process.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss_kib(&text).with_context(|| format!("no VmRSS line in {path}"))
}

fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// Descriptors `pid` has open now (the entries of `/proc/<pid>/fd`).
pub fn fd_count(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&path).with_context(|| format!("reading {path}"))?;
    Ok(entries.count() as u64)
}

/// User plus system CPU time that `pid` has used so far (`utime` + `stime`, fields 14 and 15
/// of `/proc/<pid>/stat`, which count clock ticks; see [`clock_ticks_per_sec`]).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_cpu_ticks(&text).with_context(|| format!("malformed {path}"))?;
    Ok(ticks_to_duration(ticks, clock_ticks_per_sec()))
}

/// Our own CPU time, to show whether the load generator itself was the bottleneck.
pub fn own_cpu_time() -> Result<Duration> {
    cpu_time(std::process::id())
}

fn ticks_to_duration(ticks: u64, per_sec: u64) -> Duration {
    Duration::from_micros(ticks.saturating_mul(1_000_000) / per_sec.max(1))
}

/// `utime + stime` from the text of `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`: after it come field 3 (state) onwards.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Fields 3..=13 are 11 fields to skip; then 14 (utime) and 15 (stime).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time the hypervisor took from this machine's vCPUs so far (`steal`, the 8th value of
/// the `cpu` line of `/proc/stat`, over all CPUs). On a virtual machine, latency tails of
/// a few milliseconds line up with this, not with the server.
pub fn steal_time() -> Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let ticks = parse_steal_ticks(&text).context("no cpu line in /proc/stat")?;
    Ok(ticks_to_duration(ticks, clock_ticks_per_sec()))
}

fn parse_steal_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq steal ...
    line.split_whitespace().nth(8)?.parse().ok()
}

/// Clock ticks per second (`getconf CLK_TCK`); 100 on every mainstream Linux.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a process-wide constant; it has no preconditions.
    #[allow(unsafe_code)]
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(100)
}

/// The server processes to observe (none when `--server-pid` was not given): one, or every
/// process of a cluster (its nodes and Redis), whose memory and CPU are summed.
#[derive(Debug, Clone, Default)]
pub struct Server(pub Vec<u32>);

impl Server {
    /// Fails early if a pid was given but cannot be read, rather than at the end of a run.
    pub fn check(self) -> Result<Self> {
        for &pid in &self.0 {
            rss_kib(pid).with_context(|| format!("--server-pid {pid} is not readable"))?;
            cpu_time(pid)?;
        }
        Ok(self)
    }

    pub fn rss_kib(&self) -> Result<Option<u64>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let mut total = 0;
        for &pid in &self.0 {
            total += rss_kib(pid)?;
        }
        Ok(Some(total))
    }

    /// Open descriptors, summed over the processes.
    pub fn fd_count(&self) -> Result<Option<u64>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let mut total = 0;
        for &pid in &self.0 {
            total += fd_count(pid)?;
        }
        Ok(Some(total))
    }

    pub fn cpu_time(&self) -> Result<Option<Duration>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let mut total = Duration::ZERO;
        for &pid in &self.0 {
            total += cpu_time(pid)?;
        }
        Ok(Some(total))
    }
}

/// CPU time used between two readings, per unit of work, in microseconds.
pub fn cpu_us_per(before: Option<Duration>, after: Option<Duration>, units: u64) -> Option<f64> {
    let (b, a) = (before?, after?);
    if units == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    Some(a.saturating_sub(b).as_secs_f64() * 1e6 / units as f64)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, since every peer is one socket.
/// Returns the soft limit now in force.
pub fn raise_fd_limit() -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct through a valid, exclusive pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) };
    if rc != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit struct through a valid pointer.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) };
        if rc != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tswitchboard\nVmPeak:\t  10000 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status), Some(5120));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss_kib("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn parses_stat_with_awkward_command_name() {
        // Field 14 (utime) = 250, field 15 (stime) = 50.
        let stat = "1234 (we (ird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    100 1000 200 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_steal_from_the_all_cpus_line() {
        let stat = "cpu  445411 4028 108564 2981362 6544 0 12583 2106 0 0\n\
                    cpu0 222762 2048 49327 1508792 1295 0 4610 1162 0 0\n";
        assert_eq!(parse_steal_ticks(stat), Some(2106));
        assert_eq!(parse_steal_ticks("cpu0 1 2 3\n"), None);
        assert_eq!(parse_steal_ticks("cpu  1 2 3\n"), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        // Other tests open and close files concurrently, so only this one is certain.
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert!(fd_count(me).unwrap() >= 1);
        drop(f);
        cpu_time(me).unwrap();
        assert!(clock_ticks_per_sec() > 0);
    }

    #[test]
    fn ticks_and_per_unit_cost() {
        assert_eq!(ticks_to_duration(150, 100), Duration::from_millis(1500));
        let per = cpu_us_per(
            Some(Duration::from_millis(10)),
            Some(Duration::from_millis(30)),
            1000,
        );
        assert_eq!(per, Some(20.0));
        assert_eq!(cpu_us_per(None, Some(Duration::ZERO), 1), None);
        assert_eq!(
            cpu_us_per(Some(Duration::ZERO), Some(Duration::ZERO), 0),
            None
        );
    }
}
