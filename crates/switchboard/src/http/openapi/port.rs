//! The OpenAPI document of `PORT`: the API, probes, metrics, rendezvous codes, the
//! WebSocket endpoints' plain-HTTP answers and the demo and SDK files.

use super::*;

// === PORT ===

fn memory_schema() -> Value {
    object(
        &["rss", "rssMB", "warningMB", "criticalMB", "pressure"],
        json!({
            "rss": int(), "rssMB": number(),
            "warningMB": number(), "criticalMB": number(),
            "pressure": { "enum": ["normal", "warning", "critical"] },
        }),
    )
}

fn room_stats_schema() -> Value {
    object(
        &["roomId", "peerCount", "createdAt", "lastActivity"],
        json!({
            "roomId": string(), "peerCount": int(),
            "createdAt": int(), "lastActivity": int(),
        }),
    )
}

fn http_schemas() -> Value {
    let peer = object(
        &[
            "userId",
            "userName",
            "isHost",
            "connectedAt",
            "lastHeartbeat",
        ],
        json!({
            "userId": string(), "userName": string(), "isHost": { "type": "boolean" },
            "connectedAt": int(), "lastHeartbeat": int(),
        }),
    );
    let room_properties = json!({
        "roomId": string(), "roomName": string(), "hostId": string(), "hostName": string(),
        "fileId": string(), "peerCount": int(), "state": string(),
        "createdAt": int(), "lastActivity": int(),
        "peers": { "type": "array", "items": schema_ref("PeerInfo") },
    });
    let room_required = [
        "roomId",
        "roomName",
        "hostId",
        "hostName",
        "peerCount",
        "state",
        "createdAt",
        "lastActivity",
    ];
    json!({
        "PeerInfo": peer,
        "RoomMetadata": object(&room_required, room_properties),
        "RoomStats": room_stats_schema(),
        "Memory": memory_schema(),
        "TokenError": {
            "allOf": [schema_ref("Error")],
            "type": "object",
            "required": ["valid"],
            "properties": { "valid": { "const": false } },
            "description": "`code`: `invalid_token`, `bad_signature`, `token_expired`, `token_not_yet_valid`, `user_mismatch`, `room_mismatch`; 429 `auth_throttled`",
        },
    })
}

/// The OpenAPI document of `PORT`.
pub fn http_document(config: &Config) -> Value {
    let mut p = Map::new();
    let room_id = || path_param("roomId");
    add(&mut p, "/", "get", Op::new("The server's name, version and room count (a WebSocket upgrade here is OctateCode)")
        .ok(200, "Running", object(&["name", "status", "version", "rooms", "docs"], json!({
            "name": string(), "status": { "const": "running" }, "version": string(), "rooms": int(), "docs": string(),
        })))
        .status(503, response_ref("Unavailable")));
    let health = || {
        Op::new("Health: status, uptime, rooms, peers and memory").ok(
            200,
            "Health (`degraded`: the cluster backend did not answer; this node's own figures)",
            object(
                &[
                    "status",
                    "timestamp",
                    "uptime",
                    "rooms",
                    "totalPeers",
                    "memory",
                ],
                json!({
                    "status": { "enum": ["ok", "draining", "degraded"] }, "timestamp": int(), "uptime": int(),
                    "rooms": int(), "totalPeers": int(), "memory": schema_ref("Memory"),
                }),
            ),
        )
    };
    add(&mut p, "/api/health", "get", health());
    add(&mut p, "/health", "get", health());
    let stats = || {
        Op::new("Server statistics, memory, thresholds and limits")
            .admin()
            .ok(
                200,
                "Statistics",
                object(
                    &["server", "memory", "thresholds", "limits", "operations", "timestamp"],
                    json!({
                        "server": object(&["uptime", "startedAt", "activeRooms", "totalConnections", "connectedClients", "backplane", "node", "admittingRooms"], json!({
                            "uptime": int(), "startedAt": int(), "activeRooms": int(), "totalConnections": int(),
                            "connectedClients": int(), "backplane": { "enum": ["local", "redis"] }, "node": string(),
                            "admittingRooms": { "type": "boolean" },
                        })),
                        "memory": schema_ref("Memory"),
                        "thresholds": object(&["warning", "critical", "unit"], json!({ "warning": number(), "critical": number(), "unit": { "const": "MB" } })),
                        "limits": { "type": "object", "additionalProperties": int() },
                        "operations": object(&["total"], json!({ "total": int(), "note": string() })),
                        "timestamp": int(),
                    }),
                ),
            )
            .status(503, response_ref("Unavailable"))
    };
    add(&mut p, "/api/stats", "get", stats());
    add(&mut p, "/stats", "get", stats());
    let info = || {
        Op::new("What this server is and serves").describe("`limits` holds every setting's effective value (secrets masked) for the admin key (everyone in development), `null` otherwise.")
            .ok(200, "Description", object(&["name", "version", "node", "backplane", "description", "features", "dialects", "endpoints", "limits"], json!({
                "name": string(), "version": string(), "node": string(), "backplane": string(), "description": string(),
                "features": { "type": "array", "items": string() },
                "dialects": { "type": "array", "items": string() },
                "endpoints": { "type": "array", "items": string() },
                "limits": { "type": ["object", "null"], "additionalProperties": string() },
            })))
    };
    add(&mut p, "/api/info", "get", info());
    add(&mut p, "/info", "get", info());
    add(&mut p, "/api/auth/token", "post", Op::new("Issue a token (JWT, HS256) for a user and a room")
        .admin()
        .json_body(object(&["userId", "roomId"], json!({ "userId": nonempty(), "roomId": nonempty() })))
        .ok(200, "The token", object(&["status", "token", "userId", "roomId", "expiresIn", "expiresAt", "message", "timestamp"], json!({
            "status": { "const": "success" }, "token": string(), "userId": string(), "roomId": string(),
            "expiresIn": int(), "expiresAt": int(), "message": string(), "timestamp": int(),
        }))));
    add(&mut p, "/api/auth/validate", "post", Op::new("Check a token, optionally for a user and a room")
        .json_body(object(&["token"], json!({ "token": nonempty(), "userId": optional(), "roomId": optional() })))
        .ok(200, "Valid", object(&["valid", "userId", "roomId", "expiresAt", "timestamp"], json!({
            "valid": { "const": true }, "userId": string(), "roomId": string(), "expiresAt": int(), "timestamp": int(),
        })))
        .ok(401, "Not valid", schema_ref("TokenError"))
        .status(429, json_response("Over HTTP_REQUESTS_PER_SECOND, or the client's failed tokens are spent (`auth_throttled`)", {
            json!({ "anyOf": [schema_ref("TokenError"), schema_ref("Error")] })
        })));
    add(
        &mut p,
        "/api/ice-servers",
        "get",
        Op::new("STUN and TURN servers, with TURN REST credentials when TURN_SECRET is set")
            .param(query_param("userId", "put in the TURN user name"))
            .ok(
                200,
                "ICE servers",
                object(
                    &["iceServers", "ttl"],
                    json!({
                        "iceServers": { "type": "array", "items": object(&["urls"], json!({
                            "urls": { "anyOf": [string(), { "type": "array", "items": string() }] },
                            "username": string(), "credential": string(),
                        })) },
                        "ttl": int(),
                    }),
                ),
            ),
    );
    add(&mut p, "/api/rooms", "get", Op::new("Every room (without its peers)")
        .admin()
        .ok(200, "Rooms", object(&["count", "rooms", "timestamp"], json!({
            "count": int(), "rooms": { "type": "array", "items": schema_ref("RoomMetadata") }, "timestamp": int(),
        })))
        .status(503, response_ref("Unavailable")));
    add(&mut p, "/api/rooms", "post", Op::new("Create an empty room (removed after UNJOINED_ROOM_TTL if nobody joins)")
        .describe("The seed's body (`roomId`, camelCase) answers with the room; the original code's (`room_id`, snake_case) with `{message, data}`.")
        .admin()
        .json_body(json!({
            "type": "object",
            "properties": {
                "roomId": { "type": "string", "minLength": 1, "maxLength": 256 }, "roomName": optional(), "hostId": optional(),
                "hostName": optional(), "fileId": optional(),
                "room_id": { "type": "string", "minLength": 1, "maxLength": 256 }, "room_name": optional(), "host_id": optional(),
            },
            "anyOf": [{ "required": ["roomId"] }, { "required": ["room_id"] }],
        }))
        .ok(201, "Created", json!({ "anyOf": [
            schema_ref("RoomMetadata"),
            object(&["message", "data", "timestamp"], json!({ "message": { "const": "Room created" }, "data": schema_ref("RoomMetadata"), "timestamp": int() })),
        ] }))
        .ok(409, "The room exists (`room_exists`)", schema_ref("Error"))
        .status(503, response_ref("Unavailable")));
    add(&mut p, "/api/rooms/{roomId}", "get", Op::new("One room: its metadata (both the seed's and the original code's shape) and stats")
        .admin()
        .param(room_id())
        .ok(200, "The room", json!({
            "allOf": [schema_ref("RoomMetadata")],
            "type": "object",
            "required": ["metadata", "stats", "timestamp"],
            "properties": { "metadata": schema_ref("RoomMetadata"), "stats": schema_ref("RoomStats"), "timestamp": int() },
        }))
        .status(404, response_ref("NotFound"))
        .status(503, response_ref("Unavailable")));
    add(&mut p, "/api/rooms/{roomId}", "delete", Op::new("Delete a room; its members get `room-closed`")
        .admin()
        .param(room_id())
        .ok(200, "Deleted", object(&["message", "roomId", "disconnectedPeers", "timestamp"], json!({
            "message": { "const": "Room deleted" }, "roomId": string(), "disconnectedPeers": int(), "timestamp": int(),
        })))
        .status(404, response_ref("NotFound"))
        .status(503, response_ref("Unavailable")));
    add(&mut p, "/api/rooms/{roomId}/stats", "get", Op::new("A room's statistics")
        .admin()
        .param(room_id())
        .ok(200, "Statistics", json!({ "allOf": [schema_ref("RoomStats")], "type": "object", "required": ["timestamp"], "properties": { "timestamp": int() } }))
        .status(404, response_ref("NotFound"))
        .status(503, response_ref("Unavailable")));
    add(&mut p, "/api/rooms/{roomId}/peers", "get", Op::new("A room's members")
        .admin()
        .param(room_id())
        .ok(200, "Members", object(&["roomId", "peerCount", "peers", "timestamp"], json!({
            "roomId": string(), "peerCount": int(), "peers": { "type": "array", "items": schema_ref("PeerInfo") }, "timestamp": int(),
        })))
        .status(404, response_ref("NotFound"))
        .status(503, response_ref("Unavailable")));
    add(&mut p, "/api/users/{userId}/revoke", "post", Op::new("Revoke a user's access: every connection that is this user, in any room, on every node, is closed (1008 `access revoked`)")
        .admin()
        .param(path_param("userId"))
        .ok(200, "Revoked", object(&["message", "userId", "closedConnections", "timestamp"], json!({
            "message": { "const": "Access revoked" }, "userId": string(), "closedConnections": int(), "timestamp": int(),
        })))
        .status(400, response_ref("BadRequest"))
        .status(503, response_ref("Unavailable")));
    add(&mut p, "/api/maintenance/cleanup", "post", Op::new("Remove every empty room now, and close idle ones")
        .admin()
        .ok(200, "Swept", object(&["message", "before", "after", "cleaned", "emptyRoomsRemoved", "idleRoomsClosed", "timestamp"], json!({
            "message": { "const": "Cleanup triggered" },
            "before": object(&["rooms", "peers"], json!({ "rooms": int(), "peers": int() })),
            "after": object(&["rooms", "peers"], json!({ "rooms": int(), "peers": int() })),
            "cleaned": int(), "emptyRoomsRemoved": int(), "idleRoomsClosed": int(), "timestamp": int(),
        }))));
    add(&mut p, "/api/maintenance/gc", "post", Op::new("Return freed allocator memory to the operating system")
        .admin()
        .ok(200, "Released", object(&["message", "before", "after", "freed", "released", "unit", "timestamp"], json!({
            "message": { "const": "Garbage collection triggered" }, "before": number(), "after": number(), "freed": number(),
            "released": { "type": "boolean" }, "unit": { "const": "MB" }, "note": string(), "timestamp": int(),
        }))));
    add(
        &mut p,
        "/healthz",
        "get",
        Op::new("Liveness: always ok").ok(
            200,
            "Alive",
            object(&["ok"], json!({ "ok": { "const": true } })),
        ),
    );
    add(
        &mut p,
        "/readyz",
        "get",
        Op::new("Readiness: not while draining, nor in cluster mode while Redis is unreachable")
            .ok(
                200,
                "Ready",
                object(&["ready"], json!({ "ready": { "const": true } })),
            )
            .ok(
                503,
                "Not ready",
                object(&["ready"], json!({ "ready": { "const": false } })),
            ),
    );
    add(&mut p, &config.metrics_route, "get", Op::new("Prometheus metrics (OpenMetrics text)")
        .admin()
        .status(200, json!({ "description": "Metrics", "content": { "application/openmetrics-text": { "schema": string() } } })));
    add(&mut p, PATH, "get", this_document());
    add(&mut p, "/rendezvous/code", "post", Op::new("A 4-digit code for a fresh nt room (`appID`), valid for ROOM_TTL")
        .describe("Other methods: 405 `method not allowed` (text).")
        .ok(200, "The code", object(&["appID", "code", "expiresAt"], json!({
            "appID": { "type": "string", "format": "uuid" }, "code": { "type": "string", "pattern": "^[0-9]{4}$" }, "expiresAt": string(),
        })))
        .status(500, text_response("Every code is in use (`code-space exhausted`)"))
        .status(503, text_response("Cluster mode, Redis unreachable (`unavailable`)")));
    add(&mut p, "/rendezvous/redeem", "post", Op::new("The nt room (`appID`) of a code; a code is redeemed once")
        .describe("Other methods: 405 `method not allowed` (text).")
        .status(200, json_response("The room", object(&["appID", "expiresAt"], json!({ "appID": string(), "expiresAt": string() }))))
        .status(400, text_response("Not `{\"code\":\"NNNN\"}` (`bad request`)"))
        .status(410, text_response("No live code (`gone`)"))
        .status(415, text_response("Not JSON (`bad content-type`)"))
        .status(503, text_response("Cluster mode, Redis unreachable (`unavailable`)"))
        .body_raw(json!({
            "required": true,
            "content": { "application/json": { "schema": object(&["code"], json!({ "code": { "type": "string", "pattern": "^[0-9]{4,8}$" } })) } },
        })));
    // The WebSocket endpoints: what a plain HTTP request gets, and the refusals before an
    // upgrade. The protocols themselves are in docs/PROTOCOL.md.
    let upgrade = |summary: &'static str| {
        Op::new(summary)
            .describe("A WebSocket endpoint (docs/PROTOCOL.md): 101 for an upgrade; a plain request gets 426.")
            .param(query_param("token", "a token from POST /api/auth/token (required where REQUIRE_TOKEN names the dialect)"))
            .status(101, json!({ "description": "Switching Protocols" }))
            .status(426, json!({ "description": "Not a WebSocket upgrade" }))
            .ok(401, "No token where one is required, or a bad one", schema_ref("Error"))
            .ok(403, "A token for another room, or an Origin not in CORS_ORIGINS", schema_ref("Error"))
            .ok(503, "Draining, or memory or buffered bytes over their limits (`overloaded`)", schema_ref("Error"))
    };
    add(
        &mut p,
        "/signaling",
        "get",
        upgrade("OctateCode signaling (as on SIGNALING_PORT)"),
    );
    add(&mut p, "/y-webrtc", "get", upgrade("y-webrtc signaling"));
    add(&mut p, "/ws", "get", upgrade("Rendezvous (`?room=`) or nt-backend-wrtc (`?appID=&side=`) signaling")
        .param(query_param("room", "rendezvous room, 1–128 characters"))
        .param(query_param("key", "RENDEZVOUS_WS_KEY"))
        .param(query_param("appID", "nt: the room's UUID"))
        .param(json!({ "name": "side", "in": "query", "required": false, "schema": { "enum": ["A", "B"] } }))
        .status(400, text_response("Neither `room` nor `appID`, or an invalid one (`missing room or appID`, `invalid room`, `invalid appID`, `invalid side`, `bad query`, `Bad Request`)")));
    add(
        &mut p,
        "/socket.io/",
        "get",
        socketio_handshake()
            .describe("The Socket.io protocol (docs/PROTOCOL.md); also on SOCKETIO_PORT."),
    );
    if config.demo {
        let file = |summary: &'static str, content_type: &str| {
            Op::new(summary).status(200, json!({ "description": "The file", "content": { content_type: { "schema": string() } } }))
                .status(304, json!({ "description": "Not modified (If-None-Match)" }))
        };
        let js = "text/javascript";
        add(
            &mut p,
            "/sdk/switchboard.js",
            "get",
            file("The browser SDK (ES module)", js),
        );
        add(
            &mut p,
            "/sdk/switchboard.d.ts",
            "get",
            file("The SDK's type declarations", "application/typescript"),
        );
        add(
            &mut p,
            "/demo",
            "get",
            Op::new("Redirect to /demo/").status(308, json!({ "description": "To /demo/" })),
        );
        add(
            &mut p,
            "/demo/",
            "get",
            file("The collaborative-editor demo", "text/html"),
        );
        add(
            &mut p,
            "/demo/index.html",
            "get",
            file("The demo page", "text/html"),
        );
        add(&mut p, "/demo/app.js", "get", file("The demo's script", js));
        add(
            &mut p,
            "/demo/editor.js",
            "get",
            file("The demo's editor binding", js),
        );
        add(
            &mut p,
            "/demo/style.css",
            "get",
            file("The demo's style", "text/css"),
        );
        add(
            &mut p,
            "/demo/switchboard-yjs.js",
            "get",
            file("The Yjs provider over the SDK", js),
        );
        add(
            &mut p,
            "/demo/yjs.js",
            "get",
            file("Yjs (the pinned build embedded in the binary)", js),
        );
    }
    document(
        config,
        "Switchboard HTTP API (PORT)",
        "The HTTP API on PORT: the OctateCode API (`/api/*`), probes and metrics, nt-backend-wrtc's rendezvous codes, the WebSocket endpoints' plain-HTTP answers, Socket.io's handshake, and the SDK and demo files. Errors are JSON `{error, code, timestamp}` except where marked text. Any other path: 404 `{error:\"Not found\", path}`. SOCKETIO_PORT serves its own document at the same path.",
        p,
        common_components(http_schemas()),
    )
}

impl Op {
    /// A request body as given (for routes that judge their own bodies).
    fn body_raw(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}
