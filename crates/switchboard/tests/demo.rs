//! The embedded browser SDK and demo (`/sdk/switchboard.js`, `/demo/`), and `DEMO=off`,
//! against the real server over raw HTTP.

mod support;

use std::net::SocketAddr;

use support::*;
use switchboard::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One GET over a raw socket: status, lower-cased headers, body.
async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status.parse().unwrap(), headers, buf[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn repo_file(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn the_sdk_is_served_as_a_javascript_module_byte_for_byte() {
    let s = TestServer::start().await;
    let (status, headers, body) = get(s.http, "/sdk/switchboard.js", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(body, repo_file("clients/js/dist/switchboard.js"));
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("export {") && text.contains("Switchboard"),
        "an ES module exporting Switchboard"
    );

    // Revalidation: the same ETag gives 304 with no body; another gives the file.
    let etag = header(&headers, "etag").expect("an ETag").to_owned();
    let (status, _, body) = get(
        s.http,
        "/sdk/switchboard.js",
        &format!("If-None-Match: {etag}\r\n"),
    )
    .await;
    assert_eq!((status, body.len()), (304, 0));
    let (status, _, _) = get(s.http, "/sdk/switchboard.js", "If-None-Match: \"x\"\r\n").await;
    assert_eq!(status, 200);

    let (status, headers, body) = get(s.http, "/sdk/switchboard.d.ts", "").await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .contains("typescript")
    );
    assert_eq!(body, repo_file("clients/js/dist/switchboard.d.ts"));
    s.stop().await;
}

#[tokio::test]
async fn the_demo_page_carries_the_configured_yjs_url_and_its_assets() {
    let s = TestServer::with(Config {
        demo_yjs_url: "/vendor/yjs.mjs".into(),
        ..test_config()
    })
    .await;
    let (status, headers, body) = get(s.http, "/demo/", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains(
            r#"<script type="importmap">{"imports": {"yjs": "/vendor/yjs.mjs"}}</script>"#
        ),
        "import map with DEMO_YJS_URL: {html}"
    );
    assert!(html.contains(r#"<script type="module" src="app.js">"#));

    for (path, file, kind) in [
        ("/demo/app.js", "demo/app.js", "text/javascript"),
        ("/demo/editor.js", "demo/editor.js", "text/javascript"),
        ("/demo/style.css", "demo/style.css", "text/css"),
        (
            "/demo/switchboard-yjs.js",
            "clients/yjs/src/index.js",
            "text/javascript",
        ),
    ] {
        let (status, headers, body) = get(s.http, path, "").await;
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&headers, "content-type").unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(body, repo_file(file), "{path}");
    }
    // The app imports the SDK from the server, and Yjs through the import map.
    let app = String::from_utf8(repo_file("demo/app.js")).unwrap();
    assert!(app.contains("from '../sdk/switchboard.js'") && app.contains("from 'yjs'"));

    let (status, headers, _) = get(s.http, "/demo", "").await;
    assert_eq!(
        (status, header(&headers, "location")),
        (308, Some("/demo/"))
    );
    let (status, _, _) = get(s.http, "/demo/nope.js", "").await;
    assert_eq!(status, 404);
    s.stop().await;
}

/// Every URL a page or module names for loading: `src`/`href` attributes and import-map
/// entries (HTML), `import … from '…'`, `import '…'`, `export … from '…'` and `import('…')`
/// (JavaScript), `url(…)` and `@import` (CSS).
fn references(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let quoted_after = |marker: &str, out: &mut Vec<String>| {
        for (at, _) in body.match_indices(marker) {
            let rest = body[at + marker.len()..].trim_start();
            let rest = rest.strip_prefix('(').unwrap_or(rest).trim_start();
            let before = body[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                continue; // part of a longer name (`Array.from`, `reimport`)
            }
            let Some(q) = rest.chars().next().filter(|c| "'\"".contains(*c)) else {
                continue;
            };
            if let Some(end) = rest[1..].find(q) {
                let url = &rest[1..=end];
                if !url.is_empty() && !url.contains(char::is_whitespace) {
                    out.push(url.to_owned());
                }
            }
        }
    };
    for marker in ["src=", "href=", "from", "import", "url(", "@import"] {
        quoted_after(marker, &mut out);
    }
    if let Some(start) = body.find(r#"<script type="importmap">"#) {
        let json = &body[start + 25..];
        let map: serde_json::Value =
            serde_json::from_str(&json[..json.find("</script>").unwrap()]).unwrap();
        for url in map["imports"].as_object().unwrap().values() {
            out.push(url.as_str().unwrap().to_owned());
        }
    }
    out
}

/// `reference` from the document or module at `base` (a path on the server): a path on this
/// server, or `None` for a URL elsewhere (a scheme, or `//host`). Bare specifiers (`yjs`)
/// come from the import map and are skipped here, since the map's entry is a reference too.
fn on_this_server(base: &str, reference: &str) -> Option<Option<String>> {
    if reference.contains("://") || reference.starts_with("//") || reference.contains(':') {
        return Some(None);
    }
    if reference.starts_with('/') {
        return Some(Some(reference.to_owned()));
    }
    if !reference.starts_with("./") && !reference.starts_with("../") && !reference.contains('.') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for seg in reference.split('/') {
        match seg {
            "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    Some(Some(parts.join("/")))
}

/// The demo as a browser would load it with the default settings: the page, its import map,
/// every module it imports (transitively) and the stylesheet, all from this server, all 200.
/// (The headless-Chromium suite, e2e/demo.mjs, checks the same on the requests a real
/// browser makes.)
#[tokio::test]
async fn the_demo_loads_everything_from_this_server() {
    let s = TestServer::start().await;
    let mut queue = vec!["/demo/".to_owned()];
    let mut seen = std::collections::BTreeSet::new();
    let mut elsewhere = Vec::new();
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let (status, _, body) = get(s.http, &path, "").await;
        assert_eq!(status, 200, "{path}");
        let body = String::from_utf8(body).unwrap();
        for r in references(&body) {
            match on_this_server(&path, &r) {
                Some(Some(next)) => queue.push(next),
                Some(None) => elsewhere.push(format!("{path} loads {r}")),
                None => {}
            }
        }
    }
    assert!(elsewhere.is_empty(), "loads off the server: {elsewhere:?}");
    for expected in [
        "/demo/app.js",
        "/demo/editor.js",
        "/demo/style.css",
        "/demo/switchboard-yjs.js",
        "/sdk/switchboard.js",
        "/demo/yjs.js",
    ] {
        assert!(seen.contains(expected), "{expected} not reached: {seen:?}");
    }
    // Yjs is the committed build of the pinned npm package, embedded in the binary.
    let (_, headers, body) = get(s.http, "/demo/yjs.js", "").await;
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(body, repo_file("clients/js/dist/yjs.js"));
    assert!(String::from_utf8(body).unwrap().starts_with("// Yjs 13."));
    s.stop().await;
}

#[test]
fn the_reference_reader_sees_what_a_browser_would_load() {
    let html = r#"<link href="style.css"><script type="importmap">{"imports": {"yjs": "https://cdn.example/yjs"}}</script><script src="app.js"></script>"#;
    let refs = references(html);
    assert!(refs.contains(&"style.css".to_owned()) && refs.contains(&"app.js".to_owned()));
    assert_eq!(
        on_this_server("/demo/", "https://cdn.example/yjs"),
        Some(None),
        "an import map pointing elsewhere is caught"
    );
    assert_eq!(
        on_this_server("/demo/app.js", "../sdk/switchboard.js"),
        Some(Some("/sdk/switchboard.js".into()))
    );
    assert_eq!(on_this_server("/demo/app.js", "yjs"), None);
    let js = "import * as Y from 'yjs';\nimport { a } from \"./editor.js\";\nconst m = await import('//cdn.example/x.js');";
    let refs = references(js);
    assert!(refs.contains(&"./editor.js".to_owned()), "{refs:?}");
    assert!(refs.contains(&"//cdn.example/x.js".to_owned()), "{refs:?}");
}

#[tokio::test]
async fn demo_off_serves_neither_the_sdk_nor_the_demo() {
    let s = TestServer::with(Config {
        demo: false,
        ..test_config()
    })
    .await;
    for path in ["/sdk/switchboard.js", "/demo/", "/demo", "/demo/app.js"] {
        let (status, _, body) = get(s.http, path, "").await;
        assert_eq!(status, 404, "{path}");
        assert!(
            String::from_utf8_lossy(&body).contains("Not found"),
            "{path}"
        );
    }
    // The rest of the server is untouched.
    let (status, _) = http("GET", s.http, "/api/health", None, &[]).await;
    assert_eq!(status, 200);
    s.stop().await;
}

#[test]
fn demo_settings_are_parsed_and_validated() {
    let parse = |v: &[&str]| {
        let mut argv = vec!["switchboard"];
        argv.extend_from_slice(v);
        Config::parse_without_env(argv)
    };
    let c = parse(&[]).unwrap();
    assert!(c.demo);
    assert_eq!(c.demo_yjs_url, "/demo/yjs.js");
    assert!(!parse(&["--demo", "off"]).unwrap().demo);
    assert!(parse(&["--demo", "on"]).unwrap().demo);
    assert!(parse(&["--demo", "maybe"]).is_err());
    let e = parse(&["--demo-yjs-url", "javascript:alert(1)"]).unwrap_err();
    assert!(e.to_string().contains("DEMO_YJS_URL"), "{e}");
    // Every bad setting at once, as for the others.
    let e =
        Config::load_from(["switchboard", "--demo", "maybe", "--demo-yjs-url", "x"]).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("DEMO") && text.contains("maybe"), "{text}");
    assert!(text.contains("DEMO_YJS_URL"), "{text}");
    assert_eq!(
        parse(&["--demo-yjs-url", "/static/yjs.mjs"])
            .unwrap()
            .demo_yjs_url,
        "/static/yjs.mjs"
    );
    // The metrics endpoint cannot take over the demo's routes.
    assert!(parse(&["--metrics-route", "/demo/"]).is_err());
    assert!(parse(&["--metrics-route", "/sdk/switchboard.js"]).is_err());
}

/// Issue 22: the demo and the SDK are served with a Content-Security-Policy (this server's
/// scripts, the page's import map by its hash, connections to this server only) and may not
/// be framed, so that a peer's data can make no viewer's browser fetch anything elsewhere.
#[tokio::test]
async fn the_demo_and_the_sdk_send_a_content_security_policy_and_refuse_framing() {
    let s = TestServer::start().await;
    for path in [
        "/demo/",
        "/demo/app.js",
        "/demo/yjs.js",
        "/sdk/switchboard.js",
    ] {
        let (status, headers, _) = get(s.http, path, "").await;
        assert_eq!(status, 200, "{path}");
        let csp = header(&headers, "content-security-policy").unwrap_or_default();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self' 'sha256-"),
            "{path}: {csp}"
        );
        assert!(
            csp.contains("connect-src 'self';") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(header(&headers, "x-frame-options"), Some("DENY"), "{path}");
    }
    s.stop().await;
}
