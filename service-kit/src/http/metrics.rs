//! Per-request metrics of every service: `conveyor_http_requests_total{route,status}` and
//! `conveyor_http_request_duration_seconds{route}`, labelled by the matched route template
//! (never the raw path, so labels stay bounded). Labels are interned once per template and
//! status, so recording allocates nothing on the hot path. It also stamps [`ReceivedAt`].

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::{Instant, SystemTime};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::SharedString;

/// Route templates and status codes seen so far, leaked once each: both sets are bounded (the
/// routes of the router, the status codes it answers).
static LABELS: LazyLock<RwLock<HashMap<String, &'static str>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

fn interned(text: &str) -> SharedString {
    if let Some(label) = LABELS.read().ok().and_then(|m| m.get(text).copied()) {
        return SharedString::const_str(label);
    }
    let mut labels = LABELS.write().unwrap_or_else(|e| e.into_inner());
    let label = *labels
        .entry(text.to_string())
        .or_insert_with(|| Box::leak(text.to_string().into_boxed_str()));
    SharedString::const_str(label)
}

fn status_label(status: u16) -> SharedString {
    match status {
        200 => SharedString::const_str("200"),
        202 => SharedString::const_str("202"),
        other => interned(&other.to_string()),
    }
}

/// When the request reached the service (before its body was read), a request extension set
/// for every handler: a service that stamps arrival times reads it instead of the clock.
#[derive(Clone, Copy, Debug)]
pub struct ReceivedAt(pub SystemTime);

pub(super) async fn record(mut request: Request, next: Next) -> Response {
    request
        .extensions_mut()
        .insert(ReceivedAt(SystemTime::now()));
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => interned(path.as_str()),
        None => SharedString::const_str("unmatched"),
    };
    let start = Instant::now();
    let response = next.run(request).await;
    let status = status_label(response.status().as_u16());
    metrics::counter!("conveyor_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("conveyor_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}
