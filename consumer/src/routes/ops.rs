//! Operations endpoints: `GET /stats` (Elasticsearch stats + queue counters, fetched
//! concurrently), `/healthz` (the process answers), `/readyz` (Redis PING and Elasticsearch
//! health, 503 if either fails) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;
use pipeline::problem::Problem;

/// Counters of the `messages` queue.
#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct QueueCounts {
    pub backlog: u64,
    pub pending: u64,
    pub delayed: u64,
    pub dead: u64,
    pub workers: u64,
}

/// `GET /stats`: `null` where a window is empty.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatsAnswer {
    pub max_number: Option<u64>,
    pub avg_transit_ms_10s: Option<f64>,
    pub count_10s: u64,
    pub total: u64,
    pub queue: QueueCounts,
}

/// Readiness of each dependency: `"ok"` or `"down"`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    pub redis: String,
    pub elasticsearch: String,
}

/// Highest number, 10 s transit average and count, total stored, and queue counters.
#[utoipa::path(
    get, path = "/stats", tag = "ops",
    responses(
        (status = 200, description = "Current stats", body = StatsAnswer),
        (status = 503, description = "Redis or Elasticsearch unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stats(State(state): State<AppState>) -> Result<Json<StatsAnswer>, ApiError> {
    let store = state.store();
    let queue = state.queue();
    let (messages, counts) = tokio::join!(
        state.bounded("Elasticsearch", async {
            store.stats().await.map_err(ApiError::from_store)
        }),
        state.bounded("Redis", async {
            queue.stats().await.map_err(ApiError::from_queue)
        }),
    );
    let (m, q) = (messages?, counts?);
    Ok(Json(StatsAnswer {
        max_number: m.max_number,
        avg_transit_ms_10s: m.avg_transit_ms_10s,
        count_10s: m.count_10s,
        total: m.total,
        queue: QueueCounts {
            backlog: q.backlog,
            pending: q.pending,
            delayed: q.delayed,
            dead: q.dead,
            workers: q.workers,
        },
    }))
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: Redis answers PING and Elasticsearch reports a green or yellow cluster.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Both dependencies reachable", body = Readiness),
        (status = 503, description = "A dependency is down", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store();
    let (redis, es) = tokio::join!(
        state.ping_redis(),
        state.bounded("Elasticsearch", async {
            store.ping().await.map_err(ApiError::from_store)
        }),
    );
    let word = |ok: bool| if ok { "ok" } else { "down" }.to_string();
    let status = if redis.is_ok() && es.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        redis: word(redis.is_ok()),
        elasticsearch: word(es.is_ok()),
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    pipeline::telemetry::metrics_response().into_response()
}
