//! `application/problem+json` (RFC 9457) answers shared by every HTTP service: the body shape
//! (`type`, `title`, `status`, `detail`, and per-field `errors` for 422) and one function building
//! status, content type and body. Framework-free (only `http` types): each service's error type
//! maps itself onto [`problem_response`]. It never logs and never sees internal causes.

use http::{header, HeaderName, StatusCode};
use serde::Serialize;

/// One field's rule violation, `{"name","message"}` — the same type the packet parser reports.
pub use crate::packet::FieldError;

/// Content type of every error answer.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Prefix of every problem `type`: `urn:conveyor:problem:<kind>`.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:conveyor:problem:";

/// The problem+json body (also the OpenAPI schema of error answers).
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
}

impl Problem {
    /// A problem of `kind` (a slug such as `validation`, prefixed with [`PROBLEM_TYPE_PREFIX`]).
    pub fn new(
        status: StatusCode,
        kind: &str,
        title: &str,
        detail: impl Into<String>,
        errors: Option<Vec<FieldError>>,
    ) -> Problem {
        Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Status, the problem+json content-type header and the serialised body. An axum handler can
/// return this tuple as it is (it implements `IntoResponse`).
pub type ProblemResponse = (StatusCode, [(HeaderName, &'static str); 1], String);

/// The whole error answer for `status` (see [`Problem::new`] for the arguments).
pub fn problem_response(
    status: StatusCode,
    kind: &str,
    title: &str,
    detail: impl Into<String>,
    errors: Option<Vec<FieldError>>,
) -> ProblemResponse {
    let problem = Problem::new(status, kind, title, detail, errors);
    (
        status,
        [(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)],
        problem.to_json().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_names_fields_like_the_packet_parser() {
        let (status, headers, body) = problem_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid fields",
            "1 field(s) failed validation",
            Some(vec![FieldError::new("resource_id", "bad")]),
        );
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(headers[0].0, header::CONTENT_TYPE);
        assert_eq!(headers[0].1, "application/problem+json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "urn:conveyor:problem:validation",
                "title": "Invalid fields",
                "status": 422,
                "detail": "1 field(s) failed validation",
                "errors": [{"name": "resource_id", "message": "bad"}],
            })
        );
    }

    #[test]
    fn errors_are_omitted_when_there_are_none() {
        let (_, _, body) =
            problem_response(StatusCode::NOT_FOUND, "not-found", "Not found", "x", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], 404);
        assert!(v.get("errors").is_none(), "{v}");
    }
}
