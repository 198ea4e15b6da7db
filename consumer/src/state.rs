//! What every handler shares: the `messages` queue and its enqueue coalescer, the Elasticsearch
//! store, the Redis pool and the configuration, plus the backlog gate (a cached queue reading that
//! decides 429). Built without I/O; nothing request-specific is kept here (the service is
//! stateless).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pipeline::packet::MessageJob;
use pipeline::store::Store;
use queue::{Coalescer, JobId, Pool, Queue};
use service_kit::http::Access;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::ApiError;

/// What a 429 answer tells the client to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// API keys: who may post packets of which producer, and who may read.
    access: Access,
    queue: Queue<MessageJob>,
    coalescer: Coalescer<MessageJob>,
    store: Store,
    pool: Pool,
    /// Start of the process: the backlog reading's age is measured from it.
    epoch: Instant,
    /// The last backlog reading (jobs waiting, bytes held) and when it was taken (µs since
    /// `epoch`, 0 = never).
    backlog: AtomicU64,
    backlog_bytes: AtomicU64,
    backlog_at_us: AtomicU64,
    /// Held while one request refreshes the reading; the others wait for it.
    refresh: Mutex<()>,
}

impl AppState {
    /// Builds the pool, queue and store from `config` (connections open lazily).
    /// Refuses a configuration that would take writes from anyone beyond loopback.
    pub fn new(config: &Config) -> anyhow::Result<AppState> {
        let access = config.common.http.access.load(config.addr)?;
        access.require_keys_unless_loopback(config.addr, "CONSUMER_ADDR")?;
        let pool = config.common.redis.pool()?;
        // QUEUE_PARTITIONS partitions, as every process of the stack (checked at start: `run`).
        let qc = config.messages_queue();
        let queue = Queue::new(pool.clone(), qc)
            .with_redis_connection(config.common.redis.connection_info()?);
        let store =
            Store::new(&config.common.elastic).context("building the Elasticsearch client")?;
        let coalescer = Coalescer::new(
            queue.clone(),
            config.enqueue_batch_max,
            config.enqueue_in_flight,
        );
        Ok(AppState {
            inner: Arc::new(Inner {
                config: config.clone(),
                access,
                queue,
                coalescer,
                store,
                pool,
                epoch: Instant::now(),
                backlog: AtomicU64::new(0),
                backlog_bytes: AtomicU64::new(0),
                backlog_at_us: AtomicU64::new(0),
                refresh: Mutex::new(()),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn access(&self) -> &Access {
        &self.inner.access
    }

    pub fn queue(&self) -> &Queue<MessageJob> {
        &self.inner.queue
    }

    /// Enqueues one job to run now, pipelined with whatever other requests enqueue at the same
    /// moment; the id comes back once Redis stored the job.
    ///
    /// The job id is the packet's natural key `{producer}:{number}`, deduplicated by the queue
    /// for its dedup window: a client that retries a POST whose answer it never saw creates no
    /// second job. So an answer from Redis that never came ("outcome unknown") is a 503 like
    /// "Redis unavailable": retrying is safe. The job carries the current span's trace context
    /// (the request's), so the worker continues its trace.
    pub async fn enqueue(&self, job: MessageJob) -> Result<JobId, ApiError> {
        let key = job.packet.partition_key();
        let id = job.packet.doc_id();
        let trace = service_kit::trace::current();
        self.bounded("Redis", async {
            self.inner
                .coalescer
                .enqueue_traced(job, key, Some(id), trace)
                .await
                .map_err(from_queue_retry_safe)
        })
        .await
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

    /// Err(Backpressure) when the queue's backlog is over `BACKLOG_LIMIT` jobs or its jobs hold
    /// more than `BACKLOG_LIMIT_BYTES`. The reading is reused for `BACKLOG_CACHE_MS` (read
    /// without locking); concurrent requests share one refresh.
    pub async fn check_backlog(&self) -> Result<(), ApiError> {
        let (backlog, bytes) = match self.fresh_backlog() {
            Some(value) => value,
            None => {
                let _refreshing = self.inner.refresh.lock().await;
                match self.fresh_backlog() {
                    Some(value) => value, // another request refreshed it meanwhile
                    None => self.refresh_backlog().await?,
                }
            }
        };
        let limit = self.config().backlog_limit;
        if backlog > limit {
            metrics::counter!("conveyor_http_backpressure_total").increment(1);
            return Err(ApiError::Backpressure {
                retry_after_secs: RETRY_AFTER.as_secs(),
                waiting: backlog,
                limit,
            });
        }
        let limit = self.config().backlog_limit_bytes;
        if limit > 0 && bytes > limit {
            metrics::counter!("conveyor_http_backpressure_total").increment(1);
            return Err(ApiError::BackpressureBytes {
                retry_after_secs: RETRY_AFTER.as_secs(),
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// The cached backlog reading (jobs, bytes) if it is younger than `BACKLOG_CACHE_MS`.
    fn fresh_backlog(&self) -> Option<(u64, u64)> {
        let at = self.inner.backlog_at_us.load(Ordering::Acquire);
        if at == 0 {
            return None;
        }
        let age_us = self.micros_now().saturating_sub(at);
        (u128::from(age_us) < self.config().backlog_cache().as_micros()).then(|| {
            (
                self.inner.backlog.load(Ordering::Acquire),
                self.inner.backlog_bytes.load(Ordering::Acquire),
            )
        })
    }

    async fn refresh_backlog(&self) -> Result<(u64, u64), ApiError> {
        let stats = self
            .bounded("Redis", async {
                self.queue().stats().await.map_err(ApiError::from_queue)
            })
            .await?;
        self.inner.backlog.store(stats.backlog, Ordering::Release);
        self.inner
            .backlog_bytes
            .store(stats.bytes, Ordering::Release);
        // `max(1)`: 0 means "never read".
        self.inner
            .backlog_at_us
            .store(self.micros_now().max(1), Ordering::Release);
        Ok((stats.backlog, stats.bytes))
    }

    fn micros_now(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Elasticsearch answers and its cluster is not red.
    pub async fn ping_store(&self) -> Result<(), ApiError> {
        self.bounded("Elasticsearch", async {
            self.store().ping().await.map_err(ApiError::from_store)
        })
        .await
    }

    /// Redis answers PING.
    pub async fn ping_redis(&self) -> Result<(), ApiError> {
        self.bounded("Redis", async {
            let mut conn = self.pool().get().await.map_err(|e| {
                tracing::warn!(error = %e, "redis pool");
                ApiError::Unavailable("Redis".into())
            })?;
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
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

/// A queue failure of an idempotent enqueue (one with the natural key as job id): an outcome
/// never learned is as safe to retry as Redis being unreachable, so it answers 503 too.
pub fn from_queue_retry_safe(e: queue::QueueError) -> ApiError {
    match e {
        queue::QueueError::OutcomeUnknown(why) => ApiError::from_queue(
            queue::QueueError::Unavailable(format!("outcome unknown: {why}")),
        ),
        other => ApiError::from_queue(other),
    }
}
