//! Per-request metrics: `conveyor_http_requests_total{route,status}` and the latency histogram
//! `conveyor_http_request_duration_seconds{route}`, labelled by the matched route template (never
//! the raw path, so labels stay bounded).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub async fn record(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("conveyor_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("conveyor_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}
