//! Collation of packets per resource in Redis: [`Collator::record`] runs `scripts/collate.lua` once
//! per partition of a batch (all calls in one pipelined round trip), which records each packet and
//! completes a resource and XADDs its delivery job atomically; `read` has
//! [`Collator::fetch_many`], which reads completed resources back for delivery, and
//! [`Collator::release_many`], which lets their data expire once delivered; [`Collator::sweep`] claims and
//! dead-letters (in `scripts/sweep.lua`, atomically) resources that stayed incomplete too long.
//!
//! Key schema (all keys of a resource share the hash tag of its webhooks stream partition):
//! ```text
//! <stream>:collate:res:<key>:parts  HASH seq -> {"w":[word lengths],"r":"<received_at>"}
//! <stream>:collate:res:<key>:meta   HASH total, first_seen_ms, words, done (= completed_at)
//! <stream>:collate:done:<bucket>   HASH key -> complete | delivered | timed_out | too_large
//!                                   (tombstones, one hash per time bucket: see `tombstone`)
//! <stream>:collate:open             ZSET key -> first-seen unix ms (incomplete resources)
//! <stream>:dead                     the webhooks queue's dead letters of that partition
//! ```
//! where `<key>` is the [`ResourceKey`] (producer and resource id: a producer never touches
//! another's resource) and `<stream>` the webhooks queue's stream of the partition the key maps
//! to; every key is
//! built by `queue::Keys` (`stream`, `dead`, `in_partition`), the one place keys are spelled.
//!
//! Lifetimes: an incomplete resource lives until it completes or the sweep claims it. Completed,
//! undelivered data is kept for the retention ([`RETENTION`] unless configured; a webhook outage
//! may be long); after delivery it expires after `completed_ttl`. A finished resource's
//! tombstone (a field in an hourly-ish bucket hash, see [`Tombstones`]) lives at least the
//! retention from its last change and is checked whenever a packet finds no live data, so a late
//! duplicate never reopens a finished resource.
//!
//! Memory bound: a resource may hold at most [`MAX_WORD_LENGTHS`] word lengths in total (a few MB
//! in Redis and in the worker); past it the resource is dead-lettered ("resource … too large"),
//! its parts dropped and its later packets ignored. This module never delivers over HTTP.

use std::sync::LazyLock;
use std::time::Duration;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use queue::RedisPool as Pool;
use queue::{wire, Fanout, Queue};
use redis::Script;
use serde::{Deserialize, Serialize};

use crate::ids::ResourceKey;
use crate::packet::StoredMessage;
use crate::resource::{CollatedResource, DeliveryJob};

const COLLATE_SRC: &str = include_str!("../scripts/collate.lua");
static COLLATE: LazyLock<Script> = LazyLock::new(|| Script::new(COLLATE_SRC));

mod error;
mod read;
mod sweep;
mod tombstone;

pub use error::CollateError;
pub use sweep::{Swept, TimedOut};
pub use tombstone::Tombstones;

pub use crate::resource::MAX_WORD_LENGTHS;
/// How long tombstones and completed-but-undelivered data are kept unless configured otherwise
/// ([`Collator::with_retention`]): 7 days, the edge's `MAX_MESSAGE_AGE`, so a late packet the
/// API still accepts finds its finished resource's tombstone.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Packets recorded by one `collate.lua` call at most: the script runs atomically and blocks
/// Redis meanwhile, so a call is kept short however large the batch; the calls of a batch still
/// share one round trip. 16 rather than 128: in two back-to-back `bench/stack.sh` runs (4 workers,
/// same load) 128 gave the producer's POSTs p50 505 ms and 2,987 stored/s, 16 gave 415 ms and 3,519.
const PACKETS_PER_CALL: usize = 16;
/// Job entry fields of a delivery job, in the order `collate.lua` expects them.
const JOB_FIELDS: [&str; 4] = wire::ENTRY_FIELDS;
/// Dead-letter fields as the queue writes them, in the order the scripts expect them.
const DEAD_FIELDS: [&str; 6] = wire::DEAD_FIELDS;

/// One packet as kept in the parts hash.
#[derive(Serialize, Deserialize)]
struct Part {
    w: Vec<u32>,
    r: DateTime<Utc>,
}

/// One packet's part of a `collate.lua` call: its resource's two keys (parts, meta) and its eight
/// ARGV values, in the script's order.
struct PacketArgs {
    keys: [String; 2],
    argv: [String; 8],
}

/// What [`Collator::fetch`] found for a delivery job.
#[derive(Clone, Debug, PartialEq)]
pub enum Fetched {
    /// Complete and not yet delivered: POST it.
    Ready(CollatedResource),
    /// Already delivered and its data released: nothing left to do.
    Delivered,
    /// Nothing deliverable; the text says what was found. Only possible if Redis lost data.
    Missing(String),
}

/// Records packets per resource and reads completed resources; cheap to clone.
#[derive(Clone)]
pub struct Collator {
    pool: Pool,
    webhooks: Queue<DeliveryJob>,
    completed_ttl: Duration,
    max_word_lengths: u64,
    retention: Duration,
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

impl Collator {
    /// `namespace` is implied by the queue's keys and kept for the documented signature.
    /// `completed_ttl` is how long a delivered resource's data stays readable.
    pub fn new(
        pool: impl Into<Pool>,
        _namespace: &str,
        webhooks: &Queue<DeliveryJob>,
        completed_ttl: Duration,
    ) -> Self {
        Collator {
            pool: pool.into(),
            webhooks: webhooks.clone(),
            completed_ttl,
            max_word_lengths: MAX_WORD_LENGTHS,
            retention: RETENTION,
        }
    }

    /// Overrides [`RETENTION`]: how long tombstones and completed, undelivered data are kept
    /// (at least a second).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention.max(Duration::from_secs(1));
        self
    }

    fn tombstones(&self) -> Tombstones {
        Tombstones::new(self.retention)
    }

    /// Overrides [`MAX_WORD_LENGTHS`] (at least 1).
    pub fn with_max_word_lengths(mut self, max: u64) -> Self {
        self.max_word_lengths = max.max(1);
        self
    }

    /// The key prefix of a resource's own keys and the partition holding them.
    fn prefix(&self, key: &str) -> (String, u16) {
        let keys = self.webhooks.keys();
        let p = keys.partition_of(key);
        (keys.in_partition(p, &format!("collate:res:{key}:")), p)
    }

    async fn conn(&self) -> Result<queue::RedisConnection, CollateError> {
        self.pool
            .get()
            .await
            .map_err(|e| CollateError::Unavailable(e.to_string()))
    }

    /// Records every message that has a resource id, seq and total (others are ignored) in one
    /// pipelined round trip — one `collate.lua` call per partition (and per
    /// [`PACKETS_PER_CALL`] packets), packets in batch order; returns how many resources this
    /// call completed. Idempotent.
    pub async fn record(&self, messages: &[StoredMessage]) -> Result<usize, CollateError> {
        self.record_traced(messages, &[]).await
    }

    /// [`Collator::record`], `traces[i]` being the W3C `traceparent` of message `i`'s span
    /// (missing or `None`: untraced): the delivery job of a resource carries the trace of the
    /// packet that completed it (`queue::wire::TRACE`).
    pub async fn record_traced(
        &self,
        messages: &[StoredMessage],
        traces: &[Option<String>],
    ) -> Result<usize, CollateError> {
        let now_ms = now_ms();
        let now = now_ms.to_string();
        let completed_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let tombstones = self.tombstones();
        let (bucket, bucket_ttl) = (
            tombstones.current(now_ms).to_string(),
            tombstones.bucket_ttl_secs().to_string(),
        );
        let buckets = tombstone::BUCKETS.to_string();
        let retention = self.retention.as_secs().max(1).to_string();
        let max = self.max_word_lengths.to_string();
        let keep = self.webhooks.config().dead_letter_max.to_string();
        // Packets per partition, in batch order (one partition is one hash slot).
        let mut packets: BTreeMap<u16, Vec<PacketArgs>> = BTreeMap::new();
        for (i, m) in messages.iter().enumerate() {
            let trace = traces.get(i).and_then(Option::as_deref).unwrap_or("");
            let Some(part) = &m.part else {
                continue;
            };
            let key = ResourceKey::new(m.producer.clone(), part.id().clone());
            let (id, seq, total) = (key.to_string(), part.seq(), part.total());
            let (prefix, p) = self.prefix(&id);
            let part = serde_json::to_string(&Part {
                w: m.word_lengths.clone(),
                r: m.received_at,
            })?;
            let payload = serde_json::to_string(&DeliveryJob { key })?;
            packets.entry(p).or_default().push(PacketArgs {
                keys: [format!("{prefix}parts"), format!("{prefix}meta")],
                argv: [
                    id,
                    seq.to_string(),
                    total.to_string(),
                    part,
                    m.word_lengths.len().to_string(),
                    uuid::Uuid::now_v7().to_string(),
                    payload,
                    trace.to_string(),
                ],
            });
        }
        if packets.is_empty() {
            return Ok(0);
        }
        let keys = self.webhooks.keys();
        // One pipeline on one node; one per partition (= hash slot) on a cluster.
        let mut pipe = Fanout::new(self.pool.is_cluster(), keys).scripts(&[COLLATE_SRC]);
        for (p, packets) in &packets {
            for chunk in packets.chunks(PACKETS_PER_CALL) {
                let cmd = pipe
                    .partition(*p)
                    .cmd("EVALSHA")
                    .arg(COLLATE.get_hash())
                    .arg(4 + 2 * chunk.len())
                    .arg(keys.in_partition(*p, "collate:open"))
                    .arg(keys.stream_ref(*p))
                    .arg(keys.dead(*p))
                    .arg(keys.dead_trimmed(*p));
                for packet in chunk {
                    cmd.arg(&packet.keys[..]);
                }
                cmd.arg(&now)
                    .arg(&completed_at)
                    .arg(Tombstones::prefix(keys, *p))
                    .arg(&bucket)
                    .arg(&buckets)
                    .arg(&bucket_ttl)
                    .arg(&retention)
                    .arg(&max)
                    .arg(&keep)
                    .arg(&JOB_FIELDS[..])
                    .arg(&DEAD_FIELDS[..])
                    .arg(wire::TRACE);
                for packet in chunk {
                    cmd.arg(&packet.argv[..]);
                }
            }
        }
        // With a replication wait: each partition's pipeline ends with WAIT on its master.
        let replication = self.webhooks.config().replication();
        pipe.wait_for(replication);
        let mut conn = self.conn().await?;
        // A node without collate.lua (a restart, a promoted replica) gets it loaded by `Fanout`.
        let (replies, acked) = pipe.query_acked(&mut conn).await?;
        if let (Some(r), Some(acked)) = (replication, acked) {
            if acked < r.replicas {
                return Err(CollateError::NotReplicated {
                    wanted: r.replicas,
                    acked,
                });
            }
        }
        let mut results: Vec<i64> = Vec::new();
        for reply in replies {
            results.extend(
                redis::from_redis_value::<Vec<i64>>(reply).map_err(redis::RedisError::from)?,
            );
        }
        let conflicts = results.iter().filter(|r| **r == -1).count();
        if conflicts > 0 {
            metrics::counter!("conveyor_resource_conflicts_total").increment(conflicts as u64);
            tracing::warn!(
                conflicts,
                "packets whose total disagrees with their resource were dead-lettered"
            );
        }
        let too_large = results.iter().filter(|r| **r == -2).count();
        if too_large > 0 {
            metrics::counter!("conveyor_resources_too_large_total").increment(too_large as u64);
            tracing::warn!(
                too_large,
                max_word_lengths = self.max_word_lengths,
                "resources over the size limit were dead-lettered"
            );
        }
        let completed = results.iter().filter(|r| **r == 1).count();
        if completed > 0 {
            metrics::counter!("conveyor_resources_completed_total").increment(completed as u64);
        }
        Ok(completed)
    }
}
