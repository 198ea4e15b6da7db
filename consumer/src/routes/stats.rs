//! `GET /stats`: the stored messages' figures (Elasticsearch) and the `messages` queue's
//! counters (Redis), fetched concurrently. Health, readiness and metrics come from the kit.

use axum::extract::State;
use axum::Json;
use pipeline::store::MessageStats;
use queue::QueueStats;
use serde::{Deserialize, Serialize};
use service_kit::problem::Problem;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /stats`: `null` where a window is empty.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatsAnswer {
    #[serde(flatten)]
    pub messages: MessageStats,
    /// Counters of the `messages` queue.
    pub queue: QueueStats,
}

/// Highest number, 10 s transit average and count, total stored, and queue counters.
#[utoipa::path(
    get, path = "/stats", tag = "ops",
    responses(
        (status = 200, description = "Current stats", body = StatsAnswer),
        (status = 503, description = "Redis or Elasticsearch unavailable, or the API over MAX_CONCURRENT_REQUESTS (`overloaded`); see Retry-After", body = Problem, content_type = "application/problem+json"),
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
        messages: m,
        queue: q,
    }))
}
