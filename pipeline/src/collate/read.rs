//! The delivery side of collation: [`Collator::fetch_many`] reads completed resources back for
//! delivery and [`Collator::release_many`] lets their data expire once delivered — each in ONE
//! pipelined round trip for a whole batch of delivery jobs (per resource they were two round
//! trips, which under load was most of Redis's event-loop iterations and AOF syncs); on a Redis
//! Cluster, one pipeline per partition (a hash slot), all sent at once (`queue::Fanout`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use queue::Fanout;

use super::{now_ms, CollateError, Collator, Fetched, Part, Tombstones};
use crate::ids::ResourceKey;
use crate::resource::CollatedResource;

impl Collator {
    /// The completed, undelivered resource, or `None` (unknown, incomplete, finished otherwise).
    pub async fn load(&self, key: &ResourceKey) -> Result<Option<CollatedResource>, CollateError> {
        Ok(match self.fetch(key).await? {
            Fetched::Ready(r) => Some(r),
            Fetched::Delivered | Fetched::Missing(_) => None,
        })
    }

    /// What a delivery job of resource `key` finds in Redis ([`Collator::fetch_many`] of one).
    pub async fn fetch(&self, key: &ResourceKey) -> Result<Fetched, CollateError> {
        self.fetch_many(std::slice::from_ref(key))
            .await?
            .pop()
            .unwrap_or_else(|| Err(CollateError::Unavailable("no reply".into())))
    }

    /// What the delivery jobs of `keys` find in Redis, one result per key in order, read in one
    /// pipelined round trip. `Err` as a whole when the round trip failed; a per-key `Err` when
    /// that key's replies do not decode. The parts hash is bounded by the size limit enforced in
    /// `collate.lua`, so reading it whole is safe.
    pub async fn fetch_many(
        &self,
        keys: &[ResourceKey],
    ) -> Result<Vec<Result<Fetched, CollateError>>, CollateError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        // One pipeline on one node; one per partition (= hash slot) on a cluster.
        let mut fan = Fanout::new(self.pool.is_cluster(), self.webhooks.keys());
        let mut per_key = 0usize;
        for key in keys {
            let resource_id = key.to_string();
            let (prefix, p) = self.prefix(&resource_id);
            let pipe = fan.partition(p);
            pipe.cmd("HGETALL")
                .arg(format!("{prefix}parts"))
                .cmd("HMGET")
                .arg(format!("{prefix}meta"))
                .arg("total")
                .arg("done");
            // The tombstone buckets, newest first: the newest state written wins.
            let buckets = self.tombstones().lookup(self.webhooks.keys(), p, now);
            per_key = 2 + buckets.len();
            for bucket in buckets {
                pipe.cmd("HGET").arg(bucket).arg(&resource_id);
            }
        }
        let mut conn = self.conn().await?;
        let replies = fan.query(&mut conn).await?;
        if replies.len() != per_key * keys.len() {
            return Err(CollateError::Unavailable(format!(
                "{} replies for {} resources",
                replies.len(),
                keys.len()
            )));
        }
        let mut replies = replies.into_iter();
        Ok(keys
            .iter()
            .map(|key| decode(key, replies.by_ref().take(per_key).collect()))
            .collect())
    }

    /// Marks a resource delivered ([`Collator::release_many`] of one).
    pub async fn release(&self, key: &ResourceKey) -> Result<(), CollateError> {
        self.release_many(std::slice::from_ref(key)).await
    }

    /// Marks resources delivered, in one pipelined round trip (all or nothing per resource: a
    /// `MULTI … EXEC` each on one node, one transaction per partition on a cluster): a re-run of a job then finds [`Fetched::Delivered`], the
    /// data expires after `completed_ttl` and the tombstone lives the retention more.
    pub async fn release_many(&self, keys: &[ResourceKey]) -> Result<(), CollateError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ttl = self.completed_ttl.as_secs().max(1);
        let tombstones = self.tombstones();
        let current = tombstones.current(now_ms());
        let mut fan = Fanout::new(self.pool.is_cluster(), self.webhooks.keys());
        for key in keys {
            let resource_id = key.to_string();
            let (prefix, p) = self.prefix(&resource_id);
            let bucket = format!("{}{current}", Tombstones::prefix(self.webhooks.keys(), p));
            fan.begin(p)
                .cmd("HSET")
                .arg(&bucket)
                .arg(&resource_id)
                .arg("delivered")
                .ignore()
                .cmd("EXPIRE")
                .arg(&bucket)
                .arg(tombstones.bucket_ttl_secs())
                .arg("NX")
                .ignore()
                .cmd("EXPIRE")
                .arg(format!("{prefix}parts"))
                .arg(ttl)
                .ignore()
                .cmd("EXPIRE")
                .arg(format!("{prefix}meta"))
                .arg(ttl)
                .ignore();
            fan.commit(p);
        }
        let mut conn = self.conn().await?;
        fan.query(&mut conn).await?;
        Ok(())
    }
}

/// One resource's replies of [`Collator::fetch_many`]: parts, meta (total, done), then the
/// tombstone buckets newest first.
fn decode(key: &ResourceKey, replies: Vec<redis::Value>) -> Result<Fetched, CollateError> {
    let mut replies = replies.into_iter();
    let parts: BTreeMap<u32, String> =
        redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))
            .map_err(redis::RedisError::from)?;
    let (total, done): (Option<u32>, Option<String>) =
        redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))
            .map_err(redis::RedisError::from)?;
    let state = replies.find_map(|v| redis::from_redis_value::<Option<String>>(v).ok().flatten());
    let missing = |what: &str| Ok(Fetched::Missing(what.to_string()));
    match state.as_deref() {
        Some("delivered") => return Ok(Fetched::Delivered),
        Some(other @ ("timed_out" | "too_large")) => {
            return missing(&format!("resource is {other}"))
        }
        _ => {}
    }
    let (Some(total), Some(done)) = (total, done) else {
        return missing("no completed resource: unknown, or its keys are gone");
    };
    if parts.len() != total as usize {
        return missing(&format!("{} of {total} parts present", parts.len()));
    }
    let Ok(completed_at) = DateTime::parse_from_rfc3339(&done) else {
        return missing(&format!("unreadable completion time {done:?}"));
    };
    let mut word_lengths = Vec::with_capacity(parts.len());
    let mut first: Option<DateTime<Utc>> = None;
    let mut last: Option<DateTime<Utc>> = None;
    for (expected, (seq, raw)) in parts.iter().enumerate() {
        if *seq as usize != expected {
            return missing(&format!("seq {expected} absent"));
        }
        let part: Part = serde_json::from_str(raw)?;
        first = Some(first.map_or(part.r, |f| f.min(part.r)));
        last = Some(last.map_or(part.r, |l| l.max(part.r)));
        word_lengths.push(part.w);
    }
    let (Some(first), Some(last)) = (first, last) else {
        return missing("no parts");
    };
    Ok(Fetched::Ready(CollatedResource {
        resource_id: key.id().to_string(),
        producer: key.producer().clone(),
        packets: total,
        word_lengths,
        first_received_at: first,
        last_received_at: last,
        completed_at: completed_at.with_timezone(&Utc),
    }))
}
