//! Per-request metrics: `conveyor_http_requests_total{route,status}` and the latency histogram
//! `conveyor_http_request_duration_seconds{route}`, labelled by the matched route template (never
//! the raw path, so labels stay bounded). Labels of the known routes and common statuses are
//! static strings, so recording allocates nothing on the hot path.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use metrics::SharedString;

use crate::ROUTES;

/// The route template as a label, borrowed (no allocation) for every route of [`ROUTES`].
fn route_label(matched: Option<&MatchedPath>) -> SharedString {
    let Some(path) = matched.map(MatchedPath::as_str) else {
        return SharedString::const_str("unmatched");
    };
    match ROUTES.iter().find(|(_, template)| *template == path) {
        Some((_, template)) => SharedString::const_str(template),
        None => SharedString::from(path.to_string()),
    }
}

/// The status code as a label, borrowed for the answers the ingest path gives most.
fn status_label(status: StatusCode) -> SharedString {
    match status.as_u16() {
        200 => SharedString::const_str("200"),
        202 => SharedString::const_str("202"),
        429 => SharedString::const_str("429"),
        503 => SharedString::const_str("503"),
        other => SharedString::from(other.to_string()),
    }
}

pub async fn record(request: Request, next: Next) -> Response {
    let route = route_label(request.extensions().get::<MatchedPath>());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = status_label(response.status());
    metrics::counter!("conveyor_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("conveyor_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}
