//! What every handler of the webhook service shares: the resources store and the group commits
//! of documents and output files, the secrets and whether the index is known to exist. Built
//! without I/O, on a Tokio runtime (it starts the group commits' writers).

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pipeline::store::{Store, StoreError};

use crate::config::Config;
use crate::files::FileCommit;
use crate::group::GroupCommit;
use crate::store::ResourceStore;

/// Deliveries written in one `_bulk` at most.
const MAX_BULK: usize = 500;

/// Shared by every handler; cheap to clone: one reference count (the middleware and the
/// handler each clone it per request; cloning the fields themselves, the Elasticsearch client's
/// among them, took ~8 % of the service's CPU in a profile under load).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub struct Shared {
    pub store: ResourceStore,
    /// Where deliveries' create-only writes go: together into one `_bulk` when they arrive
    /// together (`crate::group`).
    pub writes: GroupCommit,
    /// Where output files go: together, two syncs per group (`crate::files`).
    pub files: FileCommit,
    pub secrets: Arc<pipeline::signing::Secrets>,
    pub tolerance_secs: i64,
    /// Who may read the stored resources and metrics (the kit's read gate).
    pub access: service_kit::http::Access,
    index_ready: AtomicBool,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let store = ResourceStore::new(Store::new(&config.elastic)?);
        Ok(AppState(Arc::new(Shared {
            writes: GroupCommit::start(store.clone(), MAX_BULK),
            files: FileCommit::start(Arc::new(config.output_dir.clone())),
            store,
            secrets: Arc::new(config.secrets.load()?),
            tolerance_secs: config.tolerance_secs,
            access: config.http.access.load(config.addr)?,
            index_ready: AtomicBool::new(false),
        })))
    }

    /// Creates the index once per process; writes wait for it so no document lands in an
    /// index with a guessed mapping.
    pub async fn ensure_index(&self) -> Result<(), StoreError> {
        if self.index_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.store.ensure_index().await?;
        self.mark_index_ready();
        Ok(())
    }

    pub fn mark_index_ready(&self) {
        self.index_ready.store(true, Ordering::Release);
    }
}
