//! The OpenAPI document of `SOCKETIO_PORT`: the Vibe REST API (seed 003) and the Socket.io
//! handshake.

use super::*;

// === SOCKETIO_PORT ===

/// The OpenAPI document of `SOCKETIO_PORT` (seed 003's REST shapes).
pub fn vibe_document(config: &Config) -> Value {
    let mut p = Map::new();
    let vibe_error = object(&["error"], json!({ "error": string() }));
    let room = object(
        &["id", "participants", "createdAt"],
        json!({
            "id": string(), "participants": { "type": "array", "items": string() },
            "participantCount": int(), "createdAt": string(),
        }),
    );
    add(
        &mut p,
        "/health",
        "get",
        Op::new("Health (seed 003)").ok(
            200,
            "Up",
            object(
                &["status", "timestamp"],
                json!({ "status": { "const": "ok" }, "timestamp": string() }),
            ),
        ),
    );
    add(
        &mut p,
        "/api/rooms",
        "get",
        Op::new("Every room (but y-webrtc topics) with its participants")
            .admin()
            .ok(
                200,
                "Rooms",
                object(
                    &["rooms"],
                    json!({ "rooms": { "type": "array", "items": schema_ref("VibeRoom") } }),
                ),
            )
            .status(503, response_ref("Unavailable")),
    );
    let mut create = Op::new("Create a room with an unguessable id (the body is ignored)")
        .describe("Open to anyone unless REQUIRE_TOKEN names socketio (the production default): then the admin key is required and the room admits token holders only.")
        .ok(200, "Created", object(&["roomId"], json!({ "roomId": { "type": "string", "format": "uuid" } })))
        .status(503, response_ref("Unavailable"));
    if config.requires_token(crate::dialect::socketio::NAME) {
        create = create.admin();
    }
    add(&mut p, "/api/rooms", "post", create);
    add(&mut p, "/api/rooms/{roomId}", "get", Op::new("One room; without the admin key in production its participants are withheld (`participantCount` instead)")
        .param(path_param("roomId"))
        .ok(200, "The room", schema_ref("VibeRoom"))
        .ok(404, "No such room", vibe_error.clone())
        .status(503, response_ref("Unavailable")));
    add(&mut p, PATH, "get", this_document());
    add(&mut p, "/socket.io/", "get", socketio_handshake());
    document(
        config,
        "Switchboard Vibe REST API (SOCKETIO_PORT)",
        "Seed 003's REST API beside Socket.io on SOCKETIO_PORT. Any other path: 404 `{error:\"Not found\"}`.",
        p,
        common_components(json!({ "VibeRoom": room, "VibeError": vibe_error })),
    )
}
