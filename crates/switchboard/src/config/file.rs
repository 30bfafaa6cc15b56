//! The configuration file (`--config switchboard.toml`): one flat TOML table whose keys are
//! the environment variables' names and whose values are written as in the environment or
//! as TOML's own types:
//!
//! ```toml
//! PORT = 3000
//! NODE_ENV = "production"
//! PEER_HEARTBEAT_TIMEOUT = "60s"
//! CORS_ORIGINS = ["https://app.example", "https://admin.example"]
//! DEMO = false
//! ```
//!
//! A file's values take the place of the embedded defaults, so the environment and flags
//! override them. Every bad entry (an unknown name, a section, a value its setting's parser
//! refuses) is reported with its line, together with bad environment values and the
//! cross-field rules. [`render`] writes the file `--print-config` prints, which this module
//! reads back as it was.

use std::ffi::OsString;
use std::path::Path;

use super::{Config, Count, Dialects};

/// The largest configuration file read (a few kilobytes is a full one).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One `NAME = value` line of a configuration file, its value as the environment would
/// spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The setting's environment name (`PORT`).
    pub name: String,
    /// The value as a string (`3000`; a list joined with commas).
    pub value: String,
    /// 1-based line of the entry.
    pub line: usize,
}

/// A configuration file read and split into entries, with what was wrong with it.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// The entries whose names are settings and whose values are TOML scalars or lists.
    pub entries: Vec<Entry>,
    /// One line per problem, `path:line: NAME: why`.
    pub problems: Vec<String>,
}

impl ConfigFile {
    /// Reads `path`. A file that cannot be read or is not TOML is one problem (TOML's parser
    /// stops at its first syntax error); otherwise every bad entry is one.
    pub fn read(path: &Path, settings: &[&str]) -> Self {
        use std::io::Read;
        let mut text = String::new();
        let read = std::fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text));
        let problem = match read {
            Ok(n) if n as u64 > MAX_FILE_BYTES => format!("larger than {MAX_FILE_BYTES} bytes"),
            Ok(_) => return Self::parse(&path.display().to_string(), &text, settings),
            Err(e) => format!("cannot read: {e}"),
        };
        Self {
            problems: vec![format!("  {}: {problem}", path.display())],
            ..Self::default()
        }
    }

    /// Parses `text` (named `origin` in problems); `settings` are the names a file may set.
    pub fn parse(origin: &str, text: &str, settings: &[&str]) -> Self {
        use std::collections::BTreeMap;
        use toml::{Spanned, Value};
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let table: BTreeMap<String, Spanned<Value>> = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let at = e
                    .span()
                    .map_or(String::new(), |s| format!(":{}", line_of(s.start)));
                let why = e.message().replace('\n', " ");
                return Self {
                    problems: vec![format!("  {origin}{at}: not TOML: {why}")],
                    ..Self::default()
                };
            }
        };
        let mut file = Self::default();
        for (name, value) in table {
            let line = line_of(value.span().start);
            let problem = |why: String| format!("  {origin}:{line}: {name}: {why}");
            if value.get_ref().is_table() {
                file.problems.push(problem(
                    "sections are not settings: write NAME = value at the top level".into(),
                ));
                continue;
            }
            if !settings.contains(&name.as_str()) {
                let hint = settings
                    .iter()
                    .map(|s| {
                        (
                            distance(&s.to_ascii_uppercase(), &name.to_ascii_uppercase()),
                            s,
                        )
                    })
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map_or(String::new(), |(_, s)| format!(" (did you mean {s}?)"));
                file.problems.push(problem(format!(
                    "not a setting{hint}; a file sets the environment variables' names (switchboard --help)"
                )));
                continue;
            }
            match as_written(value.get_ref()) {
                Ok(value) => file.entries.push(Entry { name, value, line }),
                Err(why) => file.problems.push(problem(why.into())),
            }
        }
        file.entries.sort_by_key(|e| e.line);
        file.problems.sort_by_key(|p| problem_line(p));
        file
    }
}

/// A TOML value as the environment would spell it.
fn as_written(value: &toml::Value) -> Result<String, &'static str> {
    use toml::Value;
    Ok(match value {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {
                        out.push(as_written(item)?);
                    }
                    _ => return Err("a list holds strings or numbers only"),
                }
            }
            out.join(",")
        }
        Value::Table(_) | Value::Datetime(_) => {
            return Err("expected a string, a number, true/false or a list");
        }
    })
}

/// Edits (insertions, deletions, substitutions) from `a` to `b`: how close a misspelt name
/// is to a setting.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The line number in a problem `  path:LINE: …`, for sorting.
pub(super) fn problem_line(problem: &str) -> usize {
    problem
        .split(':')
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// `--config FILE`, found in `args` without judging anything else on the command line.
pub(super) fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().cloned();
        }
        if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Some(v.into());
        }
    }
    None
}

/// The file `--print-config` prints: every setting as this server would run with it, as
/// `NAME = value` in `--help` order, which `--config` reads back to the same settings.
/// Secrets are not printed (their lines are comments: give them in the environment or write
/// them in); what `auto` resolves to is a comment beside it.
pub fn render(config: &Config, max_connections: usize) -> String {
    use clap::CommandFactory;
    let values = serde_json::to_value(config).unwrap_or_default();
    let mut out = String::from(
        "# Switchboard configuration (switchboard --print-config): every setting as this server\n\
         # would run with it. Read back with `switchboard --config FILE`; the environment and\n\
         # flags override it. Secrets are not printed.\n",
    );
    for arg in Config::command().get_arguments() {
        let Some(name) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        let v = &values[arg.get_id().as_str()];
        let line = match v {
            serde_json::Value::Null => format!("# {name}: unset"),
            _ if arg.is_hide_env_values_set() => {
                format!("# {name}: set, not printed (a secret)")
            }
            _ if name == "NODE_ENV" && config.is_production() => {
                format!("{name} = \"production\"")
            }
            serde_json::Value::String(s) => {
                format!("{name} = {}", toml::Value::String(s.clone()))
            }
            other => format!("{name} = {other}"),
        };
        let note = match name {
            "MAX_CONNECTIONS" if config.max_connections == Count::Auto => {
                format!("  # auto: {max_connections} here")
            }
            "REQUIRE_TOKEN" if config.require_token == Dialects::Auto => {
                let on: Vec<&str> = super::DIALECTS
                    .iter()
                    .copied()
                    .filter(|d| config.requires_token(d))
                    .collect();
                let on = if on.is_empty() {
                    "none".into()
                } else {
                    on.join(",")
                };
                format!("  # auto: {on}")
            }
            "BUFFERED_BYTES_MAX"
                if config.buffered_bytes_cap() < config.buffered_bytes_max.get() =>
            {
                format!(
                    "  # capped at {} (half MEMORY_CRITICAL_THRESHOLD)",
                    super::Size(config.buffered_bytes_cap())
                )
            }
            _ => String::new(),
        };
        out.push_str(&line);
        out.push_str(&note);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: &[&str] = &["PORT", "CORS_ORIGINS", "DEMO", "PING_INTERVAL"];

    #[test]
    fn values_read_as_the_environment_spells_them() {
        let f = ConfigFile::parse(
            "s.toml",
            "# comment\nPORT = 8080\nCORS_ORIGINS = [\"https://a.example\", \"https://b.example\"]\n\nDEMO = false\nPING_INTERVAL = \"30s\"\n",
            SETTINGS,
        );
        assert_eq!(f.problems, Vec::<String>::new());
        let got: Vec<(&str, &str, usize)> = f
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("PORT", "8080", 2),
                ("CORS_ORIGINS", "https://a.example,https://b.example", 3),
                ("DEMO", "false", 5),
                ("PING_INTERVAL", "30s", 6),
            ]
        );
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_line() {
        let f = ConfigFile::parse(
            "s.toml",
            "PORT = 1\nport = 2\n[cluster]\nREDIS_URL = \"redis://x\"\n",
            SETTINGS,
        );
        assert_eq!(f.entries.len(), 1);
        assert_eq!(f.problems.len(), 2, "{:?}", f.problems);
        assert!(
            f.problems[0].starts_with("  s.toml:2: port: not a setting (did you mean PORT?)"),
            "{:?}",
            f.problems
        );
        assert!(
            f.problems[1].contains("s.toml:") && f.problems[1].contains("cluster: sections"),
            "{:?}",
            f.problems
        );
    }

    #[test]
    fn a_misspelt_name_gets_a_suggestion() {
        let f = ConfigFile::parse("s.toml", "PING_INTERVALL = \"1s\"\nXYZ = 1\n", SETTINGS);
        assert!(
            f.problems[0].contains("(did you mean PING_INTERVAL?)"),
            "{:?}",
            f.problems
        );
        assert!(!f.problems[1].contains("did you mean"), "{:?}", f.problems);
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let f = ConfigFile::parse("s.toml", "PORT = 1\nDEMO = \n", SETTINGS);
        assert_eq!(f.problems.len(), 1);
        assert!(
            f.problems[0].starts_with("  s.toml:2: not TOML"),
            "{:?}",
            f.problems
        );
    }

    #[test]
    fn the_config_flag_is_found_in_either_spelling() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["sb", "--port", "1", "--config", "a.toml"])),
            Some("a.toml".into())
        );
        assert_eq!(
            config_path(&args(&["sb", "--config=b.toml"])),
            Some("b.toml".into())
        );
        assert_eq!(config_path(&args(&["sb", "--port", "1"])), None);
    }
}
