//! The WebSocket endpoints: each admits the request ([`crate::admission`]), checks the
//! token its URL carries (`?token=`; required for the dialects `REQUIRE_TOKEN` names, and
//! bound to the room the URL names) with the command layer's one token check
//! ([`check_token`]), rendering a refusal as an HTTP status, picks the dialect's codec
//! from the route (and for `/ws`, from the query), and hands the upgraded socket to the
//! driver ([`crate::transport::ws`]).
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

use switchboard_core::RoomId;

use super::error::{ApiError, plain_text as text};
use crate::auth::TokenError;
use crate::client_ip::ClientIp;
use crate::command::{Identity, TokenCheck, TokenRefusal, check_token};
use crate::dialect::Codec;
use crate::dialect::nt::{Nt, Side};
use crate::dialect::octate::Octate;
use crate::dialect::rendezvous::{MAX_ROOM, Rendezvous};
use crate::dialect::ywebrtc::{YWebrtc, topic_room};
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

/// Admits an upgrade request and runs `codec`'s dialect on it, as `identity`.
fn accept<C: Codec>(
    app: AppState,
    client: ClientIp,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
    codec: C,
    identity: Option<Identity>,
) -> Response {
    match app.admission.admit(headers, client.0) {
        Ok(slot) => transport::ws::upgrade(app, ws, slot, codec, identity),
        Err(refusal) => refusal.into_response(),
    }
}

/// `?token=` of a request's URL.
fn url_token(uri: &Uri) -> Option<String> {
    let Query(params) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    params.get("token").filter(|t| !t.is_empty()).cloned()
}

/// Who `token` authenticates, for a connection of `dialect` to `room` (the room the URL
/// names; `None` takes the token's), by [`check_token`]. A dialect `REQUIRE_TOKEN` names
/// must present one.
///
/// # Errors
/// 401 without a required token or with a bad one; 403 for a token of another room; 429
/// once the client's failed guesses are spent.
pub fn authenticate(
    app: &AppState,
    client: ClientIp,
    dialect: &'static str,
    token: Option<&str>,
    room: Option<&RoomId>,
) -> Result<Option<Identity>, ApiError> {
    let check = TokenCheck {
        token,
        required: app.config.requires_token(dialect),
        user: None,
        room: room.map(RoomId::as_str),
    };
    let claims = check_token(&app.auth, client.0, check).map_err(|e| match e {
        TokenRefusal::Missing => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "This endpoint requires a token: ?token=<JWT from POST /api/auth/token>",
        )
        .code("token_required"),
        TokenRefusal::Refused(e) => {
            let status = match e {
                TokenError::Throttled => StatusCode::TOO_MANY_REQUESTS,
                TokenError::RoomMismatch(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            ApiError::new(status, e.to_string()).code(e.code())
        }
    })?;
    Ok(claims.map(Identity::from))
}

/// OctateCode (426 without an upgrade). A `?token=` is used by an `auth` message that
/// carries none (the token binds there, to the user and room `auth` names).
pub async fn octate(
    State(app): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    uri: Uri,
    ws: MaybeUpgrade,
) -> Response {
    match ws.0 {
        Some(ws) => {
            let codec = Octate::with_url_token(url_token(&uri));
            accept(app, client, &headers, ws, codec, None)
        }
        None => StatusCode::UPGRADE_REQUIRED.into_response(),
    }
}

/// `GET /`: OctateCode for an upgrade, the server's JSON description otherwise.
pub async fn root(
    state: State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    uri: Uri,
    ws: MaybeUpgrade,
) -> Response {
    if ws.0.is_some() {
        return octate(state, client, headers, uri, ws).await;
    }
    super::api::root(state).await.into_response()
}

/// `GET /y-webrtc` (426 without an upgrade). With `?token=`, the connection may subscribe
/// to the token's room (as a topic) only.
pub async fn ywebrtc(
    State(app): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    uri: Uri,
    ws: MaybeUpgrade,
) -> Response {
    let Some(ws) = ws.0 else {
        return StatusCode::UPGRADE_REQUIRED.into_response();
    };
    let identity = match authenticate(
        &app,
        client,
        YWebrtc::NAME,
        url_token(&uri).as_deref(),
        None,
    ) {
        Ok(id) => id.map(|id| Identity {
            room: topic_room(id.room.as_str()),
            ..id
        }),
        Err(e) => return e.into_response(),
    };
    accept(app, client, &headers, ws, YWebrtc::default(), identity)
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
        let token = params.get("token").map(String::as_str);
        let identity = match authenticate(
            &app,
            client,
            Rendezvous::NAME,
            token,
            Some(&RoomId::new(room)),
        ) {
            Ok(id) => id,
            Err(e) => return e.into_response(),
        };
        let codec = Rendezvous::new(&app.config, room, params.get("key").map(String::as_str));
        return counted(app, client, &headers, ws, codec, identity);
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
    let codec = Nt::new(&app_id, side);
    let token = params.get("token").map(String::as_str);
    let identity = match authenticate(&app, client, Nt::NAME, token, Some(codec.room())) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    counted(app, client, &headers, ws, codec, identity)
}

/// [`accept`] for `/ws`, counted in `nt_ws_connections_total`.
fn counted<C: Codec>(
    app: AppState,
    client: ClientIp,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
    codec: C,
    identity: Option<Identity>,
) -> Response {
    match app.admission.admit(headers, client.0) {
        Ok(slot) => {
            app.metrics.nt.ws_connections.inc();
            transport::ws::upgrade(app, ws, slot, codec, identity)
        }
        Err(refusal) => refusal.into_response(),
    }
}
