//! The configuration parser: `Config::load_from` and `Config::parse_without_env` on a
//! command line made of the input's NUL-separated parts (raw bytes: arguments need not be
//! UTF-8), and the value types on each part.
//!
//! Checked: neither panics; they agree (the environment sets none of the settings here);
//! an accepted configuration passes its own validation and can be served: the state, the
//! three listeners' routers, a token and the ICE servers are built from it without a panic,
//! and the routes whose answers are computed from settings answer without a server error;
//! each value type's display parses back to the same value (`parse(display(x)) == x`).
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::str::FromStr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use switchboard::config::{Cidrs, List, Size, Span};
use switchboard::{AppState, Config, Shutdown};
use tower::ServiceExt as _;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // The settings' environment variables would change what load_from reads.
        let ours = [
            "PORT",
            "HOST",
            "NODE_ENV",
            "AUTH_SECRET",
            "ROOM_TTL",
            "MAX_FRAME_BYTES",
        ];
        assert!(
            ours.iter().all(|v| std::env::var_os(v).is_none()),
            "run the config target without Switchboard's environment variables"
        );
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn round_trip<T>(text: &str)
where
    T: FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
    T::Err: std::fmt::Debug,
{
    if let Ok(x) = text.parse::<T>() {
        let shown = x.to_string();
        match shown.parse::<T>() {
            Ok(y) => assert_eq!(x, y, "{text:?} → {shown:?} parses to another value"),
            Err(e) => panic!("{text:?} → {shown:?} does not parse back: {e:?}"),
        }
    }
}

/// Builds what a server builds from `config`, as `main` and `serve` do.
fn serve_with(config: Config) {
    let rt = runtime();
    rt.block_on(async {
        let _ = config.sweep_interval();
        let _ = config.hard_frame_cap();
        let _ = config.limits();
        let _ = config.effective_log_format();
        let _ = (
            config.memory_warning_bytes(),
            config.memory_critical_bytes(),
        );
        let _ = switchboard::turn::response(&config, Some("user"));
        let app = AppState::new(config, Shutdown::new());
        let token = app.auth.issue("user", "room");
        app.auth
            .verify_for(
                std::net::Ipv4Addr::LOCALHOST.into(),
                &token.token,
                "user",
                "room",
            )
            .expect("a token just issued verifies");
        let admin = app.config.admin_api_key.clone();
        let http = switchboard::http::http_app(app.clone());
        let _ = switchboard::http::signaling_app(app.clone());
        let _ = switchboard::http::socketio_app(app);
        // The routes whose answers are computed from settings (TTLs, expiry times).
        for (method, uri, body) in [
            ("POST", "/rendezvous/code", ""),
            ("POST", "/api/auth/token", r#"{"userId":"u","roomId":"r"}"#),
            ("GET", "/api/ice-servers?userId=u", ""),
            ("GET", "/api/health", ""),
            ("GET", "/api/stats", ""),
        ] {
            let mut req = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(key) = &admin {
                req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
            }
            let req = req
                .body(Body::from(body))
                .unwrap_or_else(|e| panic!("the admin key {admin:?} cannot be sent: {e}"));
            let res = http.clone().oneshot(req).await.expect("infallible");
            assert!(
                !res.status().is_server_error()
                    && ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&res.status()),
                "{method} {uri}: {}",
                res.status()
            );
        }
    });
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&OsStr> = data
        .split(|b| *b == 0)
        .take(16)
        .map(OsStr::from_bytes)
        .collect();
    for p in &parts {
        if let Some(text) = p.to_str() {
            round_trip::<Span>(text);
            round_trip::<Size>(text);
            round_trip::<List>(text);
            round_trip::<Cidrs>(text);
        }
    }
    let _ = runtime();
    let args: Vec<&OsStr> = std::iter::once(OsStr::new("switchboard"))
        .chain(parts.iter().copied())
        .collect();
    let loaded = Config::load_from(args.iter().copied());
    let parsed = Config::parse_without_env(args.iter().copied());
    match (&loaded, &parsed) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "load_from and parse_without_env disagree"),
        (Err(_), Err(_)) => {}
        _ => panic!("load_from {loaded:?} but parse_without_env {parsed:?}"),
    }
    if let Ok(config) = parsed {
        config
            .validate()
            .expect("an accepted configuration is valid");
        serve_with(config);
    }
});
