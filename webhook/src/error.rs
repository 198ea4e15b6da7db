//! The webhook service's one error type, named for what the client sees, mapped onto the kit's
//! `Problem` (the same problem+json every service answers). Internal causes are logged here,
//! never echoed to the client; request-shape rejections (413, 415, 400, 404, 405) are the kit's.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pipeline::store::StoreError;
use service_kit::http::Rejection;
use service_kit::problem::{FieldError, Problem};

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Missing, malformed, stale or wrong signature.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// JSON of the right shape with invalid fields (or invalid query parameters).
    #[error("{} field(s) failed validation", .0.len())]
    Validation(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    /// Elasticsearch or the output directory is unavailable; the sender should retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl ApiError {
    pub fn problem(self) -> Problem {
        match self {
            ApiError::Rejected(rejection) => rejection.problem(),
            ApiError::Unauthorized(why) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                why,
            ),
            ApiError::Validation(errors) => Problem::validation(
                format!("{} field(s) failed validation", errors.len()),
                errors,
            ),
            ApiError::NotFound => Problem::not_found("no such resource"),
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "answering 503");
                Problem::unavailable("storage")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}
