//! What every handler shares: the `messages` queue, the Elasticsearch store, the Redis pool and
//! the configuration, plus the backlog gate (a cached queue reading that decides 429). Built
//! without I/O; nothing request-specific is kept here (the service is stateless).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pipeline::packet::MessageJob;
use pipeline::store::Store;
use queue::{Pool, Queue, QueueConfig};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::ApiError;

/// Name of the queue the consumer feeds.
pub const MESSAGES_QUEUE: &str = "messages";

/// What a 429 answer tells the client to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    queue: Queue<MessageJob>,
    store: Store,
    pool: Pool,
    backlog: Mutex<Option<(Instant, u64)>>,
}

impl AppState {
    /// Builds the pool, queue and store from `config` (connections open lazily).
    pub fn new(config: &Config) -> anyhow::Result<AppState> {
        let pool = config.redis.pool()?;
        // One partition, like the worker: the partition key (resource id) is still passed, so
        // raising the count later only needs both sides to agree.
        let qc = QueueConfig::new(config.redis.queue_namespace.clone(), MESSAGES_QUEUE);
        let queue = Queue::new(pool.clone(), qc).with_redis_url(config.redis.redis_url.clone());
        let store = Store::new(&config.elastic).context("building the Elasticsearch client")?;
        Ok(AppState {
            inner: Arc::new(Inner {
                config: config.clone(),
                queue,
                store,
                pool,
                backlog: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn queue(&self) -> &Queue<MessageJob> {
        &self.inner.queue
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Runs a dependency call under the configured timeout; a timeout reads as `what` unavailable.
    pub async fn bounded<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.config().dependency_timeout(), call).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(dependency = what, "call timed out");
                Err(ApiError::Unavailable(what.to_string()))
            }
        }
    }

    /// Err(Backpressure) when the queue's backlog is over `BACKLOG_LIMIT`. The reading is reused
    /// for `BACKLOG_CACHE_MS`; concurrent requests share one refresh.
    pub async fn check_backlog(&self) -> Result<(), ApiError> {
        let backlog = {
            let mut cached = self.inner.backlog.lock().await;
            match *cached {
                Some((at, value)) if at.elapsed() < self.config().backlog_cache() => value,
                _ => {
                    let stats = self
                        .bounded("Redis", async {
                            self.queue().stats().await.map_err(ApiError::from_queue)
                        })
                        .await?;
                    let value = stats.backlog;
                    *cached = Some((Instant::now(), value));
                    value
                }
            }
        };
        if backlog > self.config().backlog_limit {
            metrics::counter!("conveyor_http_backpressure_total").increment(1);
            return Err(ApiError::Backpressure {
                retry_after_secs: RETRY_AFTER.as_secs(),
            });
        }
        Ok(())
    }

    /// Redis answers PING.
    pub async fn ping_redis(&self) -> Result<(), ApiError> {
        self.bounded("Redis", async {
            let mut conn = self.pool().get().await.map_err(|e| {
                tracing::warn!(error = %e, "redis pool");
                ApiError::Unavailable("Redis".into())
            })?;
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut *conn).await;
            match pong {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "redis ping");
                    Err(ApiError::Unavailable("Redis".into()))
                }
            }
        })
        .await
    }
}
