//! nt-backend-wrtc's rendezvous codes over HTTP, as deployed: `POST /rendezvous/code` (a
//! fresh 4-digit code for a fresh appID, live for `ROOM_TTL`) and `POST /rendezvous/redeem`
//! (the code's appID, once), with the original's plain-text errors. The codes themselves
//! live in a [`CodeBook`](switchboard_core::CodeBook), shared by the cluster's nodes when
//! there is one.

use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Deserialize;
use switchboard_core::CodeError;

use super::error::plain_text as text;
use crate::dialect::push_json_str;
use crate::state::AppState;

/// The two routes (any method: the others get 405, as the original's).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rendezvous/code", any(code))
        .route("/rendezvous/redeem", any(redeem))
}

/// RFC 3339 UTC with nanoseconds, trailing zeros trimmed (Go's `RFC3339Nano`).
pub fn rfc3339(t: SystemTime) -> String {
    let full = humantime::format_rfc3339_nanos(t).to_string();
    // `…:20.251574990Z` → `…:20.25157499Z`; `…:00.000000000Z` → `…:00Z`.
    let (main, frac) = full
        .trim_end_matches('Z')
        .split_once('.')
        .unwrap_or((&full, ""));
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}Z", main.trim_end_matches('Z'))
    } else {
        format!("{main}.{frac}Z")
    }
}

/// 405 for any method but POST, naming the one allowed (RFC 9110 requires `Allow`).
fn method_not_allowed() -> Response {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}

fn json_ok(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `POST /rendezvous/code`.
async fn code(State(app): State<AppState>, method: Method) -> Response {
    if method != Method::POST {
        return method_not_allowed();
    }
    let app_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let issued = match app.codes.issue(app_id, app.config.room_ttl.get()).await {
        Ok(c) => c,
        Err(CodeError::Exhausted) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "code-space exhausted\n");
        }
        Err(CodeError::Unavailable(_)) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, "unavailable\n");
        }
    };
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(br#"{"appID":"#);
    push_json_str(&mut buf, &issued.app_id);
    buf.extend_from_slice(format!(r#","code":"{:04}","expiresAt":"#, issued.code).as_bytes());
    push_json_str(&mut buf, &rfc3339(issued.expires));
    buf.extend_from_slice(b"}\n");
    json_ok(buf)
}

#[derive(Deserialize)]
struct Redeem {
    code: String,
}

/// `POST /rendezvous/redeem` `{"code":"NNNN"}`.
async fn redeem(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return method_not_allowed();
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad content-type\n");
    }
    let code = match serde_json::from_slice::<Redeem>(&body) {
        Ok(r) if (4..=8).contains(&r.code.len()) && r.code.bytes().all(|b| b.is_ascii_digit()) => {
            r.code
        }
        _ => return text(StatusCode::BAD_REQUEST, "bad request\n"),
    };
    // Codes are issued as 4 digits; a longer string names no live code.
    let Some(n) = code.parse::<u32>().ok().filter(|_| code.len() == 4) else {
        return text(StatusCode::GONE, "gone\n");
    };
    let Ok(found) = app.codes.redeem(n).await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "unavailable\n");
    };
    let Some(c) = found else {
        return text(StatusCode::GONE, "gone\n");
    };
    let mut buf = Vec::with_capacity(96);
    buf.extend_from_slice(br#"{"appID":"#);
    push_json_str(&mut buf, &c.app_id);
    buf.extend_from_slice(br#","expiresAt":"#);
    push_json_str(&mut buf, &rfc3339(c.expires));
    buf.extend_from_slice(b"}\n");
    json_ok(buf)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn rfc3339_formats_like_go() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 251_574_990);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.25157499Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
