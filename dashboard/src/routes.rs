//! The dashboard's HTTP surface: the page, `/events` (SSE), `/api/stats`, `/healthz`, `/metrics`.
//! Handlers only read the latest published snapshot; they never query Elasticsearch or Redis.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::stream::{self, Stream, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::poller::{PollCounters, Published};

/// The page: one self-contained HTML file (inline CSS and JS, nothing fetched from elsewhere).
const PAGE: &str = include_str!("../assets/index.html");

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub snapshots: watch::Receiver<Arc<Published>>,
    pub counters: Arc<PollCounters>,
    pub sse_clients: Arc<AtomicU64>,
    pub shutdown: CancellationToken,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/api/stats", get(api_stats))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

/// `conveyor_http_requests_total{route,status}` for every answered request.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("conveyor_http_requests_total", "route" => route, "status" => status)
        .increment(1);
    response
}

async fn page() -> Response {
    let mut resp = Html(PAGE).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn api_stats(State(state): State<AppState>) -> Response {
    let latest = state.snapshots.borrow().clone();
    let mut resp = (
        [(header::CONTENT_TYPE, "application/json")],
        latest.json.clone(),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<AppState>) -> Response {
    let c = &state.counters;
    let mut text = pipeline::telemetry::render_metrics();
    let own = [
        (
            "conveyor_dashboard_es_queries_total",
            "counter",
            "Elasticsearch stats round trips made by the poller",
            c.es_queries.load(Ordering::Relaxed),
        ),
        (
            "conveyor_dashboard_es_errors_total",
            "counter",
            "Elasticsearch stats round trips that failed",
            c.es_errors.load(Ordering::Relaxed),
        ),
        (
            "conveyor_dashboard_redis_errors_total",
            "counter",
            "Queue stats reads that failed",
            c.redis_errors.load(Ordering::Relaxed),
        ),
        (
            "conveyor_dashboard_sse_clients",
            "gauge",
            "Open /events connections",
            state.sse_clients.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in own {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// Counts an open `/events` connection for as long as its stream lives.
struct ClientGuard(Arc<AtomicU64>);

impl ClientGuard {
    fn new(counter: Arc<AtomicU64>) -> ClientGuard {
        counter.fetch_add(1, Ordering::Relaxed);
        ClientGuard(counter)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One `stats` event with the latest snapshot at once, then one per published snapshot.
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let guard = ClientGuard::new(state.sse_clients.clone());
    let rx = state.snapshots.clone();
    let updates = stream::unfold((rx, true, guard), |(mut rx, first, guard)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let latest = rx.borrow_and_update().clone();
        let mut event = Event::default().event("stats").data(latest.json.as_str());
        if first {
            event = event.retry(Duration::from_secs(1));
        }
        Some((Ok(event), (rx, false, guard)))
    });
    let until_shutdown = updates.take_until(state.shutdown.cancelled_owned());
    Sse::new(until_shutdown).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}
