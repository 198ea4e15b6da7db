//! The fallbacks and the layer stack of `HttpKit::wrap`, outermost last in the code. The request
//! span continues the caller's W3C `traceparent`.

use std::any::Any;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::body::BodyLimit;
use super::metrics;
use crate::problem::Problem;

/// Header carrying the request id (taken from the client when sent, generated otherwise).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(super) fn wrap(
    app: Router,
    body_limit: usize,
    request_timeout: Duration,
    access: super::access::Access,
) -> Router {
    app.fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        // Innermost: sees the matched route template.
        .layer(middleware::from_fn(metrics::record))
        .layer(Extension(BodyLimit(body_limit)))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            access,
            super::access::read_gate,
        ))
        .layer(middleware::from_fn_with_state(request_timeout, time_limit))
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(TraceLayer::new_for_http().make_span_with(span))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

fn span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let span = tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id);
    // The caller's trace continues here (a malformed or missing `traceparent` starts a new one).
    let parent = request
        .headers()
        .get(crate::trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    crate::trace::continue_from(&span, parent);
    span
}

/// 503 problem+json when the handler has not produced a response head within the limit.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(limit_ms = limit.as_millis() as u64, "request timed out");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request-timeout",
                "Request timed out",
                format!(
                    "the request was not answered within {} ms; retry later",
                    limit.as_millis()
                ),
            )
            .retry_after(1)
            .into_response()
        }
    }
}

fn panic_answer(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Problem::internal().into_response()
}
