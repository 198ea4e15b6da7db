//! The one error type of the HTTP API, named for what the client sees, and its single mapping
//! onto a `service_kit::problem::Problem` (problem+json with `Retry-After` on 429 and 503).
//! Internal causes are logged where they happen (or in the `from_*` mappings), never put in an
//! answer. Rejections of the request's shape (415, 413, 400, 404, 405) come from the kit.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pipeline::packet::EdgeError;
use pipeline::store::StoreError;
use queue::QueueError;
use service_kit::http::{Denied, Rejection};
use service_kit::problem::{FieldError, Problem};

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// No, a wrong, or an insufficient API key (401 / 403 with `WWW-Authenticate`).
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    /// Packets that broke the edge rules: the first errors and how many there were in all.
    #[error("invalid packet fields")]
    Invalid {
        errors: Vec<FieldError>,
        total: usize,
    },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("backlog over its limit ({waiting} waiting, limit {limit})")]
    Backpressure {
        retry_after_secs: u64,
        /// Jobs really waiting (not yet delivered to a worker) at the last reading.
        waiting: u64,
        /// `BACKLOG_LIMIT`.
        limit: u64,
    },
    #[error("backlog over its byte budget ({bytes} bytes, limit {limit})")]
    BackpressureBytes {
        retry_after_secs: u64,
        /// Bytes the queue's jobs held in Redis at the last reading.
        bytes: u64,
        /// `BACKLOG_LIMIT_BYTES`.
        limit: u64,
    },
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// Redis is at `maxmemory` and refuses writes.
    #[error("redis is full")]
    Full,
    /// Enqueued on the Redis master, but fewer replicas than `REDIS_WAIT_REPLICAS` confirmed it
    /// in time: not durable across a failover, so not a 202.
    #[error("not replicated ({acked} of {wanted} replicas)")]
    NotReplicated { wanted: u32, acked: u32 },
    #[error("not processed in time")]
    Timeout { job_id: String, timeout_ms: u64 },
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The problem+json answer of this error.
    pub fn problem(self) -> Problem {
        match self {
            ApiError::Rejected(rejection) => rejection.problem(),
            ApiError::Denied(denied) => denied.problem(),
            ApiError::Validation(errors) => Problem::validation(
                format!(
                    "{} field(s) failed validation; nothing was enqueued",
                    errors.len()
                ),
                errors,
            ),
            ApiError::Invalid { errors, total } => {
                let listed = if total > errors.len() {
                    format!(" (the first {} are listed)", errors.len())
                } else {
                    String::new()
                };
                Problem::validation(
                    format!("{total} field(s) failed validation{listed}; nothing was enqueued"),
                    errors,
                )
            }
            ApiError::NotFound(what) => Problem::not_found(what),
            ApiError::Backpressure {
                retry_after_secs,
                waiting,
                limit,
            } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "backpressure",
                "Backlog over its limit",
                format!(
                    "{waiting} jobs are waiting for a worker, over the limit of {limit} \
                     (BACKLOG_LIMIT); nothing was enqueued; retry after {retry_after_secs} s"
                ),
            )
            .retry_after(retry_after_secs),
            ApiError::BackpressureBytes {
                retry_after_secs,
                bytes,
                limit,
            } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "backpressure",
                "Backlog over its limit",
                format!(
                    "the queued jobs hold {bytes} bytes in Redis, over the budget of {limit} \
                     (BACKLOG_LIMIT_BYTES); nothing was enqueued; retry after {retry_after_secs} s"
                ),
            )
            .retry_after(retry_after_secs),
            ApiError::Unavailable(what) => Problem::unavailable(&what),
            ApiError::Full => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-full",
                "Queue storage full",
                "Redis reached its memory limit (maxmemory) and refuses new jobs until workers \
                 drain the queue; nothing was enqueued, retry later",
            )
            .retry_after(2),
            ApiError::NotReplicated { wanted, acked } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-replicated",
                "Not replicated",
                format!(
                    "the message reached the Redis master but {acked} of the {wanted} replicas \
                     required (REDIS_WAIT_REPLICAS) confirmed it in time, so a failover could \
                     lose it; it may still be processed — send the same packet again: it is \
                     enqueued at most once (its producer and number are its id)"
                ),
            )
            .retry_after(1),
            ApiError::Timeout { job_id, timeout_ms } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "Not processed in time",
                format!("job {job_id} was not processed within {timeout_ms} ms; it is queued and will still complete"),
            ),
            ApiError::Internal => Problem::internal(),
        }
    }

    /// Maps a queue failure, logging the cause: unreachable Redis is 503, anything else 500.
    pub fn from_queue(e: QueueError) -> ApiError {
        if e.is_full() {
            tracing::warn!(error = %e, "redis refuses writes: maxmemory reached");
            metrics::counter!("conveyor_http_storage_full_total").increment(1);
            return ApiError::Full;
        }
        if let QueueError::NotReplicated { wanted, acked } = e {
            tracing::warn!(wanted, acked, "enqueue not confirmed by enough replicas");
            return ApiError::NotReplicated { wanted, acked };
        }
        Self::from_dependency("Redis", e.is_unavailable(), &e)
    }

    /// Maps a store failure, logging the cause: unreachable or overloaded Elasticsearch is 503.
    pub fn from_store(e: StoreError) -> ApiError {
        Self::from_dependency("Elasticsearch", e.is_transient(), &e)
    }

    /// A dependency's failure: 503 naming it when it may pass, else 500; the cause is logged.
    fn from_dependency(name: &str, transient: bool, error: &dyn std::fmt::Display) -> ApiError {
        if transient {
            tracing::warn!(dependency = name, %error, "dependency unavailable");
            ApiError::Unavailable(name.to_string())
        } else {
            tracing::error!(dependency = name, %error, "dependency call failed");
            ApiError::Internal
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            // Carries its WWW-Authenticate challenges.
            ApiError::Denied(denied) => denied.into_response(),
            other => other.problem().into_response(),
        }
    }
}

impl From<EdgeError> for ApiError {
    fn from(e: EdgeError) -> Self {
        match e {
            EdgeError::Malformed(why) => ApiError::Rejected(Rejection::Malformed(why)),
            EdgeError::Invalid { errors, total } => ApiError::Invalid { errors, total },
        }
    }
}
