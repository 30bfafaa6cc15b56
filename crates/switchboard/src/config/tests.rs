//! Unit tests of the configuration: defaults, the README's tables, every-error-at-once.

use super::*;

fn parse(extra: &[&str]) -> Result<Config, LoadError> {
    let mut v = vec!["switchboard"];
    v.extend_from_slice(extra);
    Config::parse_without_env(v)
}

#[test]
fn the_embedded_defaults_are_valid() {
    let c = Config::default();
    assert_eq!(c.port, 3000);
    assert_eq!(c.signaling_port, 3001);
    assert_eq!(c.room_inactivity_timeout, Span::secs(3 * 3600));
    assert_eq!(c.max_frame_bytes, Size(65536));
    assert!(!c.is_production());
    assert_eq!(c.effective_log_format(), LogFormat::Text);
    assert_eq!(c.admin_api_key, None);
}

/// `Config::default()` is what a server started with an empty environment runs with,
/// field by field.
#[test]
fn the_defaults_equal_the_parse_of_an_empty_environment() {
    let loaded = Config::load_from(["switchboard"]);
    // The test process's environment may set some variable; compare only when it sets
    // none of ours.
    let ours = Config::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_os_string()))
        .any(|e| std::env::var_os(e).is_some());
    if !ours {
        assert_eq!(loaded.unwrap(), Config::default());
    }
    assert_eq!(parse(&[]).unwrap(), Config::default());
}

/// The README's configuration tables give each setting's default; they must be the
/// defaults `--help` prints and the server runs with.
#[test]
fn the_readme_tables_show_the_real_defaults() {
    let readme = include_str!("../../../../README.md");
    let cmd = Config::command();
    let mut checked = 0;
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let (var, default) = (cells[1].trim_matches('`'), cells[2]);
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == var))
        else {
            continue;
        };
        checked += 1;
        let shown: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let shown = shown.join(",");
        let documented = default.split('`').nth(1).unwrap_or("");
        if shown.is_empty() {
            assert!(
                documented.is_empty() || !default.starts_with('`'),
                "README says {var} defaults to {default}, but it has no default"
            );
        } else {
            // Compare values, not spellings: `60s` and `1m` are one default.
            let same = match (documented.parse::<Span>(), shown.parse::<Span>()) {
                (Ok(a), Ok(b)) if documented.parse::<u64>().is_err() => a == b,
                _ => match (documented.parse::<Size>(), shown.parse::<Size>()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => documented == shown,
                },
            };
            assert!(
                same,
                "README says {var} defaults to {documented:?}, the server to {shown:?}"
            );
        }
    }
    let missing: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| !readme.contains(&format!("| `{e}` ")))
        .collect();
    assert!(
        missing.is_empty(),
        "settings missing from README: {missing:?}"
    );
    assert!(
        checked >= 30,
        "only {checked} settings found in README tables"
    );
}

/// Found by fuzzing (fuzz/fuzz_targets/config.rs): `CORS_ORIGINS=*` (or `*` among
/// origins) was accepted, and building the routers panicked.
#[test]
fn a_wildcard_among_the_cors_origins_is_refused() {
    for bad in ["*", "https://a.example,*", " */"] {
        let e = parse(&["--cors-origins", bad]).expect_err(bad);
        assert!(e.to_string().contains("CORS_ORIGINS"), "{e}");
    }
    let c = parse(&["--cors-origins", "https://a.example/,https://b.example"]).unwrap();
    assert_eq!(
        c.cors_origins.as_slice(),
        ["https://a.example", "https://b.example"]
    );
}

/// Found by fuzzing (fuzz/fuzz_targets/config.rs): an admin key with a newline, a
/// non-ASCII character or a space at an end was accepted, and no request could ever
/// present it.
#[test]
fn the_admin_key_must_fit_an_authorization_header() {
    for bad in ["line\nbreak", "clé", " padded", "padded "] {
        let e = parse(&["--admin-api-key", bad]).expect_err(bad);
        assert!(e.to_string().contains("ADMIN_API_KEY"), "{e}");
    }
    let c = parse(&["--admin-api-key", "a key-with_symbols!~"]).expect("printable");
    assert_eq!(c.admin_api_key.as_deref(), Some("a key-with_symbols!~"));
}

#[test]
fn the_metrics_route_is_configurable_but_cannot_shadow_a_route() {
    let c = parse(&["--metrics-route", "/internal/prom"]).unwrap();
    assert_eq!(c.metrics_route, "/internal/prom");
    for bad in [
        "metrics",
        "/",
        "/api/stats",
        "/ws",
        "/socket.io/x",
        "/m/{id}",
        "/a//b",
    ] {
        let e = parse(&["--metrics-route", bad]).unwrap_err();
        assert!(e.to_string().contains("METRICS_ROUTE"), "{bad}: {e}");
    }
}

#[test]
fn every_bad_setting_is_reported_at_once() {
    let err = Config::load_from([
        "switchboard",
        "--port",
        "http",
        "--ping-interval",
        "never",
        "--max-rooms=-3",
        "--node-env",
        "staging",
    ])
    .unwrap_err();
    let text = err.to_string();
    for var in ["PORT=", "PING_INTERVAL=", "MAX_ROOMS=", "NODE_ENV="] {
        assert!(text.contains(var), "{var} missing from:\n{text}");
    }
    assert!(
        text.contains("development"),
        "lists the valid values:\n{text}"
    );
}

#[test]
fn production_refuses_the_default_secret_and_a_missing_admin_key() {
    let err = parse(&["--production"]).unwrap_err().to_string();
    assert!(err.contains("AUTH_SECRET"), "{err}");
    assert!(err.contains("ADMIN_API_KEY"), "{err}");
    let ok = parse(&[
        "--node-env",
        "prod",
        "--auth-secret",
        "a-long-enough-production-secret",
        "--admin-api-key",
        "k",
    ])
    .unwrap();
    assert!(ok.is_production());
    assert_eq!(ok.effective_log_format(), LogFormat::Json);
}

#[test]
fn empty_secrets_mean_unset() {
    let c = parse(&["--admin-api-key", "", "--turn-secret="]).unwrap();
    assert_eq!(c.admin_api_key, None);
    assert_eq!(c.turn_secret, None);
}
