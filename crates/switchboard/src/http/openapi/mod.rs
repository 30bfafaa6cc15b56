//! The OpenAPI 3.1 documents of the two HTTP APIs, each served by its own listener at
//! `GET /api/openapi.json`: [`http_document`] for `PORT` (the OctateCode API, probes, metrics,
//! rendezvous codes, the WebSocket endpoints' HTTP answers, the SDK and demo files, the
//! Socket.io handshake) and [`vibe_document`] for `SOCKETIO_PORT` (seed 003's REST API).
//! `SIGNALING_PORT` serves only OctateCode WebSockets (any path), so it has none.
//!
//! Each document is built once from the configuration (the metrics path, whether the demo is
//! served) and describes every status a route answers with, error bodies included: the
//! test command runs schemathesis against both, in development and in production, and fails
//! on any response that does not match. `tests/openapi.rs` fails when a route in the router
//! sources is missing here.

// `json!` serialises the values put in it by reference, so builders that take a `Value` and
// place it in a `json!` look unconsumed to clippy; taking them by value keeps call sites
// reading like the document.
#![allow(clippy::needless_pass_by_value)]

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::state::AppState;

/// Where each listener serves its document.
pub const PATH: &str = "/api/openapi.json";

/// `GET /api/openapi.json` serving `document`.
pub fn router(document: &Value) -> Router<AppState> {
    let body = document.to_string();
    Router::new().route(
        PATH,
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
        }),
    )
}

mod port;
mod vibe;

pub use self::port::http_document;
pub use self::vibe::vibe_document;

// === building blocks ===

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn response_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn text_response(description: &str) -> Value {
    json!({ "description": description, "content": { "text/plain": { "schema": { "type": "string" } } } })
}

/// An object with these required properties (others allowed).
fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

fn int() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn nonempty() -> Value {
    json!({ "type": "string", "minLength": 1 })
}

/// An optional string field (`null` is read as absent).
fn optional() -> Value {
    json!({ "type": ["string", "null"] })
}

fn number() -> Value {
    json!({ "type": "number" })
}

/// One operation: its summary, responses (status → response) and whether it needs the admin
/// key in production. Every operation can be refused by the HTTP rate limit (429).
struct Op {
    summary: &'static str,
    description: Option<&'static str>,
    admin: bool,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Map<String, Value>,
}

impl Op {
    fn new(summary: &'static str) -> Self {
        let mut responses = Map::new();
        responses.insert("429".into(), response_ref("TooManyRequests"));
        Self {
            summary,
            description: None,
            admin: false,
            params: Vec::new(),
            body: None,
            responses,
        }
    }

    fn describe(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    /// Needs `Authorization: Bearer <ADMIN_API_KEY>` in production (401 without, 403 wrong).
    fn admin(mut self) -> Self {
        self.admin = true;
        self.responses
            .insert("401".into(), response_ref("Unauthorized"));
        self.responses
            .insert("403".into(), response_ref("Forbidden"));
        self
    }

    fn ok(self, status: u16, description: &str, schema: Value) -> Self {
        self.status(status, json_response(description, schema))
    }

    fn status(mut self, status: u16, response: Value) -> Self {
        self.responses.insert(status.to_string(), response);
        self
    }

    fn param(mut self, p: Value) -> Self {
        self.params.push(p);
        self
    }

    /// A JSON request body (with the JSON body's refusals: 400, 413, 415).
    fn json_body(mut self, schema: Value) -> Self {
        self.body = Some(json!({
            "required": true,
            "content": { "application/json": { "schema": schema } },
        }));
        self.responses
            .insert("400".into(), response_ref("BadRequest"));
        self.responses
            .insert("413".into(), response_ref("PayloadTooLarge"));
        self.responses
            .insert("415".into(), response_ref("UnsupportedMediaType"));
        self
    }

    fn build(self) -> Value {
        let mut op = Map::new();
        op.insert("summary".into(), self.summary.into());
        if let Some(d) = self.description {
            op.insert("description".into(), d.into());
        }
        if self.admin {
            op.insert("security".into(), json!([{ "adminKey": [] }, {}]));
        }
        if !self.params.is_empty() {
            op.insert("parameters".into(), Value::Array(self.params));
        }
        if let Some(b) = self.body {
            op.insert("requestBody".into(), b);
        }
        op.insert("responses".into(), Value::Object(self.responses));
        Value::Object(op)
    }
}

/// `GET /api/openapi.json` itself, on either port.
fn this_document() -> Op {
    Op::new("This document").ok(
        200,
        "OpenAPI 3.1",
        json!({ "type": "object", "required": ["openapi", "paths"] }),
    )
}

/// The Socket.io (Engine.IO v4) handshake and long polling, on either port.
fn socketio_handshake() -> Op {
    Op::new("Socket.io (Engine.IO v4) handshake and long polling")
        .param(json!({ "name": "EIO", "in": "query", "required": true, "schema": { "const": "4" } }))
        .param(json!({ "name": "transport", "in": "query", "required": true, "schema": { "enum": ["polling", "websocket"] } }))
        .status(200, text_response("An Engine.IO packet (the handshake, `0{…}`)"))
        .status(101, json!({ "description": "Switching Protocols (transport=websocket)" }))
        .status(400, json!({ "description": "An Engine.IO error: JSON `{code, message}` for a bad handshake, an empty body for transport=websocket without an upgrade" }))
        .ok(403, "An Origin not in CORS_ORIGINS", schema_ref("Error"))
        .ok(503, "Draining or overloaded", schema_ref("Error"))
}

fn path_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "minLength": 1 } })
}

fn query_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": string() })
}

/// Adds `method` of `path` to `paths`.
fn add(paths: &mut Map<String, Value>, path: &str, method: &str, op: Op) {
    let item = paths
        .entry(path.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(item) = item {
        item.insert(method.to_owned(), op.build());
    }
}

/// The error body every JSON error has, and the shared responses.
fn common_components(extra_schemas: Value) -> Value {
    let mut schemas = json!({
        "Error": object(&["error", "code", "timestamp"], json!({
            "error": { "type": "string", "description": "what went wrong, for people" },
            "code": { "type": "string", "description": "what went wrong, for programs (`rate_limited`, `bad_json`, `room_not_found`, …)" },
            "timestamp": { "type": "integer", "description": "Unix milliseconds" },
        })),
    });
    if let (Value::Object(s), Value::Object(extra)) = (&mut schemas, extra_schemas) {
        s.extend(extra);
    }
    let error = |d: &str| json_response(d, schema_ref("Error"));
    json!({
        "securitySchemes": {
            "adminKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <ADMIN_API_KEY>`. Required in production only (NODE_ENV=production); in development these routes are open. Wrong keys count against AUTH_FAILURES_PER_MINUTE per client (429 auth_throttled beyond).",
            },
        },
        "schemas": schemas,
        "responses": {
            "TooManyRequests": error("Over HTTP_REQUESTS_PER_SECOND (`rate_limited`), or the client's failed admin keys or tokens are spent (`auth_throttled`), or a room limit (`too_many_rooms`, `creation_rate_limited`)"),
            "Unauthorized": error("Production: no admin key (`unauthorized`)"),
            "Forbidden": error("Production: a wrong admin key (`forbidden`)"),
            "BadRequest": error("Malformed JSON (`bad_json`), a body of the wrong shape (`bad_body`) or missing fields (`missing_fields`, `bad_request`)"),
            "PayloadTooLarge": error("A body over max(MAX_FRAME_BYTES, 16 KiB) (`payload_too_large`)"),
            "UnsupportedMediaType": error("Not `Content-Type: application/json` (`unsupported_media_type`)"),
            "NotFound": error("No such room (`room_not_found`, with `roomId`)"),
            "Unavailable": error("The membership service cannot answer (cluster mode, Redis unreachable: `unavailable`), or no room may be created now (`overloaded`)"),
        },
    })
}

fn document(
    config: &Config,
    title: &str,
    description: &str,
    mut paths: Map<String, Value>,
    components: Value,
) -> Value {
    if config.is_production() {
        // Production: the admin key is required, not optional.
        for op in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
        {
            if let Some(security) = op.get_mut("security") {
                *security = json!([{ "adminKey": [] }]);
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": env!("CARGO_PKG_VERSION"),
            "description": description,
            "license": { "name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0" },
        },
        "paths": paths,
        "components": components,
    })
}
