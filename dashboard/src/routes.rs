//! The dashboard's HTTP surface: the page, `/events` (SSE), `/api/stats`, `/healthz`, `/metrics`.
//! Handlers only read the latest published snapshot; they never query Elasticsearch or Redis.
//! Unknown paths (404) and wrong methods (405) answer `application/problem+json`.

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
use pipeline::problem::{problem_response, ProblemResponse};
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
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

async fn not_found() -> ProblemResponse {
    problem_response(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such route",
        None,
    )
}

async fn method_not_allowed() -> ProblemResponse {
    problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this path does not accept that method",
        None,
    )
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
    let (content_type, mut text) = pipeline::telemetry::metrics_response();
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
    (content_type, text).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    /// The router on a real port 0 listener, with the snapshot before the first poll.
    async fn serve() -> (String, CancellationToken) {
        let (_tx, rx) = watch::channel(Published::new(Snapshot::initial(chrono::Utc::now())));
        let shutdown = CancellationToken::new();
        let state = AppState {
            snapshots: rx,
            counters: Arc::new(PollCounters::default()),
            sse_clients: Arc::new(AtomicU64::new(0)),
            shutdown: shutdown.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        (url, shutdown)
    }

    #[tokio::test]
    async fn unknown_paths_and_wrong_methods_answer_problem_json() {
        let (url, shutdown) = serve().await;
        let http = reqwest::Client::new();
        for (method, path, status) in [
            (reqwest::Method::GET, "/nope", 404),
            (reqwest::Method::POST, "/api/stats", 405),
            (reqwest::Method::DELETE, "/", 405),
        ] {
            let resp = http
                .request(method.clone(), format!("{url}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), status, "{method} {path}");
            assert_eq!(
                resp.headers()["content-type"],
                "application/problem+json",
                "{method} {path}"
            );
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["status"], status, "{body}");
            assert!(body["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:conveyor:problem:"));
        }
        let metrics = http.get(format!("{url}/metrics")).send().await.unwrap();
        assert_eq!(
            metrics.headers()["content-type"],
            "text/plain; version=0.0.4"
        );
        let text = metrics.text().await.unwrap();
        assert!(text.contains("conveyor_dashboard_sse_clients 0"), "{text}");
        shutdown.cancel();
    }
}
