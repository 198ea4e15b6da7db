//! The consumer: Conveyor's HTTP ingest API (axum). It validates packets at the edge, stamps
//! `received_at`, enqueues `MessageJob`s on the `messages` queue, and serves stored messages,
//! stats, health, metrics and its OpenAPI document. It never processes jobs or writes to
//! Elasticsearch (the worker does), and keeps no per-request state between requests.
//!
//! Reading order: [`config`] → [`state`] → [`body`] and [`error`] → [`routes`] → [`router`] / [`run`].

pub mod body;
pub mod config;
pub mod error;
pub mod http_metrics;
pub mod openapi;
pub mod routes;
pub mod state;

use std::any::Any;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use config::Config;
pub use error::ApiError;
pub use state::AppState;

use routes::{ingest, ops, read};

/// Every route of the API (method, path template) — the OpenAPI document covers each.
pub const ROUTES: [(&str, &str); 9] = [
    ("post", "/messages"),
    ("get", "/messages"),
    ("post", "/messages/batch"),
    ("get", "/messages/{producer}/{number}"),
    ("get", "/stats"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// The whole API over `state`. Unknown paths answer 404 and wrong methods 405, both as
/// problem+json; a panic in a handler answers 500 problem+json instead of dropping the connection.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/messages",
            post(ingest::post_message).get(read::list_messages),
        )
        .route("/messages/batch", post(ingest::post_batch))
        .route("/messages/{producer}/{number}", get(read::get_message))
        .route("/stats", get(ops::stats))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Bodies are read by `body::read_json` under MAX_BODY_BYTES, so 413 is problem+json too.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(http_metrics::record))
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

fn panic_answer(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal.into_response()
}

/// Serves the API on `listener` until `shutdown` is cancelled, then drains in-flight requests.
/// The `messages` index is created in the background (retried while Elasticsearch is down), so
/// the API starts — and `/readyz` reports — even when a dependency is missing.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    pipeline::telemetry::prometheus();
    let state = AppState::new(&config)?;
    tokio::spawn(ensure_indices(state.clone(), shutdown.clone()));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, namespace = %config.redis.queue_namespace, "consumer listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    tracing::info!("consumer stopped");
    Ok(())
}

async fn ensure_indices(state: AppState, shutdown: CancellationToken) {
    let store = state.store();
    let body = pipeline::store::messages_index_body();
    store
        .ensure_until(store.messages_index(), body, &shutdown)
        .await;
}
