//! The webhook service: receives signed collated resources on `POST /webhooks/resources`, stores each
//! once in index `{prefix}resources` and as `OUTPUT_DIR/<resource_id>.json`, and serves them back.
//! It never talks to Redis or the queue; duplicates are recognised by the stored document.

mod config;
mod error;
pub mod output;
mod routes;
pub mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pipeline::store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::ApiError;
pub use routes::router;
pub use store::{DeliveredResource, ResourceStore};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: ResourceStore,
    pub secret: Arc<Vec<u8>>,
    pub output_dir: Arc<std::path::PathBuf>,
    pub tolerance_secs: i64,
    index_ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let store = ResourceStore::new(Store::new(&config.elastic)?);
        Ok(AppState {
            store,
            secret: Arc::new(config.secret.as_bytes().to_vec()),
            output_dir: Arc::new(config.output_dir.clone()),
            tolerance_secs: config.tolerance_secs,
            index_ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Creates the index once per process; writes wait for it so no document lands in an
    /// index with a guessed mapping.
    pub async fn ensure_index(&self) -> Result<(), StoreError> {
        if self.index_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.store.ensure_index().await?;
        self.index_ready.store(true, Ordering::Release);
        Ok(())
    }
}

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
            warm.index_ready.store(true, Ordering::Release);
        }
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, output_dir = %config.output_dir.display(), index = state.store.index(), "webhook service listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
