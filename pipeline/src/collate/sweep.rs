//! The timeout sweep: [`Collator::sweep_once`] runs `scripts/sweep.lua` on every partition, which
//! claims resources still incomplete past the timeout, dead-letters each (reason naming the
//! missing seqs), tombstones it and drops its data in one atomic step, and says how many timed-out
//! resources are still open, so a caller keeps sweeping while fresh ids pile up faster than one
//! pass claims.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::tombstone::Tombstones;
use super::{now_ms, CollateError, Collator, DEAD_FIELDS};

static SWEEP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/sweep.lua")));

/// Most missing seqs spelled out in a timed-out resource's dead-letter reason.
const LISTED_MISSING: usize = 50;

/// A resource claimed (and already dead-lettered) by a sweep.
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

/// What one pass over every partition did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Resources claimed and dead-lettered by this pass.
    pub timed_out: Vec<TimedOut>,
    /// Timed-out resources still open after the pass (over all partitions): sweep again.
    pub left: u64,
}

impl Collator {
    /// One pass: claims at most `limit` resources per partition first seen more than `timeout`
    /// ago and still incomplete, and dead-letters each in the same script, with a reason naming
    /// the missing seqs; each is claimed by exactly one of concurrent sweepers, and later packets
    /// of it are ignored. Returns what was claimed (already reported) and how many are left.
    pub async fn sweep_once(&self, timeout: Duration, limit: usize) -> Result<Swept, CollateError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let cutoff = now.saturating_sub(timeout_ms);
        let limit = limit.max(1);
        let template = format!(
            "resource {{id}} timed out after {timeout_ms} ms: received {{received}} of {{total}} \
             packets; missing seqs [{{missing}}]"
        );
        let tombstones = self.tombstones();
        let keep = self.webhooks.config().dead_letter_max;
        let mut conn = self.conn().await?;
        let mut swept = Swept::default();
        let keys = self.webhooks.keys();
        for p in 0..keys.partitions() {
            let job_ids: Vec<String> = (0..limit)
                .map(|_| uuid::Uuid::now_v7().to_string())
                .collect();
            let mut flat: Vec<String> = SWEEP
                .key(keys.in_partition(p, "collate:open"))
                .key(keys.dead(p))
                .key(keys.dead_trimmed(p))
                .arg(cutoff)
                .arg(limit)
                .arg(keys.in_partition(p, "collate:res:"))
                .arg(Tombstones::prefix(keys, p))
                .arg(tombstones.current(now))
                .arg(tombstones.bucket_ttl_secs())
                .arg(now)
                .arg(&template)
                .arg(LISTED_MISSING)
                .arg(keep)
                .arg(&DEAD_FIELDS[..])
                .arg(job_ids)
                .invoke_async(&mut conn)
                .await?;
            swept.left += flat.pop().and_then(|n| n.parse().ok()).unwrap_or(0);
            for chunk in flat.chunks_exact(4) {
                let mut received: Vec<u32> =
                    chunk[3].split(',').filter_map(|s| s.parse().ok()).collect();
                received.sort_unstable();
                swept.timed_out.push(TimedOut {
                    resource_id: chunk[0].clone(),
                    total: chunk[1].parse().unwrap_or(0),
                    first_seen_ms: chunk[2].parse().unwrap_or(0),
                    received,
                });
            }
        }
        Ok(swept)
    }

    /// [`Collator::sweep_once`], returning only what was claimed.
    pub async fn sweep(
        &self,
        timeout: Duration,
        limit: usize,
    ) -> Result<Vec<TimedOut>, CollateError> {
        Ok(self.sweep_once(timeout, limit).await?.timed_out)
    }
}
