//! Reading requests so that every rejection is our problem+json: [`JsonBody`] (415 for a body
//! that is not JSON, 413 past the body limit — declared or streamed —, 400 for malformed JSON,
//! 408 for a body that did not arrive within the body timeout of [`serve`](super::serve)),
//! [`read_body`] for handlers that need the raw bytes first (a signature check), and [`Query`]
//! (422 naming `query`). Only shapes are checked here; field rules belong to the domain.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::conn::{timed_out, BodyTimedOut};
use crate::problem::{FieldError, Problem};

/// Default largest request body: 8 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Default time limit of one request (until its response head): 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The body limit of the service, set by the kit's layers as a request extension.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit(pub usize);

/// Why a request's body or query was refused before any handler logic ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("body too large (limit {limit} bytes)")]
    TooLarge { limit: usize },
    #[error("malformed body: {0}")]
    Malformed(String),
    /// The body did not arrive in full within the body timeout (`HTTP_BODY_TIMEOUT`).
    #[error("body not received within {} ms", .limit.as_millis())]
    BodyTimeout { limit: Duration },
    #[error("invalid query: {0}")]
    Query(String),
}

impl Rejection {
    pub fn problem(&self) -> Problem {
        match self {
            Rejection::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "the body must be JSON: send Content-Type: application/json",
            ),
            Rejection::TooLarge { limit } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Body too large",
                format!("the request body exceeds {limit} bytes"),
            ),
            Rejection::Malformed(why) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                why.clone(),
            ),
            Rejection::BodyTimeout { limit } => Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body timed out",
                format!(
                    "the request body did not arrive in full within {} ms of its head",
                    limit.as_millis()
                ),
            ),
            Rejection::Query(why) => Problem::validation(
                "the query string is invalid",
                vec![FieldError::new("query", why.clone())],
            ),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}

/// Whether the request says its body is JSON (`application/json`, `application/*+json`, with
/// any parameters such as `charset`).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads at most `limit` bytes of `body`; a declared `Content-Length` over it is refused
/// before anything is read.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Rejection::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Rejection::TooLarge { limit })
        }
        Err(e) => {
            if let Some(BodyTimedOut(limit)) = timed_out(&*e) {
                return Err(Rejection::BodyTimeout { limit });
            }
            tracing::debug!(error = %e, "reading request body failed");
            Err(Rejection::Malformed(
                "the request body could not be read".into(),
            ))
        }
    }
}

/// Parses bytes the request declared as JSON.
pub fn parse_json(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, Rejection> {
    if !is_json(headers) {
        return Err(Rejection::UnsupportedMediaType);
    }
    decode_json(bytes)
}

fn decode_json(bytes: &[u8]) -> Result<Value, Rejection> {
    serde_json::from_slice(bytes)
        .map_err(|e| Rejection::Malformed(format!("the body is not valid JSON: {e}")))
}

/// A JSON request body as a `serde_json::Value`, read under the service's body limit.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::<{ usize::MAX }>::from_request(request, state).await?;
        decode_json(&bytes).map(JsonBody)
    }
}

/// A JSON request body as bytes, read under the service's body limit — or `LIMIT` when that is
/// smaller, for a route whose bodies are small (e.g. one packet) — and not parsed: for handlers
/// that parse straight into their own types (no `Value` tree of a hostile body).
#[derive(Debug)]
pub struct JsonBytes<const LIMIT: usize = { usize::MAX }>(pub Bytes);

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for JsonBytes<LIMIT> {
    type Rejection = Rejection;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let limit = limit_of(&request).min(LIMIT);
        let (parts, body) = request.into_parts();
        // The content type first: a body that is not JSON is not read at all.
        if !is_json(&parts.headers) {
            return Err(Rejection::UnsupportedMediaType);
        }
        read_body(&parts.headers, body, limit).await.map(JsonBytes)
    }
}

/// A request body as bytes, read under the service's body limit, whatever its content type
/// (for handlers that must check a signature over the exact bytes before parsing them).
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Rejection;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let limit = limit_of(&request);
        let (parts, body) = request.into_parts();
        read_body(&parts.headers, body, limit).await.map(RawBody)
    }
}

fn limit_of(request: &Request) -> usize {
    request
        .extensions()
        .get::<BodyLimit>()
        .map_or(DEFAULT_BODY_LIMIT, |l| l.0)
}

/// The query string deserialized into `T`; a query that does not fit is a 422 naming `query`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| Rejection::Query(e.body_text()))
    }
}

/// Deepest page a list endpoint serves (`from + size`), Elasticsearch's default window.
pub const MAX_WINDOW: usize = 10_000;
/// Largest page of a list endpoint.
pub const MAX_PAGE: usize = 1000;

/// `?size=&from=` of every list endpoint, as sent (parsed by [`PageParams::resolve`], so an
/// error names the field).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1..=1000 (default 20).
    #[param(value_type = Option<usize>)]
    pub size: Option<String>,
    /// Offset; `from + size` ≤ 10000 (default 0).
    #[param(value_type = Option<usize>)]
    pub from: Option<String>,
}

/// Default page size.
pub const DEFAULT_PAGE: usize = 20;

fn count(value: Option<&str>, name: &str, default: usize) -> Result<usize, FieldError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| FieldError::new(name, "must be a non-negative integer")),
    }
}

impl PageParams {
    /// A page from a handler's own query fields.
    pub fn of(size: Option<String>, from: Option<String>) -> Self {
        PageParams { size, from }
    }

    /// `(size, from)`, the errors noted in `errors` (then `(0, 0)`): for handlers that check
    /// more query fields and answer every error at once.
    pub fn resolve_noting(&self, errors: &mut Vec<FieldError>) -> (usize, usize) {
        self.resolve().unwrap_or_else(|e| {
            errors.extend(e);
            (0, 0)
        })
    }

    /// `(size, from)` within the bounds, or the fields that break them.
    pub fn resolve(&self) -> Result<(usize, usize), Vec<FieldError>> {
        let size = count(self.size.as_deref(), "size", DEFAULT_PAGE);
        let from = count(self.from.as_deref(), "from", 0);
        let (size, from) = match (size, from) {
            (Ok(s), Ok(f)) => (s, f),
            (s, f) => return Err(s.err().into_iter().chain(f.err()).collect()),
        };
        if size == 0 || size > MAX_PAGE {
            Err(vec![FieldError::new(
                "size",
                format!("must be between 1 and {MAX_PAGE}"),
            )])
        } else if from.saturating_add(size) > MAX_WINDOW {
            Err(vec![FieldError::new(
                "from",
                format!("from + size must be at most {MAX_WINDOW}"),
            )])
        } else {
            Ok((size, from))
        }
    }
}
