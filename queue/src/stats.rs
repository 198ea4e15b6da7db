//! Reading a queue's state: [`Queue::stats`] (a few cheap calls in one pipeline) and the
//! dead-letter stream ([`Queue::dead_letters`], [`Queue::dead_letter`]). No consumption here.

use std::time::Duration;

use redis::streams::{StreamInfoGroupsReply, StreamRangeReply};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::QueueError;
use crate::job::{now_ms, DeadLetter, Entry, JobId, QueueStats};
use crate::keys::GROUP;
use crate::queue::Queue;

/// A worker counts as live if its last heartbeat is this recent (3 × the default 5 s lease).
pub(crate) const LIVE_WINDOW: Duration = Duration::from_secs(15);

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Queue<T> {
    /// Backlog (not yet delivered), pending (delivered, unacked), delayed, dead, live workers.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let keys = self.keys();
        let parts = keys.partitions();
        let mut pipe = redis::pipe();
        for p in 0..parts {
            let stream = keys.stream(p);
            pipe.cmd("EXISTS").arg(&stream);
            pipe.cmd("XLEN").arg(&stream);
            pipe.cmd("ZCARD").arg(keys.delayed(p));
            pipe.cmd("XLEN").arg(keys.dead(p));
        }
        let since = now_ms().saturating_sub(LIVE_WINDOW.as_millis() as u64);
        pipe.cmd("ZCOUNT")
            .arg(keys.workers())
            .arg(since)
            .arg("+inf");
        let mut conn = self.conn().await?;
        let counts: Vec<u64> = pipe.query_async(&mut conn).await?;
        let mut stats = QueueStats {
            workers: counts.last().copied().unwrap_or(0),
            ..QueueStats::default()
        };
        let at = |i: usize| counts.get(i).copied().unwrap_or(0);
        for p in 0..parts {
            let i = usize::from(p) * 4;
            let (exists, len) = (at(i), at(i + 1));
            stats.delayed += at(i + 2);
            stats.dead += at(i + 3);
            if exists == 0 {
                continue;
            }
            let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(keys.stream(p))
                .query_async(&mut conn)
                .await?;
            match groups.groups.iter().find(|g| g.name == GROUP) {
                Some(g) => {
                    let pending = g.pending as u64;
                    stats.pending += pending;
                    stats.backlog += g
                        .lag
                        .map_or_else(|| len.saturating_sub(pending), |lag| lag as u64);
                }
                None => stats.backlog += len,
            }
        }
        Ok(stats)
    }

    /// The newest `count` dead letters over all partitions, newest first.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let keys = self.keys();
        let mut pipe = redis::pipe();
        for p in 0..keys.partitions() {
            pipe.cmd("XREVRANGE")
                .arg(keys.dead(p))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(count);
        }
        let mut conn = self.conn().await?;
        let replies: Vec<StreamRangeReply> = pipe.query_async(&mut conn).await?;
        let mut letters: Vec<DeadLetter> = replies
            .iter()
            .flat_map(|r| r.ids.iter())
            .filter_map(|e| parse_dead(&e.map))
            .collect();
        letters.sort_by_key(|l| std::cmp::Reverse(l.dead_at_ms));
        letters.truncate(count);
        Ok(letters)
    }

    /// Puts a job straight into the dead-letter stream with a reason.
    pub async fn dead_letter(&self, payload: &T, reason: &str) -> Result<JobId, QueueError> {
        let mut entry = Entry::new(serde_json::to_string(payload)?, false);
        entry.attempt = 0;
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("XADD")
            .arg(self.keys().dead(0))
            .arg("*")
            .arg(dead_fields(&entry, reason))
            .query_async(&mut conn)
            .await?;
        metrics::counter!("conveyor_jobs_processed_total", "queue" => self.name().to_string(), "outcome" => "dead")
            .increment(1);
        Ok(JobId(entry.id))
    }
}

/// Field/value pairs of a dead letter: the entry, its final error and its whole history.
pub(crate) fn dead_fields(entry: &Entry, error: &str) -> Vec<(&'static str, String)> {
    let mut history = entry.history.clone();
    history.push(error.to_string());
    vec![
        ("id", entry.id.clone()),
        ("payload", entry.payload.clone()),
        ("error", error.to_string()),
        ("attempts", entry.attempt.to_string()),
        (
            "history",
            serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()),
        ),
        ("dead_at", now_ms().to_string()),
    ]
}

fn parse_dead(map: &std::collections::HashMap<String, redis::Value>) -> Option<DeadLetter> {
    let get = |k: &str| {
        map.get(k)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
    };
    let payload_raw = get("payload").unwrap_or_default();
    Some(DeadLetter {
        job_id: JobId(get("id")?),
        payload: serde_json::from_str(&payload_raw)
            .unwrap_or(serde_json::Value::String(payload_raw)),
        error: get("error").unwrap_or_default(),
        attempts: get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
        history: get("history")
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_default(),
        dead_at_ms: get("dead_at").and_then(|a| a.parse().ok()).unwrap_or(0),
    })
}
