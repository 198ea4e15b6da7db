//! What every dashboard handler shares: the latest published snapshot (a `watch` receiver), the
//! poller's counters, the number of open event streams and their cap, the shutdown token that
//! ends them, the read gate's rules and the Queues page's source.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::poller::{PollCounters, Published};
use crate::queue_admin::QueueAdmin;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub snapshots: watch::Receiver<Arc<Published>>,
    pub counters: Arc<PollCounters>,
    pub sse_clients: Arc<AtomicU64>,
    /// Most open event streams (`MAX_SSE_CLIENTS`).
    pub max_sse_clients: u64,
    pub shutdown: CancellationToken,
    /// Who may read the page, its events, stats and metrics (the kit's read gate).
    pub access: service_kit::http::Access,
    /// The admin API's reads and actions (`/api/admin`, the Queues page).
    pub admin: QueueAdmin,
}
