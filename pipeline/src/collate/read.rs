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

    /// What the delivery jobs of `keys` find in Redis, one result per key in order. One pipelined
    /// round trip reads each resource's parts and meta (total, done, delivered); only a resource
    /// without complete meta (its data gone: delivered long ago, timed out, too large, or lost)
    /// needs its tombstone buckets, read in a second round trip for those alone (they were 8
    /// reads per resource, most of the pipeline). `Err` as a whole when a round trip failed; a
    /// per-key `Err` when that key's replies do not decode. The parts hash is bounded by the size
    /// limit enforced in `collate.lua`, so reading it whole is safe.
    pub async fn fetch_many(
        &self,
        keys: &[ResourceKey],
    ) -> Result<Vec<Result<Fetched, CollateError>>, CollateError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One pipeline on one node; one per partition (= hash slot) on a cluster.
        let mut fan = Fanout::new(self.pool.is_cluster(), self.webhooks.keys());
        for key in keys {
            let (prefix, p) = self.prefix(&key.to_string());
            fan.partition(p)
                .cmd("HGETALL")
                .arg(format!("{prefix}parts"))
                .cmd("HMGET")
                .arg(format!("{prefix}meta"))
                .arg("total")
                .arg("done")
                .arg("delivered");
        }
        let mut conn = self.conn().await?;
        let replies = fan.query(&mut conn).await?;
        if replies.len() != 2 * keys.len() {
            return Err(unexpected(replies.len(), keys.len()));
        }
        let mut replies = replies.into_iter();
        let mut found: Vec<Result<Found, CollateError>> = keys
            .iter()
            .map(|_| found(replies.next(), replies.next()))
            .collect();
        let unsettled: Vec<usize> = (0..keys.len())
            .filter(|&i| matches!(&found[i], Ok(f) if !f.settled()))
            .collect();
        if !unsettled.is_empty() {
            let now = now_ms();
            let mut fan = Fanout::new(self.pool.is_cluster(), self.webhooks.keys());
            let mut per_key = 0usize;
            for &i in &unsettled {
                let resource_id = keys[i].to_string();
                let p = self.prefix(&resource_id).1;
                // The tombstone buckets, newest first: the newest state written wins.
                let buckets = self.tombstones().lookup(self.webhooks.keys(), p, now);
                per_key = buckets.len();
                let pipe = fan.partition(p);
                for bucket in buckets {
                    pipe.cmd("HGET").arg(bucket).arg(&resource_id);
                }
            }
            let states = fan.query(&mut conn).await?;
            if states.len() != per_key * unsettled.len() {
                return Err(unexpected(states.len(), unsettled.len()));
            }
            let mut states = states.into_iter();
            for &i in &unsettled {
                let state = states
                    .by_ref()
                    .take(per_key)
                    .find_map(|v| redis::from_redis_value::<Option<String>>(v).ok().flatten());
                if let Ok(f) = &mut found[i] {
                    f.state = state;
                }
            }
        }
        Ok(keys
            .iter()
            .zip(found)
            .map(|(key, f)| f.and_then(|f| decode(key, f)))
            .collect())
    }

    /// Marks a resource delivered ([`Collator::release_many`] of one).
    pub async fn release(&self, key: &ResourceKey) -> Result<(), CollateError> {
        self.release_many(std::slice::from_ref(key)).await
    }

    /// Marks resources delivered, in one pipelined round trip, all or nothing per partition (one
    /// `MULTI … EXEC` per partition on one node, one transaction per partition on a cluster): a
    /// re-run of a job then finds [`Fetched::Delivered`], the data expires after `completed_ttl`
    /// and the tombstone lives the retention more. A partition's tombstones go in one `HSET` of
    /// its current bucket, which gets its TTL once (`EXPIRE … NX`), not once per resource.
    pub async fn release_many(&self, keys: &[ResourceKey]) -> Result<(), CollateError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ttl = self.completed_ttl.as_secs().max(1);
        let tombstones = self.tombstones();
        let current = tombstones.current(now_ms());
        // Resources by partition, in order.
        let mut by_partition: BTreeMap<u16, Vec<(String, String)>> = BTreeMap::new();
        for key in keys {
            let resource_id = key.to_string();
            let (prefix, p) = self.prefix(&resource_id);
            by_partition
                .entry(p)
                .or_default()
                .push((resource_id, prefix));
        }
        let mut fan = Fanout::new(self.pool.is_cluster(), self.webhooks.keys());
        for (p, resources) in &by_partition {
            let bucket = format!("{}{current}", Tombstones::prefix(self.webhooks.keys(), *p));
            let pipe = fan.begin(*p);
            let hset = pipe.cmd("HSET").arg(&bucket);
            for (resource_id, _) in resources {
                hset.arg(resource_id).arg("delivered");
            }
            pipe.ignore()
                .cmd("EXPIRE")
                .arg(&bucket)
                .arg(tombstones.bucket_ttl_secs())
                .arg("NX")
                .ignore();
            for (_, prefix) in resources {
                // Read by fetch_many without the buckets while the data lives. (Data already
                // gone gets a meta of this one field, expiring with the TTL below.)
                pipe.cmd("HSET")
                    .arg(format!("{prefix}meta"))
                    .arg("delivered")
                    .arg("1")
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(format!("{prefix}parts"))
                    .arg(ttl)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(format!("{prefix}meta"))
                    .arg(ttl)
                    .ignore();
            }
            fan.commit(*p);
        }
        let mut conn = self.conn().await?;
        fan.query(&mut conn).await?;
        Ok(())
    }
}

/// What [`Collator::fetch_many`] read of one resource: parts, meta, and (read only when meta is
/// not complete) the newest tombstone state.
struct Found {
    parts: BTreeMap<u32, String>,
    total: Option<u32>,
    done: Option<String>,
    delivered: bool,
    state: Option<String>,
}

impl Found {
    /// Complete meta: the resource is ready or (marked in its meta) delivered; no tombstone needed.
    fn settled(&self) -> bool {
        self.total.is_some() && self.done.is_some()
    }
}

fn found(parts: Option<redis::Value>, meta: Option<redis::Value>) -> Result<Found, CollateError> {
    let parts: BTreeMap<u32, String> = redis::from_redis_value(parts.unwrap_or(redis::Value::Nil))
        .map_err(redis::RedisError::from)?;
    let (total, done, delivered): (Option<u32>, Option<String>, Option<String>) =
        redis::from_redis_value(meta.unwrap_or(redis::Value::Nil))
            .map_err(redis::RedisError::from)?;
    Ok(Found {
        parts,
        total,
        done,
        delivered: delivered.is_some(),
        state: None,
    })
}

fn unexpected(replies: usize, resources: usize) -> CollateError {
    CollateError::Unavailable(format!("{replies} replies for {resources} resources"))
}

/// What one resource's delivery job finds: from its meta when complete, else from its tombstone.
fn decode(key: &ResourceKey, found: Found) -> Result<Fetched, CollateError> {
    let Found {
        parts,
        total,
        done,
        delivered,
        state,
    } = found;
    if delivered {
        return Ok(Fetched::Delivered);
    }
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
