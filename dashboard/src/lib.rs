//! Conveyor's live dashboard: one background poller reads Elasticsearch (one search per second)
//! and the queue counters in Redis, and publishes a snapshot; the page (`/`), Server-Sent Events
//! (`/events`) and JSON (`/api/stats`) all serve that snapshot. No viewer ever triggers a query.
//! The Queues page (`/queues`) and its admin API (`/api/admin`) read each queue in full through
//! [`queue_admin`], one shared read at a time, and retry, delete, pause and resume with an admin
//! key.
//!
//! Reading order: [`config`] → [`state`] → [`error`] → [`snapshot`] (what is shown) → [`es`] and
//! [`queues`] (where it comes from) → [`poller`] (once per second) → [`queue_admin`] (the
//! Queues page's source) → [`routes`] (how it is served) → [`run`].

pub mod config;
pub mod error;
pub mod es;
pub mod poller;
pub mod queue_admin;
pub mod queues;
pub mod routes;
pub mod snapshot;
pub mod state;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use snapshot::Snapshot;

use poller::{PollCounters, Poller, Published};
use state::AppState;

/// Serves the dashboard on `listener` until `shutdown` is cancelled, then stops the poller and
/// closes every open event stream.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let es = es::StatsReader::new(&config.common.elastic, config.query_timeout())?;
    let pool = config.common.redis.pool()?;
    let admin = queue_admin::QueueAdmin::new(
        pool.clone(),
        &config.common.redis.queue_namespace,
        config.query_timeout(),
    );
    // The counters read every partition of QUEUE_PARTITIONS; a count that disagrees with the
    // queues' stops the dashboard (with the reason) as soon as Redis answers.
    let partitions = service_kit::partitions::guard(
        pool.clone(),
        queues::QueueReader::configs(&config.common.redis).to_vec(),
        shutdown.clone(),
    );
    let queues = queues::QueueReader::new(pool, &config.common.redis, config.query_timeout());
    let (tx, rx) = watch::channel(Published::new(Snapshot::initial(Utc::now())));
    let counters = Arc::new(PollCounters::default());
    let poller = Poller {
        es,
        queues,
        interval: config.poll_interval(),
        counters: counters.clone(),
        tx,
    };
    let poll_task = tokio::spawn(poller.run(shutdown.clone()));
    let addr = listener.local_addr().context("listener address")?;
    let state = AppState {
        snapshots: rx,
        counters,
        sse_clients: Arc::new(AtomicU64::new(0)),
        max_sse_clients: config.max_sse_clients,
        shutdown: shutdown.clone(),
        access: config.common.http.access.load(addr)?,
        admin,
    };
    tracing::info!(%addr, index_prefix = %config.common.elastic.es_index_prefix, "dashboard listening");
    let served = service_kit::http::serve(
        listener,
        routes::router(state),
        &config.common.http,
        shutdown.clone(),
    )
    .await
    .context("serving HTTP");
    shutdown.cancel();
    let _ = poll_task.await;
    served?;
    partitions.await.context("partition check")?
}
