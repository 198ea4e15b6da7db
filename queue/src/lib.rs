//! # queue — Conveyor's Redis-streams job queue
//!
//! A queue is a name inside a Redis namespace, generic over a serde payload type. Jobs live in
//! one Redis stream per partition (`<ns>:{<queue>:<p>}`, each partition with its own hash tag so
//! a Redis Cluster can spread them), consumed by the consumer group `workers`. Producers
//! [`Queue::enqueue`] one job, a pipelined batch, a delayed job (via a per-partition delayed
//! ZSET that workers promote when due), or wait for a job's result
//! ([`Queue::enqueue_and_wait`] / [`Queue::enqueue_and_wait_with`], bounded by their timeout,
//! routed by one pub/sub subscriber per process). A batch is all-or-nothing per partition
//! (`MULTI`/`EXEC`). [`Recurring`]
//! enqueues exactly one job per occurrence however many processes run it. A [`Worker`] reads
//! batches with `XREADGROUP` over every partition, runs a batch [`Handler`] with bounded
//! concurrency, and settles each job atomically in Lua: ack **and delete** (so the stream ends
//! empty), retry with exponential backoff and full jitter, wait for a dependency that is down without
//! using up an attempt ([`Outcome::Wait`]), or dead-letter with the error history.
//! Leases are extended by heartbeat while a handler runs; a dead worker's entries are reclaimed
//! (`reclaim.lua`) by any live worker once idle for a lease and once the owner's heartbeat is a
//! lease old. Workers survive Redis restarts
//! (log, back off, reconnect) and shut down gracefully within a deadline. [`Queue::stats`] counts
//! what the streams hold (backlog = `XLEN − pending`, exact because settling deletes), never
//! Redis's derived `lag`, which drifts after a restart from a rewritten AOF.
//!
//! ## What is guaranteed, exactly
//!
//! - **Enqueue**: `Ok` means the job is stored (in the stream or the delayed set). `Unavailable`
//!   means nothing was sent. [`QueueError::OutcomeUnknown`] means the command was sent but its
//!   answer never came: the job may or may not be stored. A job enqueued with a caller-supplied
//!   id ([`EnqueueOptions::job_id`]) is stored **at most once per [`QueueConfig::dedup_window`]**
//!   however often the call is repeated, so retrying after any error is safe.
//! - **Handler runs: at least once.** A stored job runs until it is settled; a worker that dies,
//!   stalls or is cut off from Redis for longer than the lease loses its jobs to a live worker
//!   (only once its heartbeat is older than a lease, and never within a lease of a gap in
//!   everyone's heartbeats — a Redis pause or restart — so a slow live worker keeps its jobs).
//!   So a handler can run more than once for one job (each run has a higher delivery count);
//!   handlers must be idempotent, or their effects keyed.
//! - **Settling: applied at most once, by the current owner.** Ack, retry, wait and dead-letter
//!   act only on an entry its worker still owns at the delivery count it read it at (the lease
//!   token); a worker whose entry was taken over settles nothing. So one delivery of a job is
//!   acknowledged, retried or dead-lettered once, never both dead and done, and a retry never
//!   leaves a third copy behind.
//! - **Effects: exactly once where they are keyed.** The pipeline stores a message under its
//!   natural key `{producer}:{number}` (a re-run overwrites the same document) and collates a
//!   resource in one Lua step that fires its webhook once: the store sees every message exactly
//!   once and every complete resource is delivered exactly once, however often a job ran.
//!
//! ## One node or a Redis Cluster
//!
//! A [`RedisPool`] is either (`RedisPool::open` chooses by URL: `redis://` or
//! `redis+cluster://host:port,…`). On a cluster every partition is one slot, the partitions
//! spread evenly over the slot space ([`slot`]); what spans
//! partitions — a batch enqueue, a batch's settling, stats, dead letters, admin views, a
//! worker's read — goes out as one pipeline (or one `XREADGROUP`) per partition, all at once
//! (`fanout`, `worker::xread`), and results are announced with `SPUBLISH` on the partition's
//! sharded channel. On one node nothing of this costs anything: one pipeline, one read.
//!
//! This crate knows nothing about HTTP, Elasticsearch or the pipeline's types. What other code
//! shares with it is exported: the key schema ([`Keys`], from [`Queue::keys`]), the field names
//! of entries and dead letters ([`wire`]), the retry-loop [`Backoff`], and with the feature
//! `openapi` a `utoipa::ToSchema` for [`QueueStats`].
//!
//! ## Modules, in reading order
//!
//! 0. `pool` ([`RedisPool`], [`RedisConnection`]), `topology` (cluster connections that
//!    outlived a topology change are replaced) and `fanout` (pipelines per partition on a
//!    cluster, `SCAN` over every master).
//! 1. `keys` (every Redis key; [`slot`]: where a partition lands on a cluster), `job` (ids, [`Job`], [`Outcome`] and all encoding of entries and
//!    dead letters), [`wire`] (their field names), `config`, `error`, `backoff`.
//! 2. `queue` ([`Queue`]: the enqueue paths, `bulk` for batches, with `dedup` for idempotent
//!    ones), which owns `router` (the per-process result subscriber); `reply` builds
//!    [`Queue::enqueue_and_wait`] on both. `coalesce` ([`Coalescer`]) batches single enqueues.
//! 3. `worker/`: `shared` (the [`Handler`] contract, the state every part shares, a delivered
//!    entry) → `read` (XREADGROUP loop, dispatch) → `batch` (run one batch, settle every outcome
//!    in one round trip) → `background` (heartbeat, promotion of delayed jobs, reclaim); `mod.rs`
//!    ([`Worker`]) starts and drains them.
//! 4. `scripts` + `scripts/*.lua` (each atomic step, headed by its KEYS and ARGV), `stats`
//!    ([`Queue::stats`], dead letters), `recurring` ([`Recurring`]).
//! 5. [`admin`]: what an operator sees and does — queues of a namespace, per-partition states,
//!    pending and delayed jobs, dead letters (retry / delete), pause / resume, promote, purge
//!    with a confirmation token, workers with what they hold.
//!
//! No two modules depend on each other, directly or around a loop: check with
//! `python3 scripts/modcycles.py queue`.
//!
//! ```no_run
//! use std::time::Duration;
//! use queue::{CancellationToken, Handler, Job, Outcome, Queue, QueueConfig, Worker, WorkerConfig};
//!
//! struct Double;
//! impl Handler<u64> for Double {
//!     async fn handle(&self, jobs: Vec<Job<u64>>) -> Vec<Outcome> {
//!         jobs.iter().map(|j| Outcome::Done(serde_json::json!(j.payload * 2))).collect()
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // `redis+cluster://127.0.0.1:7001,127.0.0.1:7002` for a Redis Cluster.
//! let pool = queue::RedisPool::open("redis://127.0.0.1:6379", 32)?;
//! let queue: Queue<u64> = Queue::new(pool, QueueConfig::new("conveyor", "numbers"));
//! let shutdown = CancellationToken::new();
//! let worker = Worker::new(queue.clone(), Double, WorkerConfig::default());
//! let running = tokio::spawn(worker.run(shutdown.clone()));
//!
//! queue.enqueue(&1).await?;
//! queue.enqueue_batch(&[2, 3, 4]).await?;
//! queue.enqueue_in(&5, Duration::from_secs(2)).await?;
//! let doubled: u64 = queue.enqueue_and_wait(&21, Duration::from_secs(5)).await?;
//! assert_eq!(doubled, 42);
//! println!("{:?}", queue.stats().await?);
//!
//! shutdown.cancel();
//! running.await??;
//! # Ok(())
//! # }
//! ```

pub mod admin;
mod backoff;
mod bulk;
mod checked;
mod coalesce;
mod config;
mod dedup;
mod error;
mod fanout;
mod job;
mod keys;
mod nodes;
mod pool;
mod queue;
mod recurring;
mod reply;
mod router;
mod scripts;
pub mod slot;
mod stats;
mod topology;
pub mod wire;
mod worker;

/// The pool type every part of Conveyor passes around (one node or a cluster).
pub type Pool = RedisPool;
pub use checked::IDLE_CHECK;
pub use fanout::{Fanout, Replication, RESEND_FOR};
pub use nodes::{cluster_masters, scan_all};
pub use pool::{cluster_seed_urls, ClusterPool, RedisConnection, RedisPool};
pub use tokio_util::sync::CancellationToken;

pub use backoff::{retry_delay, Backoff};
pub use coalesce::Coalescer;
pub use config::{
    EnqueueOptions, QueueConfig, WorkerConfig, DEFAULT_DEAD_LETTER_MAX, DEFAULT_WAIT_TIMEOUT,
};
pub use error::QueueError;
pub use job::{skew_clock_for_tests, DeadLetter, Job, JobId, Outcome, QueueStats, MIN_WAIT};
pub use keys::{Keys, GROUP};
pub use queue::Queue;
pub use recurring::Recurring;
pub use worker::{Handler, Worker};
