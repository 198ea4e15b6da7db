//! The API's routes and its OpenAPI document, from one list: each handler is registered with
//! `routes!` on an `OpenApiRouter`, so a route cannot be served without being documented (or
//! documented without being served). Handlers are grouped by what they serve: [`ingest`]
//! (POST), [`read`] (stored messages) and [`stats`]. Health, readiness and metrics are the
//! kit's, merged in here so the document covers them too.

mod auth;
mod contract;
pub mod ingest;
pub mod read;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Json, Router};
use service_kit::http::{Check, HttpKit};
use service_kit::problem::Problem;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Conveyor consumer API",
        description = "Ingest packets into the Conveyor queue; read stored messages and stats."
    ),
    components(schemas(service_kit::problem::Problem, service_kit::problem::FieldError))
)]
struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses(
    (status = 200, description = "OpenAPI 3 document", body = Object),
    (status = 503, description = "The API over MAX_CONCURRENT_REQUESTS (`overloaded`); see Retry-After", body = Problem, content_type = "application/problem+json"),
))]
async fn openapi_json(Extension(doc): Extension<Arc<OpenApi>>) -> Json<OpenApi> {
    Json(doc.as_ref().clone())
}

/// The kit configured for the consumer: its body limit, a time limit above the longest
/// `?wait=true`, and readiness = Redis answers PING and Elasticsearch is not red.
fn kit(state: &AppState) -> HttpKit {
    let config = state.config();
    let ready = state.clone();
    HttpKit::new("consumer")
        .access(state.access().clone())
        .body_limit(config.max_body_bytes)
        .request_timeout(
            Duration::from_millis(config.wait_max_ms) + config.dependency_timeout() * 2,
        )
        .readiness(move || {
            let state = ready.clone();
            async move {
                let (redis, es) = tokio::join!(state.ping_redis(), state.ping_store());
                vec![
                    Check::new("redis", redis.is_ok()),
                    Check::new("elasticsearch", es.is_ok()),
                ]
            }
        })
}

/// The routes and their document.
fn api(state: AppState, kit: &HttpKit) -> (Router, OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(ingest::post_message))
        .routes(routes!(read::list_messages))
        .routes(routes!(ingest::post_batch))
        .routes(routes!(read::get_message))
        .routes(routes!(stats::stats))
        .routes(routes!(openapi_json))
        .with_state(state)
        .merge(kit.routes())
        .split_for_parts();
    let mut doc = doc;
    utoipa::Modify::modify(&contract::EdgeContract, &mut doc);
    utoipa::Modify::modify(&auth::SecurityScheme_, &mut doc);
    (router, doc)
}

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi(state: AppState) -> OpenApi {
    let kit = kit(&state);
    api(state, &kit).1
}

/// The whole API over `state`, wrapped in the kit's layers (404/405 problem+json, panics as
/// 500 problem+json, request ids, metrics, limits).
pub fn router(state: AppState) -> Router {
    let kit = kit(&state);
    let (routes, doc) = api(state, &kit);
    kit.wrap(routes.layer(Extension(Arc::new(doc))))
}
