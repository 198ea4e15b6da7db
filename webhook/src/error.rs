//! The webhook service's one error type, named for what the client sees, rendered as
//! `application/problem+json`. Internal causes are logged here, never echoed to the client.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, malformed, stale or wrong signature.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The body is not JSON of the expected shape.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The body is over the size limit.
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The body is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// JSON of the right shape with invalid fields.
    #[error("validation failed")]
    Validation(Vec<(String, String)>),
    #[error("not found")]
    NotFound,
    /// Elasticsearch or the output directory is unavailable; the sender should retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Malformed(_) => (
                StatusCode::BAD_REQUEST,
                "malformed",
                "Malformed request body",
            ),
            ApiError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Body must be application/json",
            ),
            ApiError::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid fields",
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "A dependency is unavailable",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        let detail = match &self {
            ApiError::Unauthorized(d) | ApiError::Malformed(d) => d.clone(),
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "answering 503");
                "storage is unavailable; retry later".to_string()
            }
            other => other.to_string(),
        };
        let mut body = json!({
            "type": format!("urn:conveyor:problem:{slug}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        });
        if let ApiError::Validation(errors) = &self {
            body["errors"] = errors
                .iter()
                .map(|(field, message)| json!({ "field": field, "message": message }))
                .collect();
        }
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}
