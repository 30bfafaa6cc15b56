//! The configuration file (`--config switchboard.toml`) with the real binary: the file sets
//! what the environment would, the environment and flags override it, every bad entry is
//! reported at once with its line (exit 64, nothing bound), and `--print-config` prints a
//! file the server reads back to the same settings.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::process::Process;
use support::*;

/// Every variable the server reads, so that the test process's environment cannot leak in.
const OURS: &[&str] = &[
    "PORT",
    "MAX_ROOMS",
    "PING_INTERVAL",
    "CORS_ORIGINS",
    "NODE_ENV",
    "AUTH_SECRET",
    "ADMIN_API_KEY",
    "METRICS_ROUTE",
    "PEER_HEARTBEAT_TIMEOUT",
];

/// A file in a fresh directory of its own, removed with it.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-config-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Self { dir, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn switchboard(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for var in OURS {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn the_file_sets_what_the_environment_would_and_the_environment_and_flags_override_it() {
    let file = TempFile::new(
        "switchboard.toml",
        "# a deployment's settings\n\
         PORT = 4100\n\
         MAX_ROOMS = 5\n\
         PING_INTERVAL = \"30s\"\n\
         CORS_ORIGINS = [\"https://a.example\", \"https://b.example\"]\n\
         DEMO = false\n",
    );
    let out = switchboard(
        &[
            "--config",
            file.arg(),
            "--ping-interval",
            "40s",
            "--print-config",
        ],
        &[("MAX_ROOMS", "7")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "PORT = 4100",                                            // the file
        "MAX_ROOMS = 7",                                          // the environment over the file
        "PING_INTERVAL = \"40s\"",                                // a flag over the file
        "CORS_ORIGINS = \"https://a.example,https://b.example\"", // a list
        "DEMO = false",
        "SIGNALING_PORT = 3001", // not in the file: the embedded default
    ] {
        assert!(has_line(&text, line), "{line} missing in:\n{text}");
    }
}

#[test]
fn every_error_in_the_file_is_reported_at_once_with_its_line() {
    let file = TempFile::new(
        "bad.toml",
        "PORT = \"http\"\n\
         MAX_ROOMZ = 3\n\
         \n\
         PING_INTERVAL = \"never\"\n\
         [cluster]\n\
         REDIS_URL = \"redis://127.0.0.1:6379\"\n",
    );
    let out = switchboard(&["--config", file.arg()], &[("MAX_ROOMS", "-3")]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    let at = |line: usize| format!("{}:{line}: ", file.arg());
    for (line, what) in [
        (1, "PORT=\"http\""),
        (2, "MAX_ROOMZ: not a setting (did you mean MAX_ROOMS?)"),
        (4, "PING_INTERVAL=\"never\""),
    ] {
        assert!(
            err.contains(&format!("{}{what}", at(line))),
            "line {line} ({what}) missing in:\n{err}"
        );
    }
    assert!(err.contains("cluster: sections are not settings"), "{err}");
    // The environment's bad value is in the same report.
    assert!(err.contains("MAX_ROOMS=\"-3\""), "{err}");
    assert!(stdout(&out).is_empty(), "nothing started: {}", stdout(&out));
}

#[test]
fn a_rule_broken_by_the_file_names_the_line() {
    let file = TempFile::new(
        "rules.toml",
        "PING_INTERVAL = \"25s\"\nPEER_HEARTBEAT_TIMEOUT = \"10s\"\n",
    );
    let out = switchboard(&["--config", file.arg()], &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(
        err.contains("PEER_HEARTBEAT_TIMEOUT=10s: must be longer than PING_INTERVAL")
            && err.contains(&format!("({}:2)", file.arg())),
        "{err}"
    );
}

#[test]
fn a_missing_file_and_a_file_that_is_not_toml_are_refused() {
    let out = switchboard(&["--config", "/nonexistent/switchboard.toml"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));

    let file = TempFile::new("broken.toml", "PORT = 3000\nDEMO = \n");
    let out = switchboard(&["--config", file.arg()], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains(&format!("{}:2: not TOML", file.arg())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn print_config_prints_a_file_the_server_reads_back_to_the_same_settings() {
    let secrets = [
        ("AUTH_SECRET", "a-long-enough-production-secret"),
        ("ADMIN_API_KEY", "the-admin-key"),
    ];
    let mut env = vec![
        ("NODE_ENV", "production"),
        ("MAX_ROOMS", "12"),
        ("CORS_ORIGINS", "https://a.example"),
        ("METRICS_ROUTE", "/internal/metrics"),
    ];
    env.extend(secrets);
    let first = switchboard(&["--print-config"], &env);
    assert!(first.status.success(), "{}", stderr(&first));
    let printed = stdout(&first);
    assert!(!printed.contains("the-admin-key") && !printed.contains("a-long-enough"));

    // The printed file alone (secrets from the environment, as in production) gives the
    // same settings.
    let file = TempFile::new("printed.toml", &printed);
    let second = switchboard(&["--config", file.arg(), "--print-config"], &secrets);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(stdout(&second), printed);
}

#[tokio::test]
async fn the_server_runs_with_a_file() {
    let file = TempFile::new(
        "switchboard.toml",
        "METRICS_ROUTE = \"/internal/metrics\"\nMAX_ROOMS = 3\n",
    );
    // The fixture's environment puts every port at 0 on loopback, over anything the file says.
    let server = Process::start_with_args(&["--config", file.arg()], &[], None);
    let (status, text) = http_raw("GET", server.http, "/internal/metrics", None, &[]).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("switchboard_rooms_active"), "{text}");
    let (status, _) = http_raw("GET", server.http, "/metrics", None, &[]).await;
    assert_eq!(status, 404);
}
