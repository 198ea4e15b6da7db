//! The start-up check of a queue's partition count: a process whose `QUEUE_PARTITIONS` differs
//! from the count the queue was created with (stored in Redis by whoever used it first) would
//! hash jobs and collation keys to partitions the others never read, so it must not run. Every
//! process that opens the stack's queues calls [`check`] (the worker before it reads) or
//! [`guard`] (the HTTP services, which serve `/healthz` while Redis is still down). It retries
//! while Redis cannot be reached and fails only on a real disagreement.

use anyhow::anyhow;
use queue::{Queue, QueueConfig, QueueError, RedisPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Backoff;

/// Checks every queue of `configs` against the count stored in Redis (storing it on first use),
/// retrying with backoff while Redis cannot answer. `Ok(true)`: every count agrees;
/// `Ok(false)`: `shutdown` came first; `Err`: a count differs, with a message that names both
/// counts and what to do.
pub async fn check(
    pool: &RedisPool,
    configs: &[QueueConfig],
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    for config in configs {
        // The payload type plays no part in the check.
        let queue: Queue<serde_json::Value> = Queue::new(pool.clone(), config.clone());
        let mut backoff = Backoff::default();
        loop {
            match queue.check_partitions().await {
                Ok(()) => break,
                Err(QueueError::Partitions {
                    queue: name,
                    configured,
                    stored,
                }) => return Err(mismatch(config, &name, configured, stored)),
                Err(e) => {
                    tracing::warn!(queue = %config.name, error = %e,
                        "cannot check the queue's partition count yet; retrying");
                    if !backoff.wait(shutdown).await {
                        return Ok(false);
                    }
                }
            }
        }
    }
    Ok(true)
}

/// [`check`] in the background for a process that serves while it runs: on a disagreement it
/// logs the error and cancels `shutdown` (the process then stops), and the handle yields the
/// error for `main` to exit non-zero with.
pub fn guard(
    pool: RedisPool,
    configs: Vec<QueueConfig>,
    shutdown: CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        match check(&pool, &configs, &shutdown).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "refusing to run with this partition count");
                shutdown.cancel();
                Err(e)
            }
        }
    })
}

/// The error a process exits with: both counts, the queue, and the two ways out.
fn mismatch(config: &QueueConfig, name: &str, configured: u16, stored: u16) -> anyhow::Error {
    let key = queue::Keys::new(&config.namespace, name, 1).partitions_key();
    anyhow!(
        "QUEUE_PARTITIONS is {configured}, but the queue {name:?} of namespace {:?} was created \
         with {stored} partitions (Redis key {key}). Start every process of the stack with \
         QUEUE_PARTITIONS={stored}; a queue's partition count can only change while it is empty \
         (README, \"Scaling out\": changing QUEUE_PARTITIONS)",
        config.namespace
    )
}
