//! The value types settings are written in: durations ([`Span`]), sizes ([`Size`]),
//! comma lists ([`List`]) and address ranges ([`Cidrs`]). Each parses what an operator
//! types and displays in the same form, so `--help` shows the default exactly as it would
//! be written in the environment.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

/// A duration: `250ms`, `30s`, `5m`, `3h`, `1d` (anything `humantime` reads, `1h 30m`
/// included); a bare number is milliseconds, as in the OctateCode seed
/// (`ROOM_INACTIVITY_TIMEOUT=10800000`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Duration);

impl Span {
    /// `n` seconds.
    pub const fn secs(n: u64) -> Self {
        Self(Duration::from_secs(n))
    }
    /// `n` milliseconds.
    pub const fn millis(n: u64) -> Self {
        Self(Duration::from_millis(n))
    }
    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
    /// Whether it is zero.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for Span {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl From<Span> for Duration {
    fn from(s: Span) -> Self {
        s.0
    }
}

/// The longest duration a setting takes: 100 years (of 365.25 days, as `humantime` counts
/// them). Longer ones overflowed where the server adds them to the clock: a token's expiry
/// (`TOKEN_TTL`), a rendezvous code's expiry time (`ROOM_TTL`), a connection's deadlines
/// (`PING_INTERVAL`, `AUTH_TIMEOUT`, `HEARTBEAT`). Found by fuzzing (fuzz/fuzz_targets/config.rs).
pub const MAX_SPAN: Span = Span::secs(100 * 31_557_600);

impl FromStr for Span {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        let v = v.trim();
        let span = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            v.parse::<u64>()
                .map(Self::millis)
                .map_err(|_| "number of milliseconds too large".to_owned())?
        } else {
            humantime::parse_duration(v).map(Self).map_err(|_| {
                "expected a duration such as 250ms, 30s, 5m, 3h or a number of milliseconds"
                    .to_owned()
            })?
        };
        if span > MAX_SPAN {
            return Err(format!("at most {MAX_SPAN}"));
        }
        Ok(span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes: `512`, `64k`, `1m`, `1g` (binary multiples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub usize);

impl Size {
    /// The size in bytes.
    pub const fn get(self) -> usize {
        self.0
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        let v = v.trim().to_ascii_lowercase();
        let (num, shift) = match v.as_bytes().last() {
            Some(b'k') => (&v[..v.len() - 1], 10),
            Some(b'm') => (&v[..v.len() - 1], 20),
            Some(b'g') => (&v[..v.len() - 1], 30),
            _ => (v.as_str(), 0),
        };
        num.trim()
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .map(Self)
            .ok_or_else(|| {
                "expected a non-negative whole number of bytes (k, m and g suffixes allowed)"
                    .to_owned()
            })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "g"), (20, "m"), (10, "k")] {
            if n != 0 && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

/// A comma-separated list; entries are trimmed and empty ones dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct List(pub Vec<String>);

impl List {
    /// The entries.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Iterates over the entries.
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }
}

impl FromStr for List {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        Ok(Self(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// A comma-separated list of address ranges (`10.0.0.0/8`, `::1/128`); a bare address is
/// a range of one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cidrs(pub Vec<IpNet>);

impl Cidrs {
    /// Whether `ip` falls in one of the ranges. An IPv4-mapped IPv6 address counts as its
    /// IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Cidrs {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| format!("{s:?} is not an address or a CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for Cidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The dialect names settings may list.
pub const DIALECTS: [&str; 5] = ["octate", "socketio", "rendezvous", "nt", "ywebrtc"];

/// A choice of dialects: `auto` (the server decides by mode), `all`, `none`, or a comma
/// list of names from [`DIALECTS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Dialects {
    /// The mode decides (production: all; development: none).
    #[default]
    Auto,
    /// Every dialect.
    All,
    /// These.
    Listed(Vec<String>),
}

impl Dialects {
    /// Whether `dialect` is chosen, `auto` resolving to `production`.
    pub fn contains(&self, dialect: &str, production: bool) -> bool {
        match self {
            Self::Auto => production,
            Self::All => true,
            Self::Listed(names) => names.iter().any(|n| n == dialect),
        }
    }
}

impl FromStr for Dialects {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "auto" => return Ok(Self::Auto),
            "all" => return Ok(Self::All),
            "none" | "" => return Ok(Self::Listed(Vec::new())),
            _ => {}
        }
        let mut names = Vec::new();
        for n in v
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
        {
            if !DIALECTS.contains(&n.as_str()) {
                return Err(format!(
                    "{n:?} is not a dialect (expected auto, all, none, or a list of {})",
                    DIALECTS.join(", ")
                ));
            }
            if !names.contains(&n) {
                names.push(n);
            }
        }
        Ok(Self::Listed(names))
    }
}

impl fmt::Display for Dialects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::All => f.write_str("all"),
            Self::Listed(n) if n.is_empty() => f.write_str("none"),
            Self::Listed(n) => f.write_str(&n.join(",")),
        }
    }
}

/// A count that the server may derive itself: `auto`, or a number (0 = unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Count {
    /// Derived at start (see the setting).
    #[default]
    Auto,
    /// This many; 0 is unlimited.
    Fixed(usize),
}

impl Count {
    /// The number, `auto` resolving to `derived`; `None` for unlimited.
    pub fn resolve(self, derived: usize) -> Option<usize> {
        match self {
            Self::Auto => Some(derived),
            Self::Fixed(0) => None,
            Self::Fixed(n) => Some(n),
        }
    }
}

impl FromStr for Count {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        let v = v.trim();
        if v.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        v.parse()
            .map(Self::Fixed)
            .map_err(|_| format!("{v:?} is not a count (expected auto or a number, 0 = unlimited)"))
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Fixed(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_auto_or_numbers() {
        assert_eq!("auto".parse(), Ok(Count::Auto));
        assert_eq!("AUTO".parse(), Ok(Count::Auto));
        assert_eq!("5000".parse(), Ok(Count::Fixed(5000)));
        assert!("many".parse::<Count>().is_err());
        assert_eq!(Count::Auto.resolve(7), Some(7));
        assert_eq!(Count::Fixed(0).resolve(7), None);
        assert_eq!(Count::Fixed(3).resolve(7), Some(3));
        assert_eq!(Count::Auto.to_string(), "auto");
    }

    #[test]
    fn spans_take_units_and_bare_milliseconds_and_print_back() {
        assert_eq!("10800000".parse(), Ok(Span::secs(10800)));
        assert_eq!("250ms".parse(), Ok(Span::millis(250)));
        assert_eq!("5m".parse(), Ok(Span::secs(300)));
        assert_eq!("1h 30m".parse(), Ok(Span::secs(5400)));
        assert!("soon".parse::<Span>().is_err());
        assert!("5 fortnights".parse::<Span>().is_err());
        for s in ["3h", "250ms", "25s", "10m", "0s"] {
            assert_eq!(s.parse::<Span>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn spans_are_at_most_a_hundred_years() {
        assert_eq!(MAX_SPAN.to_string(), "100years");
        assert_eq!("100years".parse(), Ok(MAX_SPAN));
        assert_eq!("3155760000000".parse(), Ok(MAX_SPAN));
        for s in [
            "101years",
            "3155760000001",
            "18446744073709551615",
            "9000years",
        ] {
            assert_eq!(s.parse::<Span>(), Err("at most 100years".to_owned()), "{s}");
        }
    }

    #[test]
    fn sizes_take_binary_suffixes_and_print_back() {
        assert_eq!("64k".parse(), Ok(Size(65536)));
        assert_eq!("1M".parse(), Ok(Size(1 << 20)));
        assert_eq!("512".parse(), Ok(Size(512)));
        assert!("-3".parse::<Size>().is_err());
        assert!("99999999999999999999g".parse::<Size>().is_err());
        for s in ["64k", "512", "1m", "0"] {
            assert_eq!(s.parse::<Size>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn dialect_sets_take_keywords_and_names() {
        assert_eq!("auto".parse(), Ok(Dialects::Auto));
        let l: Dialects = "Octate, nt".parse().unwrap();
        assert!(l.contains("nt", false) && !l.contains("socketio", true));
        assert!(Dialects::Auto.contains("nt", true) && !Dialects::Auto.contains("nt", false));
        assert!("octate,smtp".parse::<Dialects>().is_err());
        for s in ["auto", "all", "none", "octate,nt"] {
            assert_eq!(s.parse::<Dialects>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn cidr_lists_take_ranges_and_bare_addresses() {
        let c: Cidrs = "10.0.0.0/8, 127.0.0.1 ,::1".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("127.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(c.contains("::1".parse().unwrap()));
        assert!(!c.contains("127.0.0.2".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidrs>().is_err());
        assert!("proxy".parse::<Cidrs>().is_err());
        assert_eq!("".parse::<Cidrs>().unwrap(), Cidrs::default());
    }
}
