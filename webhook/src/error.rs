//! The webhook service's one error type, named for what the client sees, rendered through
//! `pipeline::problem` as `application/problem+json` (same shape as the consumer's, 422 `errors`
//! items are `{"name","message"}`). Internal causes are logged here, never echoed to the client.

use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pipeline::problem::{problem_response, FieldError};
use pipeline::store::StoreError;

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
    /// JSON of the right shape with invalid fields (or invalid query parameters).
    #[error("{} field(s) failed validation", .0.len())]
    Validation(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    #[error("this path does not accept that method")]
    MethodNotAllowed,
    /// Elasticsearch or the output directory is unavailable; the sender should retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::Validation(vec![FieldError::new("$query", e.body_text())])
    }
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
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
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
        let (status, kind, title) = self.parts();
        let detail = match &self {
            ApiError::Unauthorized(d) | ApiError::Malformed(d) => d.clone(),
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "answering 503");
                "storage is unavailable; retry later".to_string()
            }
            other => other.to_string(),
        };
        let errors = match self {
            ApiError::Validation(errors) => Some(errors),
            _ => None,
        };
        problem_response(status, kind, title, detail, errors).into_response()
    }
}
