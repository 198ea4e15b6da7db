//! The worker's webhook side: runs `webhooks` jobs (POST the collated resource, signed, to
//! `WEBHOOK_URL`) and sweeps resources that stayed incomplete past `RESOURCE_TIMEOUT_MS` into the
//! dead letters. The message side calls [`collator`] to record packets; it never delivers itself.
//! This module owns only delivery policy; collation keys and scripts live in `pipeline::collate`.

mod sender;
mod sweeper;

use std::time::Duration;

use pipeline::collate::Collator;
use pipeline::resource::DeliveryJob;
use queue::{Queue, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

pub use sender::DeliveryHandler;

/// Webhook delivery settings (flattened into the worker's config).
#[derive(clap::Args, Clone, Debug)]
pub struct DeliveryArgs {
    /// Where collated resources are POSTed
    #[arg(
        long,
        env = "WEBHOOK_URL",
        default_value = "http://127.0.0.1:8001/webhooks/resources"
    )]
    pub webhook_url: String,
    /// Shared HMAC secret deliveries are signed with (required, no default): the webhook
    /// service's value
    // The empty default is never accepted: `parse_secret` refuses it with instructions, so a missing
    // secret stops start-up with an error that says how to set it.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true, default_value = "",
          hide_default_value = true, value_parser = pipeline::signing::parse_secret)]
    pub webhook_secret: String,
    /// A resource still incomplete this many ms after its first packet is dead-lettered
    #[arg(long, env = "RESOURCE_TIMEOUT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub resource_timeout_ms: u64,
    /// Timeout of one webhook POST, in ms
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_timeout_ms: u64,
    /// Completed resources' Redis keys expire after this many seconds
    #[arg(long, env = "RESOURCE_TTL_SECS", default_value_t = 3_600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub resource_ttl_secs: u64,
    /// Attempts of one delivery before it is dead-lettered (retries back off exponentially)
    #[arg(long, env = "WEBHOOK_MAX_ATTEMPTS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_max_attempts: u32,
    /// Longest pause between two delivery attempts, in ms
    #[arg(long, env = "WEBHOOK_BACKOFF_MAX_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_backoff_max_ms: u64,
    /// Linger of the webhooks worker after the first job of a batch, in ms (0 = deliver at once)
    #[arg(long, env = "WEBHOOK_BATCH_LINGER_MS", default_value_t = 0)]
    pub webhook_batch_linger_ms: u64,
}

impl DeliveryArgs {
    /// The secret bytes (never empty: the flag's parser refuses that).
    pub fn secret(&self) -> Vec<u8> {
        self.webhook_secret.as_bytes().to_vec()
    }
}

/// The `webhooks` queue of a namespace (one partition unless configured otherwise).
pub fn webhooks_queue(
    pool: deadpool_redis::Pool,
    namespace: &str,
    args: &DeliveryArgs,
) -> Queue<DeliveryJob> {
    let mut config = pipeline::queues::webhooks(namespace);
    config.max_attempts = args.webhook_max_attempts;
    config.backoff_max = Duration::from_millis(args.webhook_backoff_max_ms);
    Queue::new(pool, config)
}

/// The collator the message side records packets with; its delivery jobs land on `webhooks`.
pub fn collator(pool: deadpool_redis::Pool, namespace: &str, args: &DeliveryArgs) -> Collator {
    let queue = webhooks_queue(pool.clone(), namespace, args);
    Collator::new(
        pool,
        namespace,
        &queue,
        Duration::from_secs(args.resource_ttl_secs),
    )
}

/// Runs the webhooks worker and the timeout sweeper until `shutdown` is cancelled. Deliveries
/// use `WEBHOOK_MAX_ATTEMPTS` (a webhook target may be down far longer than a message job should
/// wait); `max_attempts` (the worker's `MAX_ATTEMPTS`) is only logged when it is larger.
pub async fn run(
    args: DeliveryArgs,
    redis: deadpool_redis::Pool,
    namespace: String,
    worker: WorkerConfig,
    max_attempts: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let queue = webhooks_queue(redis.clone(), &namespace, &args);
    if max_attempts > args.webhook_max_attempts {
        tracing::info!(
            max_attempts,
            webhook_max_attempts = args.webhook_max_attempts,
            "webhook deliveries use WEBHOOK_MAX_ATTEMPTS, not MAX_ATTEMPTS"
        );
    }
    let collator = collator(redis, &namespace, &args);
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
    tracing::info!(url = %args.webhook_url, timeout_ms = args.resource_timeout_ms, "webhook delivery started");
    let result = Worker::new(queue, handler, config)
        .run(shutdown.clone())
        .await;
    shutdown.cancel();
    let _ = sweep.await;
    result.map_err(|e| anyhow::anyhow!("webhooks worker: {e}"))
}
