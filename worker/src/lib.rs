//! The worker: runs `messages` jobs from the Redis queue — word lengths, one Elasticsearch
//! `_bulk` per batch, resource collation — and answers each job with its stored document.
//!
//! [`run`] ensures the indices (waiting for Elasticsearch as long as it takes), then runs the
//! queue worker until the shutdown token fires; in-flight batches finish within the deadline.
//! Next to it, [`delivery`] (the webhook side) runs `webhooks` jobs and [`retention`] deletes
//! expired daily message indices. The worker owns no HTTP API beyond health and metrics
//! ([`routes`]); message reads are the consumer's.
//!
//! Reading order: [`config`] → [`state`] → [`error`] (how failures become outcomes) →
//! [`routes`] → [`messages`] (the message job handler) → [`delivery`] → [`retention`] → [`run`].

pub mod config;
pub mod delivery;
pub mod error;
pub mod messages;
pub mod retention;
pub mod routes;
pub mod state;

use std::time::Duration;

use anyhow::Context;
use pipeline::packet::MessageJob;
use pipeline::store::Store;
use queue::{Queue, Worker};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use messages::MessageHandler;

/// Runs the worker until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let pool = config.common.redis.pool()?;
    let store = Store::new(&config.common.elastic)?;
    let ready = state::Readiness::default();
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding WORKER_METRICS_ADDR {addr}"))?;
        let app = routes::router(ready.clone(), config.common.http.access.load(addr)?);
        let stop = shutdown.clone();
        let limits = config.common.http.clone();
        tokio::spawn(async move {
            let served = service_kit::http::serve(listener, app, &limits, stop).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
        tracing::info!(%addr, "health and metrics listening");
    }
    // Both queues' partition counts before anything is read or collated: a worker hashing to
    // partitions the others do not use would strand jobs and resources.
    let queues = [
        config.messages_queue(),
        config
            .delivery
            .webhooks_queue(pool.clone(), &config.common.redis)
            .config()
            .clone(),
    ];
    if !service_kit::partitions::check(&pool, &queues, &shutdown).await? {
        return Ok(());
    }
    if !store.ensure_messages_until(&shutdown).await {
        return Ok(());
    }
    let retention = tokio::spawn(retention::run(
        store.clone(),
        config.message_retention_days,
        shutdown.clone(),
    ));
    let queue: Queue<MessageJob> = Queue::new(pool.clone(), config.messages_queue());
    let collator = config.delivery.collator(pool.clone(), &config.common.redis);
    let handler = MessageHandler::new(
        store,
        collator,
        Duration::from_millis(config.es_wait_ms),
        shutdown.clone(),
    );
    let worker_config = config.worker_config();
    let deliveries = tokio::spawn(delivery::run(
        config.delivery.clone(),
        pool.clone(),
        config.common.redis.clone(),
        worker_config.clone(),
        config.max_attempts,
        shutdown.clone(),
    ));
    tracing::info!(
        consumer = %worker_config.consumer,
        batch_size = worker_config.batch_size,
        concurrency = worker_config.concurrency,
        namespace = %config.common.redis.queue_namespace,
        index = %config.common.elastic.index(pipeline::store::MESSAGES_INDEX),
        retention_days = config.message_retention_days,
        "worker started"
    );
    ready.set(true);
    let result = Worker::new(queue, handler, worker_config)
        .run(shutdown.clone())
        .await;
    ready.set(false);
    shutdown.cancel(); // if the message worker failed, stop the delivery side too
    let delivered = deliveries.await.context("webhook delivery task")?;
    retention.await.context("retention task")?;
    result.context("message worker")?;
    delivered.context("webhook delivery")?;
    tracing::info!("worker stopped");
    Ok(())
}
