//! Cheap Redis reads for the dashboard: `queue::Queue::stats` of the "messages" and "webhooks"
//! queues, and the age of each one's oldest job (for `/metrics`), run concurrently. Only reads
//! counters; never enqueues or consumes.

use std::time::Duration;

use queue::{Pool, Queue, QueueConfig, QueueStats};
use serde_json::Value;
use service_kit::config::RedisArgs;

use crate::error::SourceError;

/// The two queues the pipeline runs, read with a time limit.
#[derive(Clone)]
pub struct QueueReader {
    messages: Queue<Value>,
    webhooks: Queue<Value>,
    timeout: Duration,
}

impl QueueReader {
    /// The two queues as `redis` describes them (namespace, `QUEUE_PARTITIONS`): the counters
    /// add up every partition, so the count must be the queues' own.
    pub fn new(pool: Pool, redis: &RedisArgs, timeout: Duration) -> QueueReader {
        QueueReader {
            messages: Queue::new(pool.clone(), Self::configs(redis)[0].clone()),
            webhooks: Queue::new(pool, Self::configs(redis)[1].clone()),
            timeout,
        }
    }

    /// `[messages, webhooks]` of this deployment (opens nothing).
    pub fn configs(redis: &RedisArgs) -> [QueueConfig; 2] {
        let ns = &redis.queue_namespace;
        [
            redis.stack_queue(pipeline::queues::messages(ns)),
            redis.stack_queue(pipeline::queues::webhooks(ns)),
        ]
    }

    /// Age in milliseconds of the oldest job waiting or running in `(messages, webhooks)`
    /// (`None` for an empty queue), or why Redis could not be read.
    pub async fn oldest_ages(&self) -> Result<(Option<u64>, Option<u64>), SourceError> {
        let both = async {
            tokio::try_join!(
                self.messages.oldest_job_age_ms(),
                self.webhooks.oldest_job_age_ms()
            )
        };
        match tokio::time::timeout(self.timeout, both).await {
            Ok(Ok(both)) => Ok(both),
            Ok(Err(e)) => Err(SourceError::Redis(e.to_string())),
            Err(_) => Err(SourceError::RedisTimeout(self.timeout.as_millis())),
        }
    }

    /// `(messages, webhooks)` counters, or why Redis could not be read.
    pub async fn read(&self) -> Result<(QueueStats, QueueStats), SourceError> {
        let both = async { tokio::try_join!(self.messages.stats(), self.webhooks.stats()) };
        match tokio::time::timeout(self.timeout, both).await {
            Ok(Ok(both)) => Ok(both),
            Ok(Err(e)) => Err(SourceError::Redis(e.to_string())),
            Err(_) => Err(SourceError::RedisTimeout(self.timeout.as_millis())),
        }
    }
}
