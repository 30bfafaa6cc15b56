//! The operator's files in `deploy/` against the real server: every metric that the alert
//! rules (`deploy/prometheus/alerts.yml`) and the Grafana dashboard
//! (`deploy/grafana/switchboard.json`) query is one that `/metrics` exports, so a renamed or
//! removed metric fails here rather than leaving an alert that can never fire. (What each rule
//! fires for is `promtool test rules`, run by the test command.)

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use support::*;

/// Series that Prometheus makes itself rather than scraping from the server.
const MADE_BY_PROMETHEUS: &[&str] = &["up"];

/// PromQL words that are not metric names when they stand alone.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    // Aggregations, which may be followed by `by (…)` before their parenthesis.
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

fn repo_file(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The metric names a PromQL expression selects: identifiers outside label matchers (`{…}`),
/// ranges (`[…]`), strings and grouping lists (`by (…)`, `on (…)`, …) that are neither a
/// function call nor a keyword.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut grouping_next = false;
    while i < chars.len() {
        let c = chars[i];
        let skip_to = |close: char, from: usize| {
            chars[from..]
                .iter()
                .position(|&x| x == close)
                .map_or(chars.len(), |p| from + p + 1)
        };
        if c == '{' {
            i = skip_to('}', i);
        } else if c == '[' {
            i = skip_to(']', i);
        } else if c == '"' || c == '\'' {
            i = skip_to(c, i + 1);
        } else if c == '(' && grouping_next {
            i = skip_to(')', i);
            grouping_next = false;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let lower = word.to_ascii_lowercase();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&lower.as_str())
            {
                grouping_next = true;
            } else if next != Some(&'(') && !KEYWORDS.contains(&lower.as_str()) {
                names.insert(word);
            }
        } else if c == '$' {
            // A Grafana variable ($__rate_interval): not a name.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The expressions of every rule in the alert rules file (each written on one line).
fn rule_expressions(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| {
            let e = e.trim();
            assert!(
                !e.is_empty() && !e.starts_with(['|', '>']),
                "write each rule's expr on one line, so that this test reads it: {e:?}"
            );
            e.to_owned()
        })
        .collect()
}

/// Every query of the dashboard: its panels' targets and its query variables.
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            out.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(q) = var["query"]["query"].as_str() {
            // label_values(metric{…}, label): the metric is the first argument.
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map_or(q, |(metric, _)| metric);
            out.push(inner.to_owned());
        }
    }
    out
}

/// The sample names a Prometheus text exposition can have, from its `# TYPE` lines (a family
/// with no series yet has its TYPE line all the same).
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "gauge" => &[""],
            other => panic!("unexpected metric type {other}"),
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

fn assert_all_exported(file: &str, exprs: &[String], exported: &BTreeSet<String>) {
    assert!(!exprs.is_empty(), "{file}: no expressions found");
    let mut missing = Vec::new();
    for expr in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{file}: no metric in {expr:?}");
        for name in names {
            if !exported.contains(&name) && !MADE_BY_PROMETHEUS.contains(&name.as_str()) {
                missing.push(format!("{name} (in {expr})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{file} queries metrics /metrics does not export:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_query_reader_finds_metrics_and_nothing_else() {
    let names = metric_names(
        r#"sum by (job, instance) (increase(switchboard_errors_total{kind="unavailable"}[5m])) > 0 and on (job, instance) switchboard_node{backplane="redis"} == 1"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["switchboard_errors_total", "switchboard_node"]
    );
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(switchboard_ws_rtt_seconds_bucket{job=\"$job\"}[$__rate_interval])))",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["switchboard_ws_rtt_seconds_bucket"]
    );
    assert_eq!(
        metric_names("up{job=\"switchboard\"} == 0")
            .into_iter()
            .collect::<Vec<_>>(),
        ["up"]
    );
}

/// Families with labels appear in a scrape once they have a series: these are what the
/// alerts and the dashboard read, each made to exist below by what a client does.
const FAMILIES_SEEN_AFTER_TRAFFIC: &[&str] = &[
    "switchboard_connections_total",
    "switchboard_connections_active",
    "switchboard_messages_total",
    "switchboard_errors_total",
    "switchboard_limit_hits_total",
    "switchboard_node",
    "nt_signal_messages_total",
    "nt_signal_dropped_total",
];

/// Traffic that gives every labelled family a series: an OctateCode peer that
/// authenticates, sends malformed JSON (an error) and an oversized message (a limit hit),
/// and an nt peer whose offer finds nobody (a dropped signal).
async fn exercise(server: &TestServer) -> String {
    let mut peer = Client::connect(&server.signaling_url()).await;
    peer.send(serde_json::json!({"type":"auth","userId":"ops","roomId":"r1","data":{}}))
        .await;
    peer.recv().await;
    peer.send_text("{not json").await;
    assert_eq!(peer.recv().await["data"]["code"], "bad_json");
    peer.send_text(&format!(
        r#"{{"type":"heartbeat","pad":"{}"}}"#,
        "x".repeat(2048)
    ))
    .await;
    assert_eq!(peer.recv().await["data"]["code"], "frame_too_large");
    let nt = format!(
        "ws://{}/ws?appID={}&side=A",
        server.http,
        uuid::Uuid::new_v4()
    );
    let mut lonely = Client::connect(&nt).await;
    lonely.send_text(r#"{"type":"offer","sdp":"nobody"}"#).await;
    // The offer has no reply to wait for: wait for its count instead.
    let start = tokio::time::Instant::now();
    loop {
        let text = scrape(server).await;
        let names = exported_names(&text);
        if FAMILIES_SEEN_AFTER_TRAFFIC
            .iter()
            .all(|f| names.contains(*f))
        {
            return text;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "families still without a series: {:?}",
            FAMILIES_SEEN_AFTER_TRAFFIC
                .iter()
                .filter(|f| !names.contains(**f))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_metric_in_the_alerts_and_the_dashboard_is_exported() {
    let server = TestServer::with(switchboard::Config {
        max_frame_bytes: switchboard::config::Size(1024),
        ..test_config()
    })
    .await;
    let exported = exported_names(&exercise(&server).await);
    assert!(
        exported.contains("switchboard_connections_total"),
        "the scrape has the server's metrics:\n{exported:?}"
    );
    // A name the server does not export is caught (the check itself can fail).
    assert!(!exported.contains("switchboard_no_such_metric_total"));

    let rules = rule_expressions(&repo_file("deploy/prometheus/alerts.yml"));
    assert!(rules.len() >= 7, "every alert rule read: {rules:?}");
    assert_all_exported("deploy/prometheus/alerts.yml", &rules, &exported);

    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/switchboard.json")).expect("JSON");
    let queries = dashboard_expressions(&dashboard);
    assert_all_exported("deploy/grafana/switchboard.json", &queries, &exported);
    server.stop().await;
}

#[tokio::test]
async fn the_alerts_see_this_nodes_memory_thresholds_and_backplane() {
    let config = switchboard::Config {
        memory_warning_threshold: 150,
        memory_critical_threshold: 250,
        ..test_config()
    };
    let server = TestServer::with(config).await;
    let text = scrape(&server).await;
    assert_eq!(
        series(&text, "switchboard_memory_warning_bytes"),
        150.0 * 1024.0 * 1024.0
    );
    assert_eq!(
        series(&text, "switchboard_memory_critical_bytes"),
        250.0 * 1024.0 * 1024.0
    );
    assert_eq!(series(&text, "switchboard_backplane_up"), 1.0);
    assert!(series(&text, "switchboard_resident_memory_bytes") > 0.0);
    server.stop().await;
}
