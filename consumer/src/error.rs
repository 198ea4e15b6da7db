//! The one error type of the HTTP API, named for what the client sees, and its single
//! conversion to `application/problem+json` through `pipeline::problem` (RFC 9457: type, title,
//! status, detail, and per-field `errors` `{name,message}` for 422), plus `Retry-After` on 429
//! and 503. Internal causes are logged where they happen, never put in an answer; the body shape
//! itself is not defined here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pipeline::problem::{problem_response, FieldError};
use pipeline::store::StoreError;
use queue::QueueError;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("body too large (limit {limit} bytes)")]
    TooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("backlog over its limit ({waiting} waiting, limit {limit})")]
    Backpressure {
        retry_after_secs: u64,
        /// Jobs really waiting (not yet delivered to a worker) at the last reading.
        waiting: u64,
        /// `BACKLOG_LIMIT`.
        limit: u64,
    },
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    #[error("not processed in time")]
    Timeout { job_id: String, timeout_ms: u64 },
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Backpressure { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem+json answer of this error (without `Retry-After`).
    fn problem(self) -> Response {
        let status = self.status();
        let (slug, title, detail, errors) = match self {
            ApiError::Validation(errors) => (
                "validation",
                "Invalid request",
                format!("{} field(s) failed validation; nothing was enqueued", errors.len()),
                Some(errors),
            ),
            ApiError::Malformed(why) => ("malformed-json", "Malformed JSON", why, None),
            ApiError::TooLarge { limit } => (
                "too-large",
                "Body too large",
                format!("the request body exceeds {limit} bytes"),
                None,
            ),
            ApiError::UnsupportedMediaType => (
                "unsupported-media-type",
                "Unsupported media type",
                "the body must be JSON: send Content-Type: application/json".to_string(),
                None,
            ),
            ApiError::NotFound(what) => ("not-found", "Not found", what, None),
            ApiError::MethodNotAllowed => (
                "method-not-allowed",
                "Method not allowed",
                "this path does not accept that method".to_string(),
                None,
            ),
            ApiError::Backpressure {
                retry_after_secs,
                waiting,
                limit,
            } => (
                "backpressure",
                "Backlog over its limit",
                format!(
                    "{waiting} jobs are waiting for a worker, over the limit of {limit} \
                     (BACKLOG_LIMIT); nothing was enqueued; retry after {retry_after_secs} s"
                ),
                None,
            ),
            ApiError::Unavailable(what) => (
                "unavailable",
                "Service unavailable",
                format!("{what} is unavailable; retry later"),
                None,
            ),
            ApiError::Timeout { job_id, timeout_ms } => (
                "timeout",
                "Not processed in time",
                format!("job {job_id} was not processed within {timeout_ms} ms; it is queued and will still complete"),
                None,
            ),
            ApiError::Internal => (
                "internal",
                "Internal error",
                "the request could not be completed".to_string(),
                None,
            ),
        };
        problem_response(status, slug, title, detail, errors).into_response()
    }

    /// Maps a queue failure, logging the cause: unreachable Redis is 503, anything else 500.
    pub fn from_queue(e: QueueError) -> ApiError {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "redis unavailable");
            ApiError::Unavailable("Redis".into())
        } else {
            tracing::error!(error = %e, "queue call failed");
            ApiError::Internal
        }
    }

    /// Maps a store failure, logging the cause: unreachable or overloaded Elasticsearch is 503.
    pub fn from_store(e: StoreError) -> ApiError {
        if e.is_transient() {
            tracing::warn!(error = %e, "elasticsearch unavailable");
            ApiError::Unavailable("Elasticsearch".into())
        } else {
            tracing::error!(error = %e, "elasticsearch call failed");
            ApiError::Internal
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::Backpressure {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::Unavailable(_) => Some(1),
            _ => None,
        };
        let mut response = self.problem();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
