//! The HTTP JSON bodies, through the real routers (`http_app`, every layer included) with
//! `tower::ServiceExt::oneshot`, as a client's request reaches them.
//!
//! Input: `[sel][body…]`. `sel % 5` picks the route: `POST /api/auth/token`, `POST
//! /api/auth/validate`, `POST /api/rooms`, `POST /rendezvous/redeem`, or `GET` and
//! `DELETE /api/rooms/{id}` with the body as the (percent-encoded) id. Bits 3–4 pick the
//! Content-Type (JSON, JSON with a charset, text/plain, none); bit 5 sends it to a
//! production server, with the admin key when bit 6 is set.
//!
//! Checked: no answer is a server error (5xx) and every JSON answer is JSON; a room the API
//! creates can be read and deleted by the id it answers with; a token the API issues is
//! valid for its user and room at the validate route; the validate route accepts a token
//! only for the user and room it names.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use switchboard::{AppState, Config, Shutdown};
use tower::ServiceExt as _;

const ADMIN: &str = "fuzz-admin-key";

struct Servers {
    rt: tokio::runtime::Runtime,
    dev: Router,
    prod: Router,
}

fn servers() -> &'static Servers {
    static S: OnceLock<Servers> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        // No HTTP rate limit, no creation budget and no guessing throttle: millions of
        // requests come from one address here (a throttled validate of an issued token
        // is not the refusal the checks look for; tests/security.rs covers the throttle).
        let base = [
            "switchboard",
            "--http-requests-per-second=0",
            "--room-creations-per-minute=0",
            "--auth-failures-per-minute=0",
        ];
        let dev = Config::parse_without_env(base).expect("valid");
        let prod = Config::parse_without_env(base.into_iter().chain([
            "--production",
            "--admin-api-key",
            ADMIN,
            "--auth-secret",
            "fuzz-secret-0123456789",
        ]))
        .expect("valid");
        let (dev, prod) = rt.block_on(async {
            (
                switchboard::http::http_app(AppState::new(dev, Shutdown::new())),
                switchboard::http::http_app(AppState::new(prod, Shutdown::new())),
            )
        });
        Servers { rt, dev, prod }
    })
}

/// Percent-encodes every byte but unreserved ones (RFC 3986), for a path segment.
fn encode_segment(s: &[u8]) -> String {
    s.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(serde::Deserialize)]
struct Named {
    #[serde(rename = "userId", default)]
    user_id: Option<Value>,
    #[serde(rename = "roomId", default)]
    room_id: Option<Value>,
}

struct Answer {
    status: StatusCode,
    json: Option<Value>,
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    admin: bool,
    body: Vec<u8>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    if admin {
        req = req.header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    }
    let req = req.body(Body::from(body)).expect("a valid request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("a bounded body");
    assert!(
        !status.is_server_error(),
        "{uri}: {status}: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let json = is_json.then(|| {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{uri}: a JSON answer that is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })
    });
    Answer { status, json }
}

fn str_field<'a>(v: &'a Option<Value>, key: &str) -> Option<&'a str> {
    v.as_ref()?.get(key)?.as_str()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let s = servers();
    let (app, prod) = if sel & 0x20 != 0 {
        (&s.prod, true)
    } else {
        (&s.dev, false)
    };
    let admin = prod && sel & 0x40 != 0;
    let ct = match (sel >> 3) & 3 {
        0 => Some("application/json"),
        1 => Some("application/json; charset=utf-8"),
        2 => Some("text/plain"),
        _ => None,
    };
    // The fields the checks compare, read as a handler reads them (what else the body
    // carries is skipped, as the handlers skip it).
    let request: Option<Value> = serde_json::from_slice::<Named>(body)
        .ok()
        .map(|n| json!({"userId": n.user_id, "roomId": n.room_id}));
    s.rt.block_on(async {
        match sel % 5 {
            0 => {
                let a = call(
                    app,
                    Method::POST,
                    "/api/auth/token",
                    ct,
                    admin,
                    body.to_vec(),
                )
                .await;
                if a.status == StatusCode::OK {
                    let token = str_field(&a.json, "token").expect("a token");
                    let (user, room) = (
                        str_field(&a.json, "userId").expect("userId"),
                        str_field(&a.json, "roomId").expect("roomId"),
                    );
                    assert_eq!(Some(user), str_field(&request, "userId"));
                    assert_eq!(Some(room), str_field(&request, "roomId"));
                    let check = json!({"token": token, "userId": user, "roomId": room});
                    let v = call(
                        app,
                        Method::POST,
                        "/api/auth/validate",
                        Some("application/json"),
                        false,
                        check.to_string().into_bytes(),
                    )
                    .await;
                    assert_eq!(v.status, StatusCode::OK, "an issued token is refused");
                    assert_eq!(
                        v.json.as_ref().and_then(|j| j.get("valid")),
                        Some(&json!(true))
                    );
                }
            }
            1 => {
                let a = call(
                    app,
                    Method::POST,
                    "/api/auth/validate",
                    ct,
                    false,
                    body.to_vec(),
                )
                .await;
                if a.status == StatusCode::OK {
                    assert_eq!(
                        a.json.as_ref().and_then(|j| j.get("valid")),
                        Some(&json!(true))
                    );
                    for key in ["userId", "roomId"] {
                        let asked = request.as_ref().and_then(|r| r.get(key));
                        if let Some(asked) = asked.filter(|a| a.is_string()) {
                            assert_eq!(
                                a.json.as_ref().and_then(|j| j.get(key)),
                                Some(asked),
                                "a token accepted for another {key}"
                            );
                        }
                    }
                }
            }
            2 => {
                let a = call(app, Method::POST, "/api/rooms", ct, admin, body.to_vec()).await;
                if a.status == StatusCode::CREATED {
                    let j = a.json.as_ref().expect("JSON");
                    let id = j
                        .get("roomId")
                        .or_else(|| j.get("data").and_then(|d| d.get("roomId")))
                        .and_then(Value::as_str)
                        .expect("the created room's id")
                        .to_owned();
                    let uri = format!("/api/rooms/{}", encode_segment(id.as_bytes()));
                    let got = call(app, Method::GET, &uri, None, admin, Vec::new()).await;
                    assert_eq!(got.status, StatusCode::OK, "created room {id:?} not found");
                    assert_eq!(str_field(&got.json, "roomId"), Some(id.as_str()));
                    let del = call(app, Method::DELETE, &uri, None, admin, Vec::new()).await;
                    assert_eq!(
                        del.status,
                        StatusCode::OK,
                        "created room {id:?} not deleted"
                    );
                    let gone = call(app, Method::GET, &uri, None, admin, Vec::new()).await;
                    assert_eq!(
                        gone.status,
                        StatusCode::NOT_FOUND,
                        "deleted room {id:?} still there"
                    );
                }
            }
            3 => {
                let a = call(
                    app,
                    Method::POST,
                    "/rendezvous/redeem",
                    ct,
                    false,
                    body.to_vec(),
                )
                .await;
                // No code has been issued, so none can be redeemed.
                assert_ne!(a.status, StatusCode::OK, "redeemed a code never issued");
            }
            _ => {
                let uri = format!("/api/rooms/{}", encode_segment(body));
                for method in [Method::GET, Method::DELETE] {
                    let a = call(app, method, &uri, None, admin, Vec::new()).await;
                    assert_ne!(a.status, StatusCode::OK, "a room that was never created");
                }
            }
        }
    });
});
