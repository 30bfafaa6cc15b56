//! Everything HTTP: one small router file per API, and the assembly of the three
//! listeners' routers with the layers they share.
//!
//! | Module | Serves |
//! |---|---|
//! | [`upgrade`] | the WebSocket endpoints: `/` and `/signaling` (OctateCode), `/ws` (rendezvous and nt), `/y-webrtc`; OctateCode on any path of `SIGNALING_PORT` |
//! | [`api`] | the OctateCode API on `PORT` (`/api/*`) |
//! | [`vibe`] | the Vibe REST API on `SOCKETIO_PORT` (`/health`, `/api/rooms`) |
//! | [`rendezvous`] | nt-backend-wrtc's `/rendezvous/code` and `/rendezvous/redeem` |
//! | [`probes`] | `/healthz`, `/readyz`, `/metrics` |
//! | [`demo`] | the browser SDK at `/sdk/` and the collaborative-editor demo at `/demo/` (`DEMO=off` removes them) |
//! | [`openapi`] | `/api/openapi.json` on `PORT` and on `SOCKETIO_PORT`: each API's OpenAPI 3.1 document |
//! | [`error`] | `ApiError`, the JSON error body every route uses |
//!
//! Socket.io itself (`/socket.io/`) is a layer from [`crate::transport::socketio`].

pub mod api;
pub mod demo;
pub mod error;
pub mod openapi;
pub mod probes;
pub mod rendezvous;
pub mod upgrade;
pub mod vibe;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::json;
use switchboard_core::JoinError;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::trace::TraceLayer;

use self::error::ApiError;
use crate::auth::AdminError;
use crate::client_ip::{self, ClientIp};
use crate::command::CommandError;
use crate::state::AppState;
use crate::transport;

/// The layers every listener shares, innermost first: the request body limit, the
/// per-client HTTP rate limit, the client address (which the rate limit reads, so it runs
/// first), CORS and request tracing.
fn common_layers(router: Router<AppState>, app: AppState) -> Router {
    let body_limit = app.config.max_frame_bytes.get().max(16 << 10);
    router
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            rate_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            resolve_client,
        ))
        .layer(cors(&app.config))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

fn cors(config: &crate::Config) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]);
    if config.cors_origins.is_empty() {
        base.allow_origin(Any)
    } else {
        let origins: Vec<HeaderValue> = config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        base.allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
    }
}

/// `PORT`'s router: API, probes, and every WebSocket endpoint (Socket.io included).
pub fn http_app(app: AppState) -> Router {
    let routes = Router::new()
        .route("/", get(upgrade::root))
        .route("/signaling", any(upgrade::octate))
        .route("/ws", any(upgrade::ws))
        .route("/y-webrtc", any(upgrade::ywebrtc))
        .merge(rendezvous::router())
        .merge(api::router())
        .merge(demo::router(&app.config))
        .merge(probes::router(&app.config.metrics_route))
        .merge(openapi::router(&openapi::http_document(&app.config)))
        .fallback(not_found)
        .layer(transport::socketio::layer(app.clone()));
    common_layers(routes, app)
}

/// `SIGNALING_PORT`'s router: OctateCode on any path.
pub fn signaling_app(app: AppState) -> Router {
    let routes = Router::new()
        .route("/", any(upgrade::octate))
        .route("/{*path}", any(upgrade::octate));
    common_layers(routes, app)
}

/// `SOCKETIO_PORT`'s router: the Vibe REST API (seed 003) and Socket.io at `/socket.io/`.
pub fn socketio_app(app: AppState) -> Router {
    let routes = vibe::router()
        .merge(openapi::router(&openapi::vibe_document(&app.config)))
        .layer(transport::socketio::layer(app.clone()));
    common_layers(routes, app)
}

/// Middleware: resolves the client address once per request ([`client_ip::resolve`]) and
/// stores it as a [`ClientIp`] extension for the rate limits, admission and handlers.
async fn resolve_client(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let ip = client_ip::resolve(&app.config.trusted_proxies, peer.ip(), req.headers());
        req.extensions_mut().insert(ClientIp(ip));
    }
    next.run(req).await
}

/// Middleware: 429 when the client is over `HTTP_REQUESTS_PER_SECOND`. Applies to every
/// request on every listener, WebSocket upgrades and Socket.io handshakes included; the
/// requests of an established Engine.IO session (`sid=` in the query: polls and posts) are
/// not counted here, because `MAX_MESSAGES_PER_SECOND` already limits its events.
async fn rate_limit(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let in_session = req.uri().path().starts_with("/socket.io")
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("sid=")));
    if !in_session {
        let ip = client_ip::from_parts(req.extensions()).0;
        if !app.http_rate.check(ip) {
            app.metrics.limit("http_rate");
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests; slow down",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// JSON 404 for every unknown path.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not found").with(json!({ "path": uri.path() }))
}

/// Whether a request carries the admin key (`Authorization: Bearer <ADMIN_API_KEY>`),
/// checked once per request by [`Authenticator::admin`](crate::auth::Authenticator::admin)
/// (exact match, failures throttled per client). In development every request is admin.
pub struct Admin(Result<(), AdminError>);

impl Admin {
    /// The request as an admin request, or why not: 401 without a key, 403 with a wrong
    /// one, 429 once the client's failed attempts are spent.
    ///
    /// # Errors
    /// When the request does not carry the admin key.
    pub fn require(&self) -> Result<(), ApiError> {
        self.0.map_err(|e| {
            let status = match e {
                AdminError::Missing => StatusCode::UNAUTHORIZED,
                AdminError::Wrong => StatusCode::FORBIDDEN,
                AdminError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            };
            let api = ApiError::new(status, e.to_string());
            if e == AdminError::Throttled {
                api.code("auth_throttled")
            } else {
                api
            }
        })
    }

    /// Whether the request carries the admin key.
    pub fn granted(&self) -> bool {
        self.0.is_ok()
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !app.config.is_production() {
            return Ok(Self(Ok(())));
        }
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let client = client_ip::from_parts(&parts.extensions).0;
        Ok(Self(app.auth.admin(client, given)))
    }
}

/// 503 for a membership service that cannot answer.
pub fn unavailable(e: &JoinError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).code("unavailable")
}

/// How a refused room creation reads over HTTP, on every port: the command layer's
/// refusal for it ([`CommandError`]'s code and text, as every dialect reports it), at the
/// status HTTP gives that refusal, counted against its limit as the command layer counts
/// it. A service that cannot answer is [`unavailable`]; a refusal a creation cannot meet
/// is a plain 400.
pub fn creation_error(app: &AppState, e: &JoinError) -> ApiError {
    let (api, limit) = creation_refusal(e);
    if let Some(limit) = limit {
        app.metrics.limit(limit);
    }
    api
}

/// [`creation_error`]'s reply, and the limit the refusal counts against.
fn creation_refusal(e: &JoinError) -> (ApiError, Option<&'static str>) {
    if let JoinError::Unavailable(_) = e {
        return (unavailable(e), None);
    }
    let refusal = CommandError::from(e.clone());
    let status = match refusal {
        CommandError::RoomExists(_) => StatusCode::CONFLICT,
        CommandError::TooManyRooms(_) | CommandError::CreationRateLimited => {
            StatusCode::TOO_MANY_REQUESTS
        }
        CommandError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        _ => return (ApiError::new(StatusCode::BAD_REQUEST, e.to_string()), None),
    };
    let api = ApiError::new(status, refusal.to_string()).code(refusal.code());
    (api, refusal.limit())
}

#[cfg(test)]
mod tests {
    use switchboard_core::{PeerId, RoomId};

    use super::*;

    /// Every way a room creation is refused, as HTTP reads it: the command layer's code and
    /// text, at HTTP's status.
    #[test]
    fn a_refused_creation_reads_as_the_command_layer_says_at_an_http_status() {
        let r1 = || RoomId::new("r1");
        #[rustfmt::skip]
        let cases = [
            // refusal                               status  code                      text                                                         limit
            (JoinError::RoomExists(r1()),            409,    "room_exists",            "Room already exists",                                       None),
            (JoinError::TooManyRooms(5),             429,    "too_many_rooms",         "Room limit reached (5 rooms)",                              Some("rooms")),
            (JoinError::CreationRateLimited,         429,    "creation_rate_limited",  "Too many rooms created from this address; try again later", Some("room_creations")),
            (JoinError::NotAdmitting,                503,    "overloaded",             "Server is not accepting new rooms right now",               Some("memory")),
            (JoinError::Unavailable("down".into()),  503,    "unavailable",            "membership service unavailable: down",                      None),
            (JoinError::RoomNotFound(r1()),          400,    "bad_request",            "room r1 not found",                                         None),
            (JoinError::PeerIdTaken { room: r1(), peer: PeerId::new("p") }, 400, "bad_request", "peer id p is already in room r1",        None),
        ];
        for (e, status, code, text, limit) in cases {
            let (api, counted) = creation_refusal(&e);
            assert_eq!(
                (api.parts(), counted),
                ((status, text, code), limit),
                "{e:?}"
            );
        }
    }
}
