//! [`Queue`]: the producer side of a queue — enqueue now, in batches, later, or keyed to a
//! partition (batches: `bulk`). It owns the pool handle and the key schema; it never consumes jobs (see `worker`),
//! never waits for results itself (see `reply`) and never reads counters (see `stats`).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{EnqueueOptions, QueueConfig};
use crate::dedup::push_dedup_args;
use crate::error::QueueError;
use crate::job::{unix_ms, Entry, JobId};
use crate::keys::Keys;
use crate::pool::{RedisConnection, RedisPool};
use crate::router::RouterSlot;
use crate::scripts;

/// A handle on one logical queue. Cheap to clone; clones share the pool and the reply router.
pub struct Queue<T> {
    pub(crate) inner: Arc<Inner>,
    _payload: PhantomData<fn() -> T>,
}

pub(crate) struct Inner {
    pub pool: RedisPool,
    pub config: QueueConfig,
    pub keys: Keys,
    round_robin: AtomicU64,
    /// Explicit connection settings for the result subscriber (see [`Queue::with_redis_connection`]).
    pub redis_info: OnceLock<redis::ConnectionInfo>,
    pub router: RouterSlot,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Queue<T> {
    /// A queue on `pool` (which the caller creates and may share with other code): a
    /// [`RedisPool`], or a deadpool-redis pool on one node.
    pub fn new(pool: impl Into<RedisPool>, config: QueueConfig) -> Self {
        let pool = pool.into();
        let keys = Keys::for_mode(
            &config.namespace,
            &config.name,
            config.partition_count(),
            pool.is_cluster(),
        );
        Queue {
            inner: Arc::new(Inner {
                pool,
                config,
                keys,
                round_robin: AtomicU64::new(0),
                redis_info: OnceLock::new(),
                router: RouterSlot::default(),
            }),
            _payload: PhantomData,
        }
    }

    /// Tells the result subscriber of [`Queue::enqueue_and_wait`] how to connect: the same
    /// settings as the pool's (needed when the server requires a password or TLS). Without it the
    /// subscriber connects to the address and database the pool's connections use (from
    /// `CLIENT INFO`), without credentials.
    pub fn with_redis_connection(self, info: redis::ConnectionInfo) -> Self {
        let _ = self.inner.redis_info.set(info);
        self
    }

    /// Enqueues one job to run now.
    pub async fn enqueue(&self, payload: &T) -> Result<JobId, QueueError> {
        self.enqueue_with(payload, EnqueueOptions::default()).await
    }

    /// Enqueues one job with options (partition key, run-at time, reply wanted).
    pub async fn enqueue_with(
        &self,
        payload: &T,
        opts: EnqueueOptions,
    ) -> Result<JobId, QueueError> {
        let entry = Entry::with_id(
            serde_json::to_string(payload)?,
            opts.reply,
            opts.job_id.clone(),
        )
        .traced(opts.trace.as_deref());
        let p = self.partition_for_job(&opts);
        self.push_entry(p, &entry, opts.run_at, opts.job_id.is_some())
            .await?;
        Ok(JobId(entry.id))
    }

    /// Checks the partition count against the one stored in Redis (storing it on first use):
    /// processes that disagree would strand partitions, so each checks at start.
    pub async fn check_partitions(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        let configured = self.inner.keys.partitions();
        let key = self.inner.keys.partitions_key();
        let (stored,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(configured)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        let stored: u16 = stored.and_then(|s| s.parse().ok()).unwrap_or(configured);
        if stored != configured {
            return Err(QueueError::Partitions {
                queue: self.name().to_string(),
                configured,
                stored,
            });
        }
        Ok(())
    }

    /// Enqueues a job to run after `delay`.
    pub async fn enqueue_in(&self, payload: &T, delay: Duration) -> Result<JobId, QueueError> {
        self.enqueue_at(payload, SystemTime::now() + delay).await
    }

    /// Enqueues a job to run at `at` (now if `at` is past).
    pub async fn enqueue_at(&self, payload: &T, at: SystemTime) -> Result<JobId, QueueError> {
        let opts = EnqueueOptions {
            run_at: Some(at),
            ..EnqueueOptions::default()
        };
        self.enqueue_with(payload, opts).await
    }

    /// Stream key of the partition `partition_key` maps to (partition 0 for `None`), for Lua
    /// scripts elsewhere that XADD a job (see [`crate::wire`]) atomically with their own writes.
    pub fn stream_key(&self, partition_key: Option<&str>) -> String {
        let p = partition_key.map_or(0, |k| self.inner.keys.partition_of(k));
        self.inner.keys.stream(p)
    }
}

impl<T> Queue<T> {
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// Stream keys of every partition, in partition order (e.g. for a Lua script or a sweep
    /// that must visit each partition).
    pub fn stream_keys(&self) -> Vec<String> {
        let keys = &self.inner.keys;
        (0..keys.partitions()).map(|p| keys.stream(p)).collect()
    }

    /// The partition a partition key maps to (stable FNV-1a hash modulo the partition count).
    pub fn partition_of(&self, partition_key: &str) -> u16 {
        self.inner.keys.partition_of(partition_key)
    }

    /// Every Redis key of this queue (streams, delayed sets, dead letters, results, and
    /// [`Keys::in_partition`] for an application's own keys next to a partition's stream).
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub(crate) fn pool(&self) -> &RedisPool {
        &self.inner.pool
    }

    pub(crate) fn name(&self) -> &str {
        &self.inner.config.name
    }

    pub(crate) async fn conn(&self) -> Result<RedisConnection, QueueError> {
        Ok(self.inner.pool.get().await?)
    }

    /// Hash of the key, or round-robin when there is none.
    pub(crate) fn partition_for(&self, key: Option<&str>) -> u16 {
        match key {
            Some(k) => self.inner.keys.partition_of(k),
            None => {
                let n = self.inner.round_robin.fetch_add(1, Ordering::Relaxed);
                (n % u64::from(self.inner.keys.partitions())) as u16
            }
        }
    }

    /// The partition of a job: its partition key's, else its caller-supplied id's (so a retry
    /// lands where the first try did), else round-robin.
    pub(crate) fn partition_for_job(&self, opts: &EnqueueOptions) -> u16 {
        match (&opts.partition_key, &opts.job_id) {
            (None, Some(id)) => self.inner.keys.partition_of(id),
            (key, _) => self.partition_for(key.as_deref()),
        }
    }

    /// XADD now, or ZADD to the delayed set when `run_at` is in the future; with `dedup`, only
    /// if the entry's id was not enqueued within the dedup window (`enqueue.lua`). An answer
    /// that never came is [`QueueError::OutcomeUnknown`]; a write too few replicas confirmed
    /// (with a replication wait) is [`QueueError::NotReplicated`].
    pub(crate) async fn push_entry(
        &self,
        p: u16,
        entry: &Entry,
        run_at: Option<SystemTime>,
        dedup: bool,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        let due = run_at.map(unix_ms).filter(|at| *at > crate::job::now_ms());
        if dedup {
            let keys = self.keys();
            let mut inv = scripts::ENQUEUE.prepare_invoke();
            push_dedup_args(&mut inv, keys, p, entry, due, self.dedup_ms());
            let added: i64 = inv
                .invoke_async(&mut conn)
                .await
                .map_err(QueueError::after_send)?;
            if added == 1 {
                metrics::counter!("conveyor_jobs_enqueued_total", "queue" => self.name().to_string())
                    .increment(1);
            }
            return self.wait_replicated(&mut conn, p).await;
        }
        let pushed = match due {
            Some(at) => {
                redis::cmd("ZADD")
                    .arg(self.keys().delayed(p))
                    .arg(at)
                    .arg(entry.delayed_member())
                    .query_async::<()>(&mut conn)
                    .await
            }
            None => {
                redis::cmd("XADD")
                    .arg(self.keys().stream_ref(p))
                    .arg("*")
                    .arg(entry)
                    .query_async::<()>(&mut conn)
                    .await
            }
        };
        pushed.map_err(QueueError::after_send)?;
        metrics::counter!("conveyor_jobs_enqueued_total", "queue" => self.name().to_string())
            .increment(1);
        self.wait_replicated(&mut conn, p).await
    }

    /// With a replication wait configured ([`QueueConfig::wait_replicas`]): `WAIT` on `conn`
    /// (on a cluster: to partition `p`'s master) right after a write to partition `p`.
    async fn wait_replicated(&self, conn: &mut RedisConnection, p: u16) -> Result<(), QueueError> {
        match self.inner.config.replication() {
            Some(r) => crate::fanout::wait_after(conn, self.keys().stream_ref(p), r).await,
            None => Ok(()),
        }
    }

    /// How a result of partition `p` is announced: `PUBLISH` on the queue's channel on one
    /// node; on a cluster `SPUBLISH` on the partition's sharded channel (in its slot, so a
    /// settling pipeline stays single-slot and only that shard's nodes carry the message).
    pub(crate) fn results_channel(&self, p: u16) -> (&'static str, String) {
        match self.inner.pool.is_cluster() {
            false => ("PUBLISH", self.keys().results_channel()),
            true => ("SPUBLISH", self.keys().shard_results_channel(p)),
        }
    }

    pub(crate) fn dedup_ms(&self) -> u64 {
        u64::try_from(self.inner.config.dedup_window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}
