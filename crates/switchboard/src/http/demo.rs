//! The browser SDK and the collaborative-editor demo, embedded in the binary at compile time
//! so that `cargo run --release` serves them on a fresh clone without Node (`DEMO=on`, the
//! default; `DEMO=off` serves neither).
//!
//! | Route | What |
//! |---|---|
//! | `GET /sdk/switchboard.js` | the SDK (`clients/js/dist/switchboard.js`, an ES module exporting `Switchboard`) |
//! | `GET /sdk/switchboard.d.ts` | its type declarations |
//! | `GET /demo` | 308 to `/demo/` |
//! | `GET /demo/` | the demo page, with `DEMO_YJS_URL` injected into its import map |
//! | `GET /demo/{app.js, editor.js, style.css, switchboard-yjs.js}` | the demo's files and the Yjs provider (`clients/yjs/src/index.js`) |
//! | `GET /demo/yjs.js` | Yjs itself (`clients/js/dist/yjs.js`: the pinned npm package, bundled by `clients/js/build.mjs`), the default `DEMO_YJS_URL`, so the demo needs nothing but this server |
//!
//! Every response carries a strong `ETag` (a hash of the body) and `Cache-Control: no-cache`:
//! browsers revalidate and get `304 Not Modified` until the binary serves something else.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::config::Config;

macro_rules! embed {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $path))
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The demo page; its import map holds this placeholder (a JSON string) for `DEMO_YJS_URL`.
const INDEX_HTML: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../demo/index.html"
));
const YJS_URL_PLACEHOLDER: &str = "\"__DEMO_YJS_URL__\"";

/// Static files: route, content type, body.
const FILES: [(&str, &str, &[u8]); 7] = [
    (
        "/sdk/switchboard.js",
        JS,
        embed!("clients/js/dist/switchboard.js"),
    ),
    (
        "/sdk/switchboard.d.ts",
        "application/typescript; charset=utf-8",
        embed!("clients/js/dist/switchboard.d.ts"),
    ),
    ("/demo/app.js", JS, embed!("demo/app.js")),
    ("/demo/editor.js", JS, embed!("demo/editor.js")),
    (
        "/demo/style.css",
        "text/css; charset=utf-8",
        embed!("demo/style.css"),
    ),
    (
        "/demo/switchboard-yjs.js",
        JS,
        embed!("clients/yjs/src/index.js"),
    ),
    ("/demo/yjs.js", JS, embed!("clients/js/dist/yjs.js")),
];

/// One servable body with its validator and its Content-Security-Policy.
struct Asset {
    body: Bytes,
    content_type: &'static str,
    etag: HeaderValue,
    policy: HeaderValue,
}

impl Asset {
    fn new(body: Bytes, content_type: &'static str, policy: HeaderValue) -> Arc<Self> {
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(&body)))
            .expect("hex is a valid header value");
        Arc::new(Self {
            body,
            content_type,
            etag,
            policy,
        })
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let cached = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == "*" || t.trim() == self.etag)
            });
        let headers = [
            (header::ETAG, self.etag.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CONTENT_SECURITY_POLICY, self.policy.clone()),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ];
        if cached {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        (
            headers,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            self.body.clone(),
        )
            .into_response()
    }
}

/// 64-bit FNV-1a: a stable content hash for ETags (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The demo page with `yjs_url` in its import map, as a JSON string that cannot end the
/// `<script>` element.
pub fn index_html(yjs_url: &str) -> String {
    let json = serde_json::Value::from(yjs_url)
        .to_string()
        .replace('<', "\\u003c");
    INDEX_HTML.replacen(YJS_URL_PLACEHOLDER, &json, 1)
}

/// The demo page's Content-Security-Policy: scripts from this server (and from
/// `DEMO_YJS_URL`'s origin when it is elsewhere) plus the page's own import map by its hash,
/// styles and images from this server, connections to this server only (the signaling
/// WebSocket; WebRTC is not governed by CSP), no plugins, no framing. A peer's data can then
/// make no viewer's browser fetch anything elsewhere, whatever slips past the page's own
/// checks.
pub fn policy(html: &str, yjs_url: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut scripts = String::from("'self'");
    if let Some(map) = html
        .split_once(r#"<script type="importmap">"#)
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(map, _)| map)
    {
        let digest = sha2::Sha256::digest(map.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest);
        scripts.push_str(&format!(" 'sha256-{hash}'"));
    }
    if let Some(origin) = origin_of(yjs_url) {
        scripts.push(' ');
        scripts.push_str(origin);
    }
    format!(
        "default-src 'none'; script-src {scripts}; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// `scheme://host[:port]` of an absolute http(s) URL.
fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..url.len() - rest.len() + host_len])
}

fn serve<S: Clone + Send + Sync + 'static>(asset: Arc<Asset>) -> axum::routing::MethodRouter<S> {
    get(move |headers: HeaderMap| async move { asset.respond(&headers) })
}

/// The SDK and demo routes, or no routes when `DEMO=off`.
pub fn router<S: Clone + Send + Sync + 'static>(config: &Config) -> Router<S> {
    if !config.demo {
        return Router::new();
    }
    let html = index_html(&config.demo_yjs_url);
    let csp = HeaderValue::from_str(&policy(&html, &config.demo_yjs_url))
        .expect("the policy is ASCII without control characters");
    let index = Asset::new(Bytes::from(html), "text/html; charset=utf-8", csp.clone());
    let mut routes = Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", serve(index.clone()))
        .route("/demo/index.html", serve(index));
    for (path, content_type, body) in FILES {
        routes = routes.route(
            path,
            serve(Asset::new(
                Bytes::from_static(body),
                content_type,
                csp.clone(),
            )),
        );
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_map_gets_the_configured_url_once_and_escaped() {
        assert_eq!(INDEX_HTML.matches(YJS_URL_PLACEHOLDER).count(), 1);
        let html = index_html("https://cdn.example/yjs@13?x=\"</script>");
        assert!(html.contains(r#""https://cdn.example/yjs@13?x=\"\u003c/script>""#));
        assert!(!html.contains("__DEMO_YJS_URL__"));
    }

    #[test]
    fn the_policy_allows_this_server_the_import_map_and_an_external_yjs_origin_only() {
        let html = index_html("/demo/yjs.js");
        let p = policy(&html, "/demo/yjs.js");
        assert!(p.contains("script-src 'self' 'sha256-"), "{p}");
        assert!(p.contains("frame-ancestors 'none'") && p.contains("default-src 'none'"));
        assert!(p.contains("connect-src 'self';") && p.contains("img-src 'self' data:"));
        let cdn = "https://esm.sh:8443/yjs@13?bundle";
        let p = policy(&index_html(cdn), cdn);
        assert!(p.contains(" https://esm.sh:8443;"), "{p}");
        // The hash is the import map's as served: another URL, another hash.
        assert_ne!(
            policy(&html, "/demo/yjs.js"),
            policy(&index_html("/x.js"), "/x.js")
        );
        assert_eq!(origin_of("http://a.example"), Some("http://a.example"));
        assert_eq!(origin_of("/demo/yjs.js"), None);
    }

    #[test]
    fn etags_follow_content() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }
}
