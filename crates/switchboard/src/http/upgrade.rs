//! The WebSocket endpoints: each admits the request ([`crate::admission`]), picks the
//! dialect's codec from the route (and for `/ws`, from the query), and hands the upgraded
//! socket to the driver ([`crate::transport::ws`]).
//!
//! | Route | Dialect |
//! |---|---|
//! | `GET /` with an upgrade, `/signaling` on `PORT`; any path on `SIGNALING_PORT` | OctateCode |
//! | `/ws?room=CODE[&key=K]` | rendezvous (seed 004 README) |
//! | `/ws?appID=UUID&side=A\|B` | nt-backend-wrtc as deployed |
//! | `/y-webrtc` | y-webrtc |

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::plain_text as text;
use crate::client_ip::ClientIp;
use crate::dialect::Codec;
use crate::dialect::nt::{Nt, Side};
use crate::dialect::octate::Octate;
use crate::dialect::rendezvous::{MAX_ROOM, Rendezvous};
use crate::dialect::ywebrtc::YWebrtc;
use crate::state::AppState;
use crate::transport;

/// An optional WebSocket upgrade: `GET /` is JSON for browsers and signaling for clients.
pub struct MaybeUpgrade(Option<WebSocketUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUpgrade {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            WebSocketUpgrade::from_request_parts(parts, state)
                .await
                .ok(),
        ))
    }
}

/// Admits an upgrade request and runs `codec`'s dialect on it.
fn accept<C: Codec>(
    app: AppState,
    client: ClientIp,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
    codec: C,
) -> Response {
    match app.admission.admit(headers, client.0) {
        Ok(slot) => transport::ws::upgrade(app, ws, slot, codec),
        Err(refusal) => refusal.into_response(),
    }
}

/// OctateCode (426 without an upgrade).
pub async fn octate(
    State(app): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    ws: MaybeUpgrade,
) -> Response {
    match ws.0 {
        Some(ws) => accept(app, client, &headers, ws, Octate::new()),
        None => StatusCode::UPGRADE_REQUIRED.into_response(),
    }
}

/// `GET /`: OctateCode for an upgrade, the server's JSON description otherwise.
pub async fn root(
    state: State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    ws: MaybeUpgrade,
) -> Response {
    if ws.0.is_some() {
        return octate(state, client, headers, ws).await;
    }
    super::api::root(state).await.into_response()
}

/// `GET /y-webrtc` (426 without an upgrade).
pub async fn ywebrtc(
    State(app): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    ws: MaybeUpgrade,
) -> Response {
    match ws.0 {
        Some(ws) => accept(app, client, &headers, ws, YWebrtc),
        None => StatusCode::UPGRADE_REQUIRED.into_response(),
    }
}

/// `GET /ws`: `?room=` is the rendezvous dialect, `?appID=` the nt dialect (checked in the
/// original's order, with its plain-text answers); neither is 400. Every upgrade of either
/// form counts in `nt_ws_connections_total`, as seed 004 documents the series for `/ws`.
pub async fn ws(
    State(app): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    uri: Uri,
    ws: MaybeUpgrade,
) -> Response {
    let Ok(Query(params)) = Query::<HashMap<String, String>>::try_from_uri(&uri) else {
        return text(StatusCode::BAD_REQUEST, "bad query\n");
    };
    if let Some(room) = params.get("room") {
        if room.is_empty() || room.chars().count() > MAX_ROOM {
            return text(StatusCode::BAD_REQUEST, "invalid room\n");
        }
        let Some(ws) = ws.0 else {
            return StatusCode::UPGRADE_REQUIRED.into_response();
        };
        let codec = Rendezvous::new(&app.config, room, params.get("key").map(String::as_str));
        return counted(app, client, &headers, ws, codec);
    }
    if !params.contains_key("appID") {
        return text(StatusCode::BAD_REQUEST, "missing room or appID\n");
    }
    let Some(app_id) = params
        .get("appID")
        .and_then(|a| uuid::Uuid::parse_str(a).ok())
    else {
        return text(StatusCode::BAD_REQUEST, "invalid appID\n");
    };
    let Some(side) = params.get("side").and_then(|s| Side::parse(s)) else {
        return text(StatusCode::BAD_REQUEST, "invalid side\n");
    };
    let Some(ws) = ws.0 else {
        return text(StatusCode::BAD_REQUEST, "Bad Request\n");
    };
    counted(app, client, &headers, ws, Nt::new(&app_id, side))
}

fn counted<C: Codec>(
    app: AppState,
    client: ClientIp,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
    codec: C,
) -> Response {
    match app.admission.admit(headers, client.0) {
        Ok(slot) => {
            app.metrics.nt.ws_connections.inc();
            transport::ws::upgrade(app, ws, slot, codec)
        }
        Err(refusal) => refusal.into_response(),
    }
}
