//! What an operator reads of a queue: the queues of a namespace ([`list_queues`], [`open`]),
//! per-partition counts with the next due time and the oldest job's age
//! ([`Queue::partition_states`]), jobs held by workers (owner, idle time) and delayed jobs.
//! Plain reads (and `stats.lua`); nothing here changes a job.

use std::collections::BTreeMap;

use redis::streams::StreamRangeReply;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::QueueConfig;
use crate::error::QueueError;
use crate::fanout::Fanout;
use crate::job::{wire, Entry};
use crate::keys::{Keys, GROUP};
use crate::nodes::scan_all;
use crate::pool::RedisPool as Pool;
use crate::queue::Queue;
use crate::scripts;

/// One queue found in a namespace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueRef {
    pub name: String,
    /// The partition count stored by its workers, else one more than the highest partition
    /// stream found.
    pub partitions: u16,
}

/// One partition's state, read in one round trip.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: u16,
    /// Jobs not yet delivered to a worker.
    pub backlog: u64,
    /// Jobs delivered and not yet settled.
    pub pending: u64,
    pub delayed: u64,
    pub dead: u64,
    /// Milliseconds until the next delayed job is due (0 if it is due now), if any is delayed.
    pub next_due_in_ms: Option<u64>,
    /// Age of the oldest job in the stream (waiting or running), by its first enqueue time.
    pub oldest_age_ms: Option<u64>,
}

/// A job a worker holds (delivered, not yet settled).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingJob {
    pub partition: u16,
    pub entry_id: String,
    /// `None` if the entry is gone from the stream (it is being settled right now).
    pub job_id: Option<String>,
    /// The consumer (worker) that holds it.
    pub consumer: String,
    /// Milliseconds since its lease was last extended or it was delivered.
    pub idle_ms: u64,
    pub deliveries: u64,
}

/// A job waiting for its time in a delayed set (scheduled, a retry, or a wait).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DelayedJob {
    pub partition: u16,
    pub job_id: String,
    pub attempt: u32,
    /// Unix milliseconds it becomes due.
    pub run_at_ms: u64,
    pub payload: serde_json::Value,
}

/// The queues of `namespace`: every name with a partition stream or a stored partition count
/// (`SCAN`, so it is O(keys of the namespace); meant for operators, not hot paths).
pub async fn list_queues(pool: &Pool, namespace: &str) -> Result<Vec<QueueRef>, QueueError> {
    let mut conn = pool.get().await?;
    let prefix = format!("{namespace}:{{");
    let pattern = format!("{}*", glob_escape(&prefix));
    let mut found: BTreeMap<String, (Option<u16>, u16)> = BTreeMap::new();
    // Every master's keys on a cluster (see `scan_all`).
    for key in scan_all(&mut conn, &pattern).await? {
        let Some(rest) = key.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(name) = rest.strip_suffix("}:partitions") {
            let stored: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            let entry = found.entry(name.to_string()).or_default();
            entry.0 = stored.and_then(|s| s.parse().ok());
        } else if let Some(inner) = rest.strip_suffix('}') {
            // A partition stream `<ns>:{<name>:<p>}` (`<ns>:{<name>:<p>:s<n>}` on a cluster).
            if let Some((name, p)) = crate::slot::parse_tag(inner) {
                let entry = found.entry(name.to_string()).or_default();
                entry.1 = entry.1.max(p.saturating_add(1));
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(name, (stored, seen))| QueueRef {
            name,
            partitions: stored.unwrap_or(seen).max(1),
        })
        .collect())
}

/// A handle on queue `name` of `namespace` for inspection and admin actions, with the partition
/// count its workers stored (1 if none is stored yet). Payloads are read as JSON values.
pub async fn open(
    pool: Pool,
    namespace: &str,
    name: &str,
) -> Result<Queue<serde_json::Value>, QueueError> {
    let key = Keys::new(namespace, name, 1).partitions_key();
    let mut conn = pool.get().await?;
    let stored: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    let mut config = QueueConfig::new(namespace, name);
    config.partitions = stored.and_then(|s| s.parse().ok()).unwrap_or(1);
    Ok(Queue::new(pool, config))
}

/// Whether queue `name` of `namespace` holds or held anything: a stored partition count, or
/// partition 0's stream, delayed set or dead letters (a queue's partitions are used evenly, so a
/// used queue has partition 0 keys unless everything there settled and its workers never ran).
pub async fn exists(pool: &Pool, namespace: &str, name: &str) -> Result<bool, QueueError> {
    let keys = Keys::for_mode(namespace, name, 1, pool.is_cluster());
    let mut conn = pool.get().await?;
    let n: u64 = redis::cmd("EXISTS")
        .arg(keys.partitions_key())
        .arg(keys.stream(0))
        .arg(keys.delayed(0))
        .arg(keys.dead(0))
        .arg(keys.paused())
        .query_async(&mut conn)
        .await?;
    Ok(n > 0)
}

/// `text` with the glob characters of `SCAN MATCH` / `ZSCAN MATCH` escaped.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One reply of a pipeline as `R`.
pub(crate) fn parse<R: redis::FromRedisValue>(v: redis::Value) -> Result<R, QueueError> {
    redis::from_redis_value(v).map_err(|e| QueueError::Redis(e.into()))
}

/// Redis's clock in unix milliseconds, from a `TIME` reply.
pub(crate) fn redis_ms(time: redis::Value) -> Result<u64, QueueError> {
    let (s, us): (u64, u64) = parse(time)?;
    Ok(s * 1000 + us / 1000)
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Queue<T> {
    /// Every partition's counts, next due time and oldest job age, in one pipeline.
    pub async fn partition_states(&self) -> Result<Vec<PartitionState>, QueueError> {
        let keys = self.keys();
        let mut pipes = Fanout::new(self.pool().is_cluster(), self.keys());
        pipes.other().cmd("TIME");
        for p in 0..keys.partitions() {
            let (stream, delayed, dead) = (keys.stream(p), keys.delayed(p), keys.dead(p));
            let trimmed = keys.dead_trimmed(p);
            let pipe = pipes.partition(p);
            scripts::push(
                pipe,
                &scripts::STATS,
                &[&stream, &delayed, &dead, &trimmed],
                &[GROUP.to_string()],
            );
            pipe.cmd("ZRANGE")
                .arg(&delayed)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
            pipe.cmd("XRANGE")
                .arg(&stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1);
        }
        let mut conn = self.conn().await?;
        let mut replies = pipes.query(&mut conn).await?.into_iter();
        let now = redis_ms(replies.next().unwrap_or(redis::Value::Nil))?;
        let mut out = Vec::with_capacity(usize::from(keys.partitions()));
        for partition in 0..keys.partitions() {
            let (Some(counts), Some(next), Some(first)) =
                (replies.next(), replies.next(), replies.next())
            else {
                break;
            };
            let counts: Vec<u64> = parse(counts)?;
            let next: Vec<(String, f64)> = parse(next)?;
            let first: StreamRangeReply = parse(first)?;
            let get = |i: usize| counts.get(i).copied().unwrap_or(0);
            out.push(PartitionState {
                partition,
                backlog: get(0).saturating_sub(get(1)),
                pending: get(1),
                delayed: get(2),
                dead: get(3),
                next_due_in_ms: next.first().map(|(_, at)| (*at as u64).saturating_sub(now)),
                oldest_age_ms: first
                    .ids
                    .first()
                    .and_then(|e| Entry::from_map(&e.map))
                    .map(|e| now.saturating_sub(e.enqueued_at)),
            });
        }
        Ok(out)
    }

    /// Age of the oldest job waiting or running, over all partitions (`None` when none is).
    pub async fn oldest_job_age_ms(&self) -> Result<Option<u64>, QueueError> {
        let states = self.partition_states().await?;
        Ok(states.iter().filter_map(|s| s.oldest_age_ms).max())
    }

    /// Up to `limit` jobs held by workers per partition, oldest entry first.
    pub async fn pending_jobs(&self, limit: usize) -> Result<Vec<PendingJob>, QueueError> {
        let keys = self.keys();
        let mut conn = self.conn().await?;
        let mut out = Vec::new();
        for p in 0..keys.partitions() {
            let stream = keys.stream(p);
            let held: redis::RedisResult<Vec<(String, String, u64, u64)>> = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(limit.max(1))
                .query_async(&mut conn)
                .await;
            let held = match held {
                Ok(h) => h,
                // No stream or no group yet: nothing is pending.
                Err(e) if e.code() == Some("NOGROUP") => continue,
                Err(e) => return Err(e.into()),
            };
            let mut pipe = redis::pipe();
            for (id, ..) in &held {
                pipe.cmd("XRANGE").arg(&stream).arg(id).arg(id);
            }
            let entries: Vec<StreamRangeReply> = match held.is_empty() {
                true => Vec::new(),
                false => pipe.query_async(&mut conn).await?,
            };
            for ((entry_id, consumer, idle_ms, deliveries), entry) in held.into_iter().zip(entries)
            {
                let job_id = entry.ids.first().and_then(|e| {
                    e.map
                        .get(wire::ID)
                        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                });
                out.push(PendingJob {
                    partition: p,
                    entry_id,
                    job_id,
                    consumer,
                    idle_ms,
                    deliveries,
                });
            }
        }
        Ok(out)
    }

    /// Up to `limit` delayed jobs per partition, soonest first.
    pub async fn delayed_jobs(&self, limit: usize) -> Result<Vec<DelayedJob>, QueueError> {
        let keys = self.keys();
        let mut pipes = Fanout::new(self.pool().is_cluster(), self.keys());
        for p in 0..keys.partitions() {
            pipes
                .partition(p)
                .cmd("ZRANGE")
                .arg(keys.delayed(p))
                .arg(0)
                .arg(limit.max(1) - 1)
                .arg("WITHSCORES");
        }
        let mut conn = self.conn().await?;
        let replies: Vec<Vec<(String, f64)>> = pipes
            .query(&mut conn)
            .await?
            .into_iter()
            .map(parse)
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (p, members) in replies.into_iter().enumerate() {
            for (member, score) in members {
                if let Some(entry) = decode_member(&member) {
                    out.push(DelayedJob {
                        partition: p as u16,
                        job_id: entry.id,
                        attempt: entry.attempt,
                        run_at_ms: score as u64,
                        payload: serde_json::from_str(&entry.payload)
                            .unwrap_or(serde_json::Value::String(entry.payload)),
                    });
                }
            }
        }
        out.sort_by_key(|d| d.run_at_ms);
        Ok(out)
    }
}

/// A delayed-set member (a JSON array of field/value strings) as an entry.
pub(crate) fn decode_member(member: &str) -> Option<Entry> {
    let flat: Vec<String> = serde_json::from_str(member).ok()?;
    let map = flat
        .chunks_exact(2)
        .map(|kv| {
            (
                kv[0].clone(),
                redis::Value::BulkString(kv[1].clone().into_bytes()),
            )
        })
        .collect();
    Entry::from_map(&map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("ns:{q}"), "ns:{q}");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn a_delayed_member_decodes_to_its_entry() {
        let entry = Entry::new("{\"n\":1}".into(), false);
        let back = decode_member(&entry.delayed_member()).unwrap();
        assert_eq!(back, entry);
        assert!(decode_member("not json").is_none());
    }
}
