//! The webhook service: receives signed collated resources on `POST /webhooks/resources`, stores
//! each once in index `{prefix}resources` and as `OUTPUT_DIR/<resource_id>.json`, and serves them
//! back. It never talks to Redis or the queue; duplicates are recognised by the stored document.
//!
//! Reading order: [`config`] → [`state`] → [`error`] → [`routes`] → [`store`] and [`output`] →
//! [`run`].

pub mod config;
pub mod error;
pub mod files;
pub mod group;
pub mod output;
pub mod routes;
pub mod state;
pub mod store;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::ApiError;
pub use routes::router;
pub use state::AppState;
pub use store::{DeliveredResource, ResourceStore};

/// Serves until `shutdown` is cancelled, then drains in-flight requests.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = AppState::new(&config)?;
    std::fs::create_dir_all(&config.output_dir)
        .map_err(|e| anyhow::anyhow!("creating OUTPUT_DIR {}: {e}", config.output_dir.display()))?;
    let warm = state.clone();
    let warm_shutdown = shutdown.clone();
    tokio::spawn(async move {
        if warm.store.ensure_until(&warm_shutdown).await {
            warm.mark_index_ready();
        }
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, output_dir = %config.output_dir.display(), index = state.store.index(), "webhook service listening");
    service_kit::http::serve(listener, router(state), &config.http, shutdown).await?;
    Ok(())
}
