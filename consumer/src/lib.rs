//! The consumer: Conveyor's HTTP ingest API (axum) — it *consumes* the producers' requests. It
//! validates packets at the edge, stamps `received_at`, enqueues `MessageJob`s on the `messages`
//! queue, and serves stored messages, stats, health, metrics and its OpenAPI document. It never
//! processes jobs or writes to Elasticsearch (the worker does), and keeps no per-request state
//! between requests.
//!
//! Reading order: [`config`] → [`state`] → [`error`] → [`routes`] → [`run`].

pub mod config;
pub mod error;
pub mod routes;
pub mod state;

use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::ApiError;
pub use routes::{openapi, router};
pub use state::AppState;

/// Serves the API on `listener` until `shutdown` is cancelled, then drains in-flight requests.
/// The messages' daily indices and alias are set up in the background (retried while
/// Elasticsearch is down), so the API starts — and `/readyz` reports — even when a dependency
/// is missing.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    service_kit::telemetry::prometheus();
    let state = AppState::new(&config)?;
    // Serving starts while Redis may still be down; a partition count that disagrees with the
    // queue's stops the process (with the reason) as soon as Redis answers.
    let partitions = service_kit::partitions::guard(
        state.pool().clone(),
        vec![config.messages_queue()],
        shutdown.clone(),
    );
    tokio::spawn(ensure_indices(state.clone(), shutdown.clone()));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, namespace = %config.common.redis.queue_namespace,
        partitions = config.common.redis.queue_partitions, "consumer listening");
    service_kit::http::serve(
        listener,
        router(state),
        &config.common.http,
        shutdown.clone(),
    )
    .await?;
    shutdown.cancel();
    partitions.await??;
    tracing::info!("consumer stopped");
    Ok(())
}

/// The messages' indices, template and alias (and the move of an earlier release's index
/// behind the alias), as the worker sets them up: whichever starts first does it.
async fn ensure_indices(state: AppState, shutdown: CancellationToken) {
    state.store().ensure_messages_until(&shutdown).await;
}
