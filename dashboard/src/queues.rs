//! Cheap Redis reads for the dashboard: `queue::Queue::stats` of the "messages" and "webhooks"
//! queues, run concurrently. Only reads counters; never enqueues or consumes.

use std::time::Duration;

use queue::{Pool, Queue, QueueStats};
use serde_json::Value;

use crate::error::SourceError;
use crate::snapshot::QueueFigures;

/// The two queues the pipeline runs, read with a time limit.
#[derive(Clone)]
pub struct QueueReader {
    messages: Queue<Value>,
    webhooks: Queue<Value>,
    timeout: Duration,
}

impl QueueReader {
    pub fn new(pool: Pool, namespace: &str, timeout: Duration) -> QueueReader {
        QueueReader {
            messages: Queue::new(pool.clone(), pipeline::queues::messages(namespace)),
            webhooks: Queue::new(pool, pipeline::queues::webhooks(namespace)),
            timeout,
        }
    }

    /// `(messages, webhooks)` counters, or why Redis could not be read.
    pub async fn read(&self) -> Result<(QueueFigures, QueueFigures), SourceError> {
        let both = async { tokio::try_join!(self.messages.stats(), self.webhooks.stats()) };
        match tokio::time::timeout(self.timeout, both).await {
            Ok(Ok((m, w))) => Ok((figures(m), figures(w))),
            Ok(Err(e)) => Err(SourceError::Redis(e.to_string())),
            Err(_) => Err(SourceError::RedisTimeout(self.timeout.as_millis())),
        }
    }
}

fn figures(s: QueueStats) -> QueueFigures {
    QueueFigures {
        backlog: s.backlog,
        pending: s.pending,
        delayed: s.delayed,
        dead: s.dead,
        workers: s.workers,
    }
}
