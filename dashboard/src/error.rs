//! The dashboard's two error types. [`SourceError`]: why the figures could not be read, one
//! type for both sources; its text is shown on the page (the source's status line), so it names
//! no secrets. [`AdminError`]: why an admin request was not carried out, named for what the
//! caller sees and answered as problem+json; Redis trouble is logged with its cause and answered
//! as a plain 503, nothing internal is echoed. The dashboard's other error answer is the 503 of
//! `/events` past `MAX_SSE_CLIENTS` (routes/events.rs); unknown paths and wrong methods are the
//! kit's 404/405.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use queue::QueueError;
use service_kit::http::{Denied, Rejection};
use service_kit::problem::{FieldError, Problem};

/// A failed round trip of the poller to Elasticsearch or Redis.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("elasticsearch unreachable: {0}")]
    EsUnreachable(String),
    #[error("elasticsearch answered {status}: {reason}")]
    EsRejected { status: u16, reason: String },
    #[error("elasticsearch answer not understood: {0}")]
    EsDecode(String),
    #[error("redis: {0}")]
    Redis(String),
    #[error("redis: no answer within {0} ms")]
    RedisTimeout(u128),
}

/// Why an admin request was not carried out. In every case nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No admin key, an unknown one, or one without the `admin` grant: 401 / 403.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// A body that is not JSON, too large or malformed: 415 / 413 / 400 / 408.
    #[error(transparent)]
    Body(#[from] Rejection),
    /// A body or query of the right shape breaking a rule: 422 naming the fields.
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    /// No such queue or dead letter: 404.
    #[error("{0}")]
    NotFound(String),
    /// Redis could not be read or written: 503 with `Retry-After`.
    #[error("redis unavailable")]
    Unavailable,
}

impl AdminError {
    /// A queue-library error: a refusal (the letter is gone) is a 404, anything else is Redis
    /// trouble, logged with `what` was being done.
    pub fn from_queue(what: &str, e: QueueError) -> AdminError {
        match e {
            QueueError::Refused(why) => AdminError::NotFound(why),
            other => {
                tracing::warn!(error = %other, what, "admin: redis call failed");
                AdminError::Unavailable
            }
        }
    }

    pub fn validation(name: &str, message: impl Into<String>) -> AdminError {
        AdminError::Validation(vec![FieldError::new(name, message)])
    }

    pub fn problem(&self) -> Problem {
        match self {
            AdminError::Denied(denied) => denied.problem(),
            AdminError::Body(rejection) => rejection.problem(),
            AdminError::Validation(errors) => {
                Problem::validation("the request breaks a rule", errors.clone())
            }
            AdminError::NotFound(what) => Problem::not_found(what.clone()),
            AdminError::Unavailable => Problem::unavailable("redis"),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let unauthenticated = matches!(self, AdminError::Denied(Denied::Unauthenticated(_)));
        let mut response = self.problem().into_response();
        if unauthenticated {
            // Bearer only: a Basic challenge would make a browser offer its login prompt, and
            // a browser resends Basic credentials on its own (what CSRF rides on).
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"conveyor-admin\""),
            );
        }
        response
    }
}
