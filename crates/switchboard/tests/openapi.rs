//! The OpenAPI documents (`GET /api/openapi.json` on PORT and on SOCKETIO_PORT) against the
//! router sources and the real server: every route the sources register is documented on
//! its port, and every documented path is served (no stale entries). Whether the responses
//! match the documents is schemathesis's job (scripts/openapi-check.sh, in the test command).

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use support::*;

fn source(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/http")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Path literals registered with `.route("…"` in `text` (route parameters as `{}`).
fn routes_in(text: &str) -> BTreeSet<String> {
    text.match_indices(".route(\"")
        .filter_map(|(at, m)| {
            let rest = &text[at + m.len()..];
            rest.find('"').map(|end| normalise(&rest[..end]))
        })
        .collect()
}

/// Every string literal in `text` that starts with one of `prefixes` (the demo's file table).
fn literals_starting(text: &str, prefixes: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in prefixes {
        for (at, _) in text.match_indices(&format!("\"{prefix}")) {
            let rest = &text[at + 1..];
            if let Some(end) = rest.find('"') {
                out.insert(normalise(&rest[..end]));
            }
        }
    }
    out
}

/// `/api/rooms/{room_id}` and `/api/rooms/{roomId}` are one path.
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

fn documented(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(|p| normalise(p))
        .collect()
}

async fn document(addr: std::net::SocketAddr) -> Value {
    let (status, body) = http("GET", addr, "/api/openapi.json", None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["openapi"], "3.1.0");
    body
}

#[tokio::test]
async fn every_route_in_the_sources_is_documented_on_its_port() {
    let server = TestServer::start().await;
    let http_doc = documented(&document(server.http).await);
    let vibe_doc = documented(&document(server.socketio).await);

    let mut on_port: BTreeSet<String> = ["api.rs", "rendezvous.rs", "probes.rs", "openapi/mod.rs"]
        .iter()
        .flat_map(|f| routes_in(&source(f)))
        .collect();
    // http_app's own routes (the first block of mod.rs; signaling_app's are another port).
    let mod_rs = source("mod.rs");
    let http_app = &mod_rs[mod_rs.find("pub fn http_app").unwrap()..];
    let http_app = &http_app[..http_app.find("pub fn signaling_app").unwrap()];
    on_port.extend(routes_in(http_app));
    on_port.extend(literals_starting(&source("demo.rs"), &["/sdk/", "/demo"]));
    // Not literals in the sources: the metrics route (METRICS_ROUTE, default /metrics), and
    // Socket.io's layer.
    on_port.extend(["/metrics".to_owned(), "/socket.io/".to_owned()]);
    // The OpenAPI route is registered through openapi::PATH.
    on_port.insert("/api/openapi.json".to_owned());
    assert!(on_port.len() >= 30, "routes found: {on_port:?}");
    let missing: Vec<&String> = on_port.difference(&http_doc).collect();
    assert!(
        missing.is_empty(),
        "routes on PORT missing from its document: {missing:?}"
    );

    let mut vibe: BTreeSet<String> = routes_in(&source("vibe.rs"));
    vibe.extend(["/api/openapi.json".to_owned(), "/socket.io/".to_owned()]);
    let missing: Vec<&String> = vibe.difference(&vibe_doc).collect();
    assert!(
        missing.is_empty(),
        "routes on SOCKETIO_PORT missing from its document: {missing:?}"
    );

    // And nothing documented that is not a route.
    let stale: Vec<&String> = http_doc.difference(&on_port).collect();
    assert!(
        stale.is_empty(),
        "documented but not routed on PORT: {stale:?}"
    );
    let stale: Vec<&String> = vibe_doc.difference(&vibe).collect();
    assert!(
        stale.is_empty(),
        "documented but not routed on SOCKETIO_PORT: {stale:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn every_documented_path_is_served() {
    let server = TestServer::start().await;
    for (addr, doc) in [
        (server.http, document(server.http).await),
        (server.socketio, document(server.socketio).await),
    ] {
        for (path, item) in doc["paths"].as_object().unwrap() {
            let path = path.replace("{roomId}", "no-such-room");
            for method in item.as_object().unwrap().keys() {
                let (status, _) = http_raw(&method.to_uppercase(), addr, &path, None, &[]).await;
                // A 404 must be the route's own (a missing room), never "no such route".
                assert!(
                    status != 404 || path.contains("no-such-room"),
                    "{method} {path} on {addr}: 404"
                );
                assert!(status < 500, "{method} {path} on {addr}: {status}");
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn production_documents_the_admin_key_as_required() {
    let dev = TestServer::start().await;
    let doc = document(dev.http).await;
    assert_eq!(
        doc["paths"]["/api/rooms"]["get"]["security"],
        serde_json::json!([{ "adminKey": [] }, {}]),
        "development: the key is optional"
    );
    dev.stop().await;

    let prod = TestServer::with(switchboard::Config {
        node_env: switchboard::config::NodeEnv::Production,
        auth_secret: "a-long-enough-production-secret".into(),
        admin_api_key: Some("k".into()),
        ..test_config()
    })
    .await;
    let doc = document(prod.http).await;
    assert_eq!(
        doc["paths"]["/api/rooms"]["get"]["security"],
        serde_json::json!([{ "adminKey": [] }])
    );
    assert!(doc["paths"]["/api/health"]["get"].get("security").is_none());
    // The document itself is public, as the API's shape is no secret.
    let vibe = document(prod.socketio).await;
    assert_eq!(
        vibe["paths"]["/api/rooms"]["post"]["security"],
        serde_json::json!([{ "adminKey": [] }]),
        "production: Socket.io needs tokens, so creating a room needs the key"
    );
    prod.stop().await;
}
