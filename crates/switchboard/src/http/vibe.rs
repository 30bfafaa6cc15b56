//! The Vibe REST API (seed 003) on `SOCKETIO_PORT`: `GET /health`, `GET|POST /api/rooms`,
//! `GET /api/rooms/{roomId}`, in the original's shapes. Rooms are made here (Vibe clients
//! create one, then `join-room` it over Socket.io) and read through the membership service.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use switchboard_core::{CreateOptions, RoomId, RoomSnapshot};

use super::{Admin, creation_error, unavailable};
use crate::client_ip::ClientIp;
use crate::dialect::ywebrtc::ROOM_PREFIX;
use crate::state::AppState;

/// The room attribute holding the ISO-8601 creation time of rooms made here.
const CREATED_AT: &str = "createdAt";

/// The routes; anything else is 404 `{"error":"Not found"}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/api/rooms", get(list_rooms).post(create_room))
        .route("/api/rooms/{room_id}", get(get_room))
        .fallback(not_found)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds (JavaScript's `toISOString`).
pub fn iso8601(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A room in seed 003's shape. When `names` is false the participants are withheld:
/// `participants` is empty and `participantCount` says how many there are.
fn room_json(r: &RoomSnapshot, names: bool) -> Value {
    let created = r
        .attributes
        .iter()
        .find(|(k, _)| &**k == CREATED_AT)
        .map_or_else(|| iso8601(r.created_at_ms), |(_, v)| v.to_string());
    if names {
        let participants: Vec<&str> = r.members.iter().map(|m| m.id.as_str()).collect();
        json!({ "id": r.id.as_str(), "participants": participants, "createdAt": created })
    } else {
        json!({
            "id": r.id.as_str(),
            "participants": [],
            "participantCount": r.members.len(),
            "createdAt": created,
        })
    }
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "timestamp": iso8601(switchboard_core::unix_millis()) }))
}

/// `GET /api/rooms`: every room (but y-webrtc topics) with its participants. It names
/// participants, so in production it needs the admin key, as on `PORT`.
async fn list_rooms(State(app): State<AppState>, admin: Admin) -> Response {
    if let Err(e) = admin.require() {
        return e.into_response();
    }
    let rooms = match app.membership.rooms().await {
        Ok(r) => r,
        Err(e) => return unavailable(&e).into_response(),
    };
    let rooms: Vec<Value> = rooms
        .iter()
        .filter(|r| !r.id.as_str().starts_with(ROOM_PREFIX))
        .map(|r| room_json(r, true))
        .collect();
    Json(json!({ "rooms": rooms })).into_response()
}

/// `POST /api/rooms`: a fresh room with an unguessable id. Open to anyone (Vibe clients
/// create rooms themselves), within the client's room creation budget — unless Socket.io
/// connections need a token (`REQUIRE_TOKEN`): then it needs the admin key, and the room
/// admits token holders only.
async fn create_room(State(app): State<AppState>, client: ClientIp, admin: Admin) -> Response {
    let secured = app.config.requires_token(crate::dialect::socketio::NAME);
    if secured && let Err(e) = admin.require() {
        return e.into_response();
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = switchboard_core::unix_millis();
    let opts = CreateOptions {
        attributes: vec![(Arc::from(CREATED_AT), Arc::from(iso8601(now).as_str()))],
        // Waits for its first member up to UNJOINED_ROOM_TTL, and goes the moment its last
        // member leaves, as Vibe's did.
        empty_grace: Some(std::time::Duration::ZERO),
        creator: Some(client.0),
        secured,
        ..CreateOptions::default()
    };
    match app.membership.create_room(RoomId::new(&id), opts).await {
        Ok(_) => Json(json!({ "roomId": id })).into_response(),
        Err(e) => creation_error(&app, &e).into_response(),
    }
}

/// `GET /api/rooms/{id}`: anyone who knows a room's id (an unguessable UUID when it came
/// from `POST /api/rooms`) may see that it exists; in production only the admin key also
/// shows who is in it.
async fn get_room(State(app): State<AppState>, admin: Admin, Path(id): Path<String>) -> Response {
    let participants = admin.granted();
    match app.membership.room(RoomId::new(&id)).await {
        Ok(Some(r)) => Json(room_json(&r, participants)).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "Room not found"})),
        )
            .into_response(),
        Err(e) => unavailable(&e).into_response(),
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "Not found"}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
