//! Collation of packets per resource in Redis: [`Collator::record`] runs `scripts/collate.lua` once
//! per packet (one pipelined round trip per batch), which completes a resource and XADDs its
//! delivery job atomically; [`Collator::load`] reads a completed resource back for delivery;
//! [`Collator::sweep`] claims resources that stayed incomplete past a timeout.
//!
//! Key schema (all keys of a resource share the hash tag of its webhooks stream partition):
//! ```text
//! <stream>:collate:res:<id>:parts   HASH seq -> {"w":[word lengths],"r":"<received_at>"}
//! <stream>:collate:res:<id>:meta    HASH total, first_seen_ms, done (completed_at | timed_out)
//! <stream>:collate:open             ZSET id -> first-seen unix ms (incomplete resources)
//! ```
//! where `<stream>` is `webhooks.stream_key(Some(id))`. This module never delivers or dead-letters.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_redis::Pool;
use queue::Queue;
use redis::Script;
use serde::{Deserialize, Serialize};

use crate::packet::StoredMessage;
use crate::resource::{CollatedResource, DeliveryJob};

static COLLATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/collate.lua")));
static SWEEP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/sweep.lua")));

/// Marker in the meta hash of a resource reported as timed out.
const TIMED_OUT: &str = "timed_out";

#[derive(Debug, thiserror::Error)]
pub enum CollateError {
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One packet as kept in the parts hash.
#[derive(Serialize, Deserialize)]
struct Part {
    w: Vec<u32>,
    r: DateTime<Utc>,
}

/// A resource claimed by [`Collator::sweep`]: it stayed incomplete past the timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedOut {
    pub resource_id: String,
    pub total: u32,
    pub first_seen_ms: u64,
    /// Seqs that did arrive, ascending.
    pub received: Vec<u32>,
}

impl TimedOut {
    /// Seqs in `0..total` that never arrived, ascending.
    pub fn missing(&self) -> Vec<u32> {
        (0..self.total)
            .filter(|s| self.received.binary_search(s).is_err())
            .collect()
    }
}

/// Records packets per resource and reads completed resources; cheap to clone.
#[derive(Clone)]
pub struct Collator {
    pool: Pool,
    webhooks: Queue<DeliveryJob>,
    completed_ttl: Duration,
    /// Stream key of every partition of the webhooks queue (for the sweep).
    partitions: Arc<Vec<String>>,
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

impl Collator {
    /// `namespace` is implied by the queue's keys and kept for the documented signature.
    pub fn new(
        pool: Pool,
        _namespace: &str,
        webhooks: &Queue<DeliveryJob>,
        completed_ttl: Duration,
    ) -> Self {
        Collator {
            pool,
            webhooks: webhooks.clone(),
            completed_ttl,
            partitions: Arc::new(partition_streams(webhooks)),
        }
    }

    fn prefix(&self, resource_id: &str) -> (String, String) {
        let stream = self.webhooks.stream_key(Some(resource_id));
        (format!("{stream}:collate:res:{resource_id}:"), stream)
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, CollateError> {
        self.pool
            .get()
            .await
            .map_err(|e| CollateError::Unavailable(e.to_string()))
    }

    /// Records every message that has a resource id, seq and total (others are ignored) in one
    /// pipelined round trip; returns how many resources this call completed. Idempotent.
    pub async fn record(&self, messages: &[StoredMessage]) -> Result<usize, CollateError> {
        let now = now_ms().to_string();
        let completed_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let ttl = self.completed_ttl.as_secs().max(1).to_string();
        let mut pipe = redis::pipe();
        let mut n = 0usize;
        for m in messages {
            let (Some(id), Some(seq), Some(total)) = (&m.resource_id, m.seq, m.total) else {
                continue;
            };
            let (prefix, stream) = self.prefix(id);
            let part = serde_json::to_string(&Part {
                w: m.word_lengths.clone(),
                r: m.received_at,
            })?;
            let payload = serde_json::to_string(&DeliveryJob {
                resource_id: id.clone(),
            })?;
            let open = format!("{stream}:collate:open");
            pipe.cmd("EVALSHA")
                .arg(COLLATE.get_hash())
                .arg(4)
                .arg(format!("{prefix}parts"))
                .arg(format!("{prefix}meta"))
                .arg(open)
                .arg(&stream)
                .arg(id)
                .arg(seq)
                .arg(total)
                .arg(part)
                .arg(&now)
                .arg(uuid::Uuid::now_v7().to_string())
                .arg(&completed_at)
                .arg(&ttl)
                .arg(payload);
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let results: Vec<i64> = match pipe.query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) if is_noscript(&e) => {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(include_str!("scripts/collate.lua"))
                    .query_async(&mut conn)
                    .await?;
                pipe.query_async(&mut conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        let conflicts = results.iter().filter(|r| **r < 0).count();
        if conflicts > 0 {
            tracing::warn!(
                conflicts,
                "packets whose total disagrees with their resource were ignored"
            );
        }
        let completed = results.iter().filter(|r| **r == 1).count();
        if completed > 0 {
            metrics::counter!("conveyor_resources_completed_total").increment(completed as u64);
        }
        Ok(completed)
    }

    /// The completed resource, or `None` if it is unknown, incomplete, timed out or expired.
    pub async fn load(&self, resource_id: &str) -> Result<Option<CollatedResource>, CollateError> {
        let (prefix, _) = self.prefix(resource_id);
        let mut conn = self.conn().await?;
        let (parts, total, done): (BTreeMap<u32, String>, Option<u32>, Option<String>) =
            redis::pipe()
                .cmd("HGETALL")
                .arg(format!("{prefix}parts"))
                .cmd("HGET")
                .arg(format!("{prefix}meta"))
                .arg("total")
                .cmd("HGET")
                .arg(format!("{prefix}meta"))
                .arg("done")
                .query_async(&mut conn)
                .await?;
        let (Some(total), Some(done)) = (total, done) else {
            return Ok(None);
        };
        if done == TIMED_OUT || parts.len() != total as usize {
            return Ok(None);
        }
        let Ok(completed_at) = DateTime::parse_from_rfc3339(&done) else {
            return Ok(None);
        };
        let mut word_lengths = Vec::with_capacity(parts.len());
        let mut first: Option<DateTime<Utc>> = None;
        let mut last: Option<DateTime<Utc>> = None;
        for (expected, (seq, raw)) in parts.iter().enumerate() {
            if *seq as usize != expected {
                return Ok(None);
            }
            let part: Part = serde_json::from_str(raw)?;
            first = Some(first.map_or(part.r, |f| f.min(part.r)));
            last = Some(last.map_or(part.r, |l| l.max(part.r)));
            word_lengths.push(part.w);
        }
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(None);
        };
        Ok(Some(CollatedResource {
            resource_id: resource_id.to_string(),
            packets: total,
            word_lengths,
            first_received_at: first,
            last_received_at: last,
            completed_at: completed_at.with_timezone(&Utc),
        }))
    }

    /// Claims (at most `limit` per partition) resources first seen more than `timeout` ago and
    /// still incomplete; each is returned to exactly one caller across concurrent sweepers, and
    /// later packets of it are ignored.
    pub async fn sweep(
        &self,
        timeout: Duration,
        limit: usize,
    ) -> Result<Vec<TimedOut>, CollateError> {
        let cutoff =
            now_ms().saturating_sub(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let ttl = self.completed_ttl.as_secs().max(1);
        let mut conn = self.conn().await?;
        let mut claimed = Vec::new();
        for stream in self.partitions.iter() {
            let flat: Vec<String> = SWEEP
                .key(format!("{stream}:collate:open"))
                .arg(cutoff)
                .arg(limit.max(1))
                .arg(format!("{stream}:collate:res:"))
                .arg(ttl)
                .invoke_async(&mut conn)
                .await?;
            for chunk in flat.chunks_exact(4) {
                let mut received: Vec<u32> =
                    chunk[3].split(',').filter_map(|s| s.parse().ok()).collect();
                received.sort_unstable();
                claimed.push(TimedOut {
                    resource_id: chunk[0].clone(),
                    total: chunk[1].parse().unwrap_or(0),
                    first_seen_ms: chunk[2].parse().unwrap_or(0),
                    received,
                });
            }
        }
        Ok(claimed)
    }
}

/// The distinct stream keys of the queue's partitions, found through the public `stream_key`
/// (probing partition keys until every partition has been seen).
fn partition_streams(queue: &Queue<DeliveryJob>) -> Vec<String> {
    let want = usize::from(queue.config().partitions.max(1));
    let mut found = vec![queue.stream_key(None)];
    let mut probe = 0u32;
    while found.len() < want && probe < 65_536 {
        let key = queue.stream_key(Some(&probe.to_string()));
        if !found.contains(&key) {
            found.push(key);
        }
        probe += 1;
    }
    found
}
