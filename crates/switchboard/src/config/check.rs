//! Value checking ahead of clap: every value given for a setting (flag, environment or
//! configuration file) goes through that setting's own parser, so that all bad values are
//! reported at once where clap alone stops at the first.

use std::ffi::OsString;

use std::ffi::OsStr;

use super::LoadError;
use super::file::Entry;

/// What [`check_values`] found.
pub(super) struct Checked {
    /// One line per bad value.
    pub(super) problems: Vec<String>,
    /// A command line (no environment needed) that sets every good value given, flags or
    /// environment alike, and leaves the bad ones at their defaults.
    pub(super) good: Vec<OsString>,
}

/// Runs every given value through its setting's parser, so that all bad values are
/// reported at once (clap alone stops at the first). Flags and arguments clap cannot
/// match at all are left to clap's own error.
pub(super) fn check_values(cmd: &clap::Command, args: &[OsString]) -> Result<Checked, LoadError> {
    use clap::parser::ValueSource;
    // The same command with every value taken as a plain string: it matches whatever the
    // real one would, without judging the values.
    let raw = raw_command(cmd).try_get_matches_from(args)?;
    let mut checked = Checked {
        problems: Vec::new(),
        good: vec![OsString::from("switchboard")],
    };
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let long = arg.get_long().unwrap_or(id);
        if !matches!(
            raw.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        if !arg.get_action().takes_values() {
            if raw.get_flag(id) {
                checked.good.push(format!("--{long}").into());
            }
            continue;
        }
        let Ok(Some(values)) = raw.try_get_raw(id) else {
            continue;
        };
        for v in values {
            let mut flag = OsString::from(format!("--{long}="));
            flag.push(v);
            match judge(arg, v) {
                Ok(()) => checked.good.push(flag),
                Err(why) => {
                    let name = arg
                        .get_env()
                        .map_or_else(|| format!("--{long}"), |e| e.to_string_lossy().into_owned());
                    checked
                        .problems
                        .push(format!("  {name}={:?}: {why}", v.to_string_lossy()));
                }
            }
        }
    }
    Ok(checked)
}

/// The reason part of a clap value error, without its `error:` prefix and usage hints.
fn clap_reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let valid = match e.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(v)) => format!(" (expected one of: {})", v.join(", ")),
        _ => String::new(),
    };
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    let reason = first.rsplit_once("': ").map_or(first, |(_, r)| r);
    format!("{}{valid}", reason.trim_start_matches("error: "))
}

/// `cmd` with every value taken as a plain string: it matches whatever `cmd` would, without
/// judging the values.
pub(super) fn raw_command(cmd: &clap::Command) -> clap::Command {
    cmd.clone().mut_args(|a| {
        if a.get_action().takes_values() {
            a.value_parser(clap::builder::ValueParser::os_string())
        } else {
            a
        }
    })
}

/// The setting alone, with its real parser, judges one value.
fn judge(arg: &clap::Arg, value: &OsStr) -> Result<(), String> {
    let long = arg.get_long().unwrap_or(arg.get_id().as_str());
    let alone = clap::Command::new("switchboard")
        .no_binary_name(true)
        .arg(arg.clone().env(None::<&str>).default_value(None::<&str>));
    let mut flag = OsString::from(format!("--{long}="));
    flag.push(value);
    alone
        .try_get_matches_from([flag])
        .map(drop)
        .map_err(|e| clap_reason(&e))
}

/// Runs each configuration file entry through its setting's parser: the entries it
/// accepts, and one problem (`path:line: NAME=value: why`) per entry it refuses.
pub(super) fn check_file(
    cmd: &clap::Command,
    origin: &str,
    entries: Vec<Entry>,
) -> (Vec<Entry>, Vec<String>) {
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == entry.name.as_str()))
            .expect("ConfigFile keeps the entries that name a setting");
        match judge(arg, OsStr::new(&entry.value)) {
            Ok(()) => good.push(entry),
            Err(why) => problems.push(format!(
                "  {origin}:{}: {}={:?}: {why}",
                entry.line, entry.name, entry.value
            )),
        }
    }
    (good, problems)
}

/// `cmd` with the file's values in place of the embedded defaults, so that the environment
/// and flags still override them.
pub(super) fn with_file(cmd: clap::Command, entries: &[Entry]) -> clap::Command {
    cmd.mut_args(|a| {
        match entries
            .iter()
            .rev()
            .find(|e| a.get_env().is_some_and(|env| env == e.name.as_str()))
        {
            Some(e) => a.default_value(e.value.clone()),
            None => a,
        }
    })
}
