//! `application/problem+json` (RFC 9457), the one shape of every error answer of every service:
//! `type`, `title`, `status`, `detail`, per-field `errors` for 422, and `Retry-After` on the
//! answers that invite a retry. Each service's `ApiError` maps itself onto a [`Problem`]; the
//! kit's own rejections (404, 405, 413, 415, 400, a panic, a timeout) use the same type, so an
//! answer looks the same whichever layer gave it. It never logs and never sees internal causes.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

/// Content type of every error answer.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Prefix of every problem `type`: `urn:conveyor:problem:<kind>`.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:conveyor:problem:";

/// One field's rule violation, `{"name","message"}`: `name` is the field (`$` for the whole
/// body, `[i].field` for item `i` of a batch, `query` for the query string).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub name: String,
    pub message: String,
}

impl FieldError {
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// The problem+json body (also the OpenAPI schema of error answers), plus the `Retry-After`
/// header it is sent with (not part of the body).
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:conveyor:problem:validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Per-field errors (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Seconds a client should wait before retrying (sent as `Retry-After`).
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    /// A problem of `kind` (a slug such as `validation`, prefixed with [`PROBLEM_TYPE_PREFIX`]).
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
            retry_after_secs: None,
        }
    }

    /// With per-field errors (the 422 answers).
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Problem {
        self.errors = Some(errors);
        self
    }

    /// With a `Retry-After` header of `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Problem {
        self.retry_after_secs = Some(secs);
        self
    }

    /// 404 for a path no route serves (or a resource that does not exist).
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 405 for a known path asked with a method it does not serve.
    pub fn method_not_allowed() -> Problem {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this path does not accept that method",
        )
    }

    /// 422 with the fields that broke a rule.
    pub fn validation(detail: impl Into<String>, errors: Vec<FieldError>) -> Problem {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid request",
            detail,
        )
        .with_errors(errors)
    }

    /// 503 naming the dependency that is down, with `Retry-After: 1`.
    pub fn unavailable(what: &str) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            format!("{what} is unavailable; retry later"),
        )
        .retry_after(1)
    }

    /// 503 for a service that sheds load (too many requests or streams at once), with
    /// `Retry-After: 1`.
    pub fn overloaded(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Overloaded",
            detail,
        )
        .retry_after(1)
    }

    /// 500 that says nothing about the cause (it is logged where it happened).
    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed",
        )
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.to_json().to_string();
        let mut response = (
            self.status_code(),
            [(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_names_fields_like_the_packet_parser() {
        let problem = Problem::validation(
            "1 field(s) failed validation",
            vec![FieldError::new("resource_id", "bad")],
        );
        assert_eq!(problem.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            problem.to_json(),
            serde_json::json!({
                "type": "urn:conveyor:problem:validation",
                "title": "Invalid request",
                "status": 422,
                "detail": "1 field(s) failed validation",
                "errors": [{"name": "resource_id", "message": "bad"}],
            })
        );
        let response = problem.into_response();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn errors_are_omitted_when_there_are_none_and_retry_after_is_a_header() {
        let problem = Problem::unavailable("Redis");
        let v = problem.to_json();
        assert_eq!(v["status"], 503);
        assert!(v.get("errors").is_none(), "{v}");
        assert!(v.get("retry_after_secs").is_none(), "{v}");
        let response = problem.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
