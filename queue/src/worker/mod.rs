//! The consumer side: [`Worker`] reads batches with XREADGROUP over every partition, hands them
//! to a [`Handler`] with bounded concurrency, and settles each outcome atomically (ack + delete,
//! retry via the delayed set, or dead-letter). Background tasks keep leases alive, reclaim
//! abandoned entries, promote due delayed jobs and publish a liveness heartbeat. Redis errors are
//! logged and retried with backoff: the loop never exits or panics because Redis went away.

mod background;
mod batch;
mod budget;
mod read;
mod send;
mod shared;
mod xread;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::error::QueueError;
use crate::queue::Queue;
pub use shared::Handler;
use shared::Shared;

/// One worker instance (one consumer in the `workers` group).
pub struct Worker<T, H> {
    shared: Arc<Shared<T, H>>,
}

impl<T, H> Worker<T, H>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    pub fn new(queue: Queue<T>, handler: H, mut config: WorkerConfig) -> Self {
        config.batch_size = config.batch_size.max(1);
        config.concurrency = config.concurrency.max(1);
        config.lease = config.lease.max(Duration::from_millis(100));
        config.block = config.block.max(Duration::from_millis(1));
        Worker {
            shared: Arc::new(Shared::new(queue, handler, config)),
        }
    }

    /// Runs until `shutdown` is cancelled: then stops reading, finishes and acks in-flight
    /// batches, and returns within the shutdown deadline (what is left is reclaimed by others).
    /// Reconnects by itself if Redis goes away (logs, backs off, continues).
    ///
    /// Errors: [`QueueError::Partitions`] at start when the queue's partition count stored in
    /// Redis differs from this worker's configuration.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), QueueError> {
        let shared = self.shared;
        let consumer = shared.config.consumer.clone();
        tracing::info!(queue = shared.queue.name(), consumer, "worker starting");
        // A worker with another partition count than the queue's would strand partitions.
        let mut backoff = crate::backoff::Backoff::default();
        loop {
            match shared.queue.check_partitions().await {
                Ok(()) => break,
                Err(e @ QueueError::Partitions { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the partition count; retrying");
                    if !backoff.wait(&shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
        let background = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(background::heartbeat(shared.clone(), background.clone()));
        tasks.spawn(background::promoter(shared.clone(), shutdown.clone()));
        tasks.spawn(background::reclaimer(shared.clone(), shutdown.clone()));

        read::read_loop(&shared, &shutdown).await;

        tracing::info!(
            queue = shared.queue.name(),
            consumer,
            "worker draining in-flight batches"
        );
        shared.tracker.close();
        let drained =
            tokio::time::timeout(shared.config.shutdown_deadline, shared.tracker.wait()).await;
        if drained.is_err() {
            tracing::warn!(
                consumer,
                "shutdown deadline passed; leaving the rest to other workers"
            );
            shared.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_millis(200), shared.tracker.wait()).await;
        }
        background.cancel();
        while tasks.join_next().await.is_some() {}
        background::leave(&shared).await;
        tracing::info!(queue = shared.queue.name(), consumer, "worker stopped");
        Ok(())
    }
}
