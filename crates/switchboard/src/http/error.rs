//! `ApiError`: every HTTP error as JSON `{"error", "code", "timestamp"}` with its status.
//! Internals are logged, never sent.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use switchboard_core::unix_millis;

/// An HTTP error reply.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    code: &'static str,
    extra: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with the status's default code.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        };
        Self {
            status,
            message: message.into(),
            code,
            extra: None,
        }
    }

    /// Overrides the machine-readable code.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// Adds extra fields to the body (merged at the top level).
    pub fn with(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// The status (as a number), message and code, for tests.
    #[cfg(test)]
    pub fn parts(&self) -> (u16, &str, &'static str) {
        (self.status.as_u16(), &self.message, self.code)
    }

    /// 404 for a missing room.
    pub fn room_not_found(room: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Room not found")
            .code("room_not_found")
            .with(json!({ "roomId": room }))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": self.message,
            "code": self.code,
            "timestamp": unix_millis(),
        });
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) =
            (self.extra, body.as_object_mut())
        {
            obj.extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}

impl IntoResponse for crate::admission::Refusal {
    fn into_response(self) -> Response {
        ApiError::new(self.status(), self.message())
            .code(self.code())
            .into_response()
    }
}

/// A `text/plain` response, for the endpoints whose original answered in plain text
/// (nt-backend-wrtc's `invalid appID\n`, `gone\n`, …).
pub fn plain_text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A JSON body whose rejections are [`ApiError`]s (400 bad JSON, 413 too large, 415 wrong
/// content type) instead of axum's plain-text ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Expected Content-Type: application/json",
                ),
                JsonRejection::JsonSyntaxError(_) => {
                    ApiError::new(StatusCode::BAD_REQUEST, "Malformed JSON body").code("bad_json")
                }
                JsonRejection::JsonDataError(e) => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid request body: {}", e.body_text()),
                )
                .code("bad_body"),
                JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
                }
                other => ApiError::new(other.status(), "Could not read request body"),
            }),
        }
    }
}
