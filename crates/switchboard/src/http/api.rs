//! The OctateCode HTTP API (JSON everywhere): the monitoring, auth, room and maintenance
//! endpoints of seeds 000–002 on `PORT` (where the seed and the original code disagree, the
//! response carries both shapes when that costs nothing; see `docs/PROTOCOL.md`). Rooms are
//! read and changed through the membership service, so in a cluster they are cluster-wide.
//!
//! | Route | Auth in production |
//! |---|---|
//! | `GET /`, `/api/health` (`/health`), `/api/info` (`/info`), `/api/ice-servers` | none |
//! | `GET /api/stats` (`/stats`) | admin |
//! | `POST /api/auth/token` | admin |
//! | `POST /api/auth/validate` | none |
//! | `GET/POST /api/rooms`, `GET/DELETE /api/rooms/{id}`, `…/stats`, `…/peers` | admin |
//! | `POST /api/maintenance/cleanup`, `POST /api/maintenance/gc` | admin |
//!
//! "Admin" means `Authorization: Bearer <ADMIN_API_KEY>`; in development these are open.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::{CreateOptions, PeerId, RoomId, RoomSnapshot, unix_millis};

use super::error::{ApiError, JsonBody};
use super::{Admin, creation_error, unavailable};
use crate::client_ip::ClientIp;
use crate::command::{self, TokenCheck, TokenRefusal, check_token};
use crate::dialect::octate::{PeerInfo, RoomMetadata};
use crate::memory::{self, Pressure};
use crate::state::AppState;

const NAME: &str = "Switchboard";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The API routes (the WebSocket routes are [`super::upgrade`]'s).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/health", get(health))
        .route("/health", get(health))
        .route("/api/stats", get(stats))
        .route("/stats", get(stats))
        .route("/api/info", get(info))
        .route("/info", get(info))
        .route("/api/auth/token", post(issue_token))
        .route("/api/auth/validate", post(validate_token))
        .route("/api/rooms", get(list_rooms).post(create_room))
        .route("/api/rooms/{room_id}", get(get_room).delete(delete_room))
        .route("/api/rooms/{room_id}/stats", get(room_stats))
        .route("/api/rooms/{room_id}/peers", get(room_peers))
        .route("/api/users/{user_id}/revoke", post(revoke_user))
        .route("/api/maintenance/cleanup", post(cleanup))
        .route("/api/maintenance/gc", post(gc))
        .route("/api/ice-servers", get(ice_servers))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IceServersQuery {
    #[serde(default)]
    user_id: Option<String>,
}

/// `GET /api/ice-servers[?userId=]`: STUN/TURN servers with TURN REST credentials.
async fn ice_servers(
    State(app): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<IceServersQuery>,
) -> Json<Value> {
    Json(crate::turn::response(&app.config, q.user_id.as_deref()))
}

/// `GET /` when the request is not a WebSocket upgrade.
pub async fn root(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rooms = app
        .membership
        .stats()
        .await
        .map_err(|e| unavailable(&e))?
        .rooms;
    Ok(Json(json!({
        "name": NAME,
        "status": "running",
        "version": VERSION,
        "rooms": rooms,
        "docs": "/api/info",
    })))
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

fn memory_json(app: &AppState) -> Value {
    let rss = memory::current_rss();
    json!({
        "rss": rss,
        "rssMB": mb(rss),
        "warningMB": mb(app.config.memory_warning_bytes()),
        "criticalMB": mb(app.config.memory_critical_bytes()),
        "pressure": match app.memory.pressure() {
            Pressure::Normal => "normal",
            Pressure::Warning => "warning",
            Pressure::Critical => "critical",
        },
    })
}

async fn health(State(app): State<AppState>) -> Json<Value> {
    // Health answers even when the cluster backend does not: then it reports this node's own
    // rooms and says it is degraded.
    let (status, s) = match app.membership.stats().await {
        Ok(s) if app.shutdown.is_draining() => ("draining", s),
        Ok(s) => ("ok", s),
        Err(_) => ("degraded", app.registry.stats_now()),
    };
    Json(json!({
        "status": status,
        "timestamp": unix_millis(),
        "uptime": app.started.elapsed().as_millis() as u64,
        "rooms": s.rooms,
        "totalPeers": s.peers,
        "memory": memory_json(&app),
    }))
}

async fn stats(State(app): State<AppState>, admin: Admin) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    let s = app.membership.stats().await.map_err(|e| unavailable(&e))?;
    Ok(Json(json!({
        "server": {
            "uptime": app.started.elapsed().as_millis() as u64,
            "startedAt": app.started_ms,
            "activeRooms": s.rooms,
            "totalConnections": s.peers,
            "connectedClients": app.admission.open_connections(),
            "backplane": app.membership.name(),
            "node": app.node_id,
            "admittingRooms": !app.shutdown.is_draining() && !app.memory.is_critical(),
        },
        "memory": memory_json(&app),
        "thresholds": {
            "warning": mb(app.config.memory_warning_bytes()),
            "critical": mb(app.config.memory_critical_bytes()),
            "unit": "MB",
        },
        "limits": {
            "maxPeersPerRoom": app.config.max_peers_per_room,
            "maxRooms": app.config.max_rooms,
            "maxFrameBytes": app.config.max_frame_bytes.get(),
            "maxMessagesPerSecond": app.config.max_messages_per_second,
            "maxConnectionsPerIp": app.config.max_connections_per_ip,
            "maxConnections": app.admission.max_connections(),
        },
        "operations": {
            "total": app.metrics.signals_relayed.get(),
            "note": "Signals this node relayed since it started (offers, answers, ICE candidates, room broadcasts, mailbox items); data then flows peer to peer",
        },
        "timestamp": unix_millis(),
    })))
}

async fn info(State(app): State<AppState>, admin: Admin) -> Json<Value> {
    // The effective limits and deadlines, for the admin (everyone in development).
    let limits = admin.granted().then(|| {
        let max = app.admission.max_connections();
        app.config
            .effective(max)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<serde_json::Map<String, Value>>()
    });
    Json(json!({
        "limits": limits,
        "name": NAME,
        "version": VERSION,
        "node": app.node_id,
        "backplane": app.membership.name(),
        "description": "WebRTC signaling and rendezvous server",
        "features": [
            "Rooms with targeted SDP/ICE relay",
            "JWT (HS256) authentication",
            "Heartbeats, idle and empty room cleanup",
            "Memory protection and limits",
            "Prometheus metrics",
        ],
        "dialects": ["octate", "socketio", "rendezvous", "nt", "ywebrtc"],
        "endpoints": [
            "GET /api/health", "GET /api/stats", "GET /api/info", "GET /api/openapi.json",
            "POST /api/auth/token", "POST /api/auth/validate",
            "GET /api/rooms", "POST /api/rooms", "GET /api/rooms/{roomId}", "DELETE /api/rooms/{roomId}",
            "GET /api/rooms/{roomId}/stats", "GET /api/rooms/{roomId}/peers",
            "POST /api/maintenance/cleanup", "POST /api/maintenance/gc",
            "GET /healthz", "GET /readyz", format!("GET {}", app.config.metrics_route),
            "GET /api/ice-servers",
            "WS / (SIGNALING_PORT, any path; /signaling on PORT)",
            "Socket.io /socket.io/ (SOCKETIO_PORT and PORT)",
            "GET /health, GET|POST /api/rooms, GET /api/rooms/{roomId} (SOCKETIO_PORT, seed 003 shapes)",
            "WS /ws?room=CODE[&key=K] (seed 004 rendezvous)",
            "WS /ws?appID=UUID&side=A|B (deployed nt-backend-wrtc)",
            "POST /rendezvous/code, POST /rendezvous/redeem",
            "WS /y-webrtc (y-webrtc signaling)",
            "GET /sdk/switchboard.js, GET /demo/ (DEMO=on)",
        ],
    }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    room_id: Option<String>,
}

async fn issue_token(
    State(app): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<TokenRequest>,
) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    let (Some(user), Some(room)) = (
        body.user_id.filter(|s| !s.is_empty()),
        body.room_id.filter(|s| !s.is_empty()),
    ) else {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "Missing required fields")
                .code("missing_fields")
                .with(json!({ "required": ["userId", "roomId"] })),
        );
    };
    check_id("userId", &user)?;
    check_id("roomId", &room)?;
    let issued = app.auth.issue(&user, &room);
    let ttl = app.auth.ttl().as_secs();
    Ok(Json(json!({
        "status": "success",
        "token": issued.token,
        "userId": user,
        "roomId": room,
        "expiresIn": ttl,
        "expiresAt": issued.claims.exp * 1000,
        "message": "Use this token when connecting to WebSocket signaling server",
        "timestamp": unix_millis(),
    })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ValidateRequest {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    room_id: Option<String>,
}

async fn validate_token(
    State(app): State<AppState>,
    client: ClientIp,
    JsonBody(body): JsonBody<ValidateRequest>,
) -> Result<Json<Value>, ApiError> {
    let missing = || ApiError::new(StatusCode::BAD_REQUEST, "Missing token").code("missing_fields");
    let check = TokenCheck {
        token: body.token.as_deref().filter(|t| !t.is_empty()),
        required: true,
        user: body.user_id.as_deref(),
        room: body.room_id.as_deref(),
    };
    let claims =
        check_token(&app.auth, client.0, check).and_then(|c| c.ok_or(TokenRefusal::Missing));
    match claims {
        Ok(c) => Ok(Json(json!({
            "valid": true,
            "userId": c.sub,
            "roomId": c.room,
            "expiresAt": c.exp * 1000,
            "timestamp": unix_millis(),
        }))),
        Err(TokenRefusal::Missing) => Err(missing()),
        Err(TokenRefusal::Refused(e)) => {
            // A throttled client is refused as everywhere else (429), not told "invalid".
            let status = if e == crate::auth::TokenError::Throttled {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNAUTHORIZED
            };
            Err(ApiError::new(status, e.to_string())
                .code(e.code())
                .with(json!({ "valid": false })))
        }
    }
}

async fn list_rooms(State(app): State<AppState>, admin: Admin) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    let rooms = app.membership.rooms().await.map_err(|e| unavailable(&e))?;
    let list: Vec<Value> = rooms
        .iter()
        .map(|r| {
            let m = RoomMetadata::from_snapshot(r);
            let mut v = serde_json::to_value(&m).expect("metadata serialises");
            if let Some(o) = v.as_object_mut() {
                o.remove("peers");
            }
            v
        })
        .collect();
    Ok(Json(
        json!({ "count": list.len(), "rooms": list, "timestamp": unix_millis() }),
    ))
}

/// Both body shapes: the seed's camelCase and the original code's snake_case.
#[derive(Deserialize, Default)]
struct CreateRoomRequest {
    #[serde(default, rename = "roomId")]
    room_id_camel: Option<String>,
    #[serde(default)]
    room_id: Option<String>,
    #[serde(default, rename = "roomName")]
    room_name_camel: Option<String>,
    #[serde(default)]
    room_name: Option<String>,
    #[serde(default, rename = "hostId")]
    host_id_camel: Option<String>,
    #[serde(default)]
    host_id: Option<String>,
    #[serde(default, rename = "hostName")]
    host_name: Option<String>,
    #[serde(default, rename = "fileId")]
    file_id: Option<String>,
}

async fn create_room(
    State(app): State<AppState>,
    client: ClientIp,
    admin: Admin,
    JsonBody(body): JsonBody<CreateRoomRequest>,
) -> Result<Response, ApiError> {
    admin.require()?;
    let snake = body.room_id.is_some();
    let Some(id) = body
        .room_id_camel
        .or(body.room_id)
        .filter(|s| !s.is_empty())
    else {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "Missing roomId (or room_id)")
                .code("missing_fields"),
        );
    };
    check_id("roomId", &id)?;
    let mut attributes = Vec::new();
    if let Some(f) = body.file_id {
        attributes.push(("fileId".into(), f.into()));
    }
    let opts = CreateOptions {
        name: body.room_name_camel.or(body.room_name).map(Into::into),
        host: body
            .host_id_camel
            .or(body.host_id)
            .map(|h| h.as_str().into()),
        host_name: body.host_name.map(Into::into),
        attributes,
        creator: Some(client.0),
        // In production the admin key made it: token holders only.
        secured: app.config.is_production(),
        ..CreateOptions::default()
    };
    let snapshot = app
        .membership
        .create_room(RoomId::new(&id), opts)
        .await
        .map_err(|e| creation_error(&app, &e))?;
    let meta =
        serde_json::to_value(RoomMetadata::from_snapshot(&snapshot)).expect("metadata serialises");
    let body = if snake {
        json!({ "message": "Room created", "data": meta, "timestamp": unix_millis() })
    } else {
        let mut m = meta;
        m["timestamp"] = json!(unix_millis());
        m
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn room_or_404(app: &AppState, id: &str) -> Result<RoomSnapshot, ApiError> {
    app.membership
        .room(RoomId::new(id))
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| ApiError::room_not_found(id))
}

/// A room's figures. The seeds' `operationCount` and `bandwidth` are not here: no
/// per-room traffic is measured, and a field a user reads must be measured (the node's
/// relay count is `/api/stats`' `operations.total`).
fn room_stats_json(r: &RoomSnapshot) -> Value {
    json!({
        "roomId": r.id.as_str(),
        "peerCount": r.members.len(),
        "createdAt": r.created_at_ms,
        "lastActivity": r.last_activity_ms,
    })
}

async fn get_room(
    State(app): State<AppState>,
    admin: Admin,
    Path(room_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    let r = room_or_404(&app, &room_id).await?;
    let meta = serde_json::to_value(RoomMetadata::from_snapshot(&r)).expect("metadata serialises");
    // The seed documents RoomMetadata itself; the original code wrapped it as
    // {metadata, stats}. Serve both in one object.
    let mut body = meta.clone();
    body["metadata"] = meta;
    body["stats"] = room_stats_json(&r);
    body["timestamp"] = json!(unix_millis());
    Ok(Json(body))
}

async fn delete_room(
    State(app): State<AppState>,
    admin: Admin,
    Path(room_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    let r = room_or_404(&app, &room_id).await?;
    app.membership
        .delete_room(r.id.clone())
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Json(json!({
        "message": "Room deleted",
        "roomId": room_id,
        "disconnectedPeers": r.members.len(),
        "timestamp": unix_millis(),
    })))
}

/// `POST /api/users/{userId}/revoke` (admin): closes every connection that is this user in
/// any room, on every node (close 1008 `access revoked`; Socket.io: `error` then
/// disconnect). The user may come back with a token that is still valid: revoke the token
/// at its issuer (a new `AUTH_SECRET`, or tokens your backend stops minting).
async fn revoke_user(
    State(app): State<AppState>,
    admin: Admin,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    check_id("userId", &user_id)?;
    let closed = app
        .membership
        .revoke(PeerId::from(user_id.as_str()))
        .await
        .map_err(|e| unavailable(&e))?;
    tracing::info!(user = %user_id, closed, "access revoked");
    Ok(Json(json!({
        "message": "Access revoked",
        "userId": user_id,
        "closedConnections": closed,
        "timestamp": unix_millis(),
    })))
}

async fn room_stats(
    State(app): State<AppState>,
    admin: Admin,
    Path(room_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    let r = room_or_404(&app, &room_id).await?;
    let mut body = room_stats_json(&r);
    body["timestamp"] = json!(unix_millis());
    Ok(Json(body))
}

async fn room_peers(
    State(app): State<AppState>,
    admin: Admin,
    Path(room_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    let r = room_or_404(&app, &room_id).await?;
    let peers: Vec<PeerInfo<'_>> = r.members.iter().map(PeerInfo::from_member).collect();
    Ok(Json(json!({
        "roomId": r.id.as_str(),
        "peerCount": peers.len(),
        "peers": peers,
        "timestamp": unix_millis(),
    })))
}

async fn cleanup(State(app): State<AppState>, admin: Admin) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    let before = app.registry.stats_now();
    let report = app
        .membership
        .sweep(crate::lifecycle::sweep_policy(&app, true));
    let after = app.registry.stats_now();
    Ok(Json(json!({
        "message": "Cleanup triggered",
        "before": { "rooms": before.rooms, "peers": before.peers },
        "after": { "rooms": after.rooms, "peers": after.peers },
        "cleaned": report.empty_removed + report.idle_closed,
        "emptyRoomsRemoved": report.empty_removed,
        "idleRoomsClosed": report.idle_closed,
        "timestamp": unix_millis(),
    })))
}

async fn gc(admin: Admin) -> Result<Json<Value>, ApiError> {
    admin.require()?;
    let before = memory::current_rss();
    let released = memory::release_free_memory();
    let after = memory::current_rss();
    Ok(Json(json!({
        "message": "Garbage collection triggered",
        "before": mb(before),
        "after": mb(after),
        "freed": mb(before.saturating_sub(after)),
        "released": released,
        "unit": "MB",
        "note": "Returns freed allocator memory to the operating system (malloc_trim)",
        "timestamp": unix_millis(),
    })))
}

/// The command layer's bound on ids ([`command::check_id`]), as a 400.
fn check_id(what: &'static str, id: &str) -> Result<(), ApiError> {
    command::check_id(what, id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).code(e.code()))
}
