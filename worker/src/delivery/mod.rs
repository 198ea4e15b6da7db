//! The worker's webhook side: runs `webhooks` jobs (POST the collated resource, signed, to
//! `WEBHOOK_URL`) and sweeps resources that stayed incomplete past `RESOURCE_TIMEOUT_MS` into the
//! dead letters. The message side calls [`collator`] to record packets; it never delivers itself.
//! This module owns only delivery policy; collation keys and scripts live in `pipeline::collate`.

mod sender;
mod sweeper;

use std::time::Duration;

use queue::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

pub use crate::config::DeliveryArgs;
pub use sender::DeliveryHandler;

/// Runs the webhooks worker and the timeout sweeper until `shutdown` is cancelled. Deliveries
/// use `WEBHOOK_MAX_ATTEMPTS` (a webhook target may be down far longer than a message job should
/// wait); `max_attempts` (the worker's `MAX_ATTEMPTS`) is only logged when it is larger.
pub async fn run(
    args: DeliveryArgs,
    redis: queue::RedisPool,
    redis_args: service_kit::config::RedisArgs,
    worker: WorkerConfig,
    max_attempts: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let queue = args.webhooks_queue(redis.clone(), &redis_args);
    if max_attempts > args.webhook_max_attempts {
        tracing::info!(
            max_attempts,
            webhook_max_attempts = args.webhook_max_attempts,
            "webhook deliveries use WEBHOOK_MAX_ATTEMPTS, not MAX_ATTEMPTS"
        );
    }
    let collator = args.collator(redis, &redis_args);
    let handler = DeliveryHandler::new(&args, collator.clone())?;
    let config = WorkerConfig {
        batch_linger: Duration::from_millis(args.webhook_batch_linger_ms),
        ..worker
    };
    let sweep = tokio::spawn(sweeper::run(
        collator,
        queue.clone(),
        Duration::from_millis(args.resource_timeout_ms),
        shutdown.clone(),
    ));
    tracing::info!(
        url = %args.webhook_url,
        webhook_timeout_ms = args.webhook_timeout_ms,
        webhook_max_attempts = args.webhook_max_attempts,
        resource_timeout_ms = args.resource_timeout_ms,
        "webhook delivery started"
    );
    let result = Worker::new(queue, handler, config)
        .run(shutdown.clone())
        .await;
    shutdown.cancel();
    let _ = sweep.await;
    result.map_err(|e| anyhow::anyhow!("webhooks worker: {e}"))
}
