//! Reading a queue's state: [`Queue::stats`] (one atomic script per partition, one pipeline) and the
//! dead-letter stream ([`Queue::dead_letters`], [`Queue::dead_letter`]). No consumption here.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::QueueError;
use crate::fanout::Fanout;
use crate::job::{now_ms, DeadLetter, Entry, JobId, QueueStats};
use crate::keys::GROUP;
use crate::pool::RedisConnection;
use crate::queue::Queue;
use crate::scripts;

/// A worker counts as live if its last heartbeat is this recent (3 × the default 5 s lease).
pub(crate) const LIVE_WINDOW: Duration = Duration::from_secs(15);

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Queue<T> {
    /// Backlog (not yet delivered), pending (delivered, unacked), delayed, dead, live workers.
    ///
    /// One pipeline: `stats.lua` per partition (an atomic read of that partition's counters;
    /// backlog = `XLEN − pending`, exact whatever was deleted, reclaimed or restored; see the
    /// script's header for why XINFO's `lag` is not used) and one `ZCOUNT` of recent heartbeats.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let keys = self.keys();
        let mut pipe = Fanout::new(self.pool().is_cluster(), self.keys());
        for p in 0..keys.partitions() {
            let (stream, delayed, dead) = (keys.stream(p), keys.delayed(p), keys.dead(p));
            let trimmed = keys.dead_trimmed(p);
            scripts::push(
                pipe.partition(p),
                &scripts::STATS,
                &[&stream, &delayed, &dead, &trimmed],
                &[GROUP.to_string()],
            );
        }
        let since = now_ms().saturating_sub(LIVE_WINDOW.as_millis() as u64);
        pipe.other()
            .cmd("ZCOUNT")
            .arg(keys.workers())
            .arg(since)
            .arg("+inf");
        let mut conn = self.conn().await?;
        // A node without stats.lua (a restart, a promoted replica) gets it loaded by `Fanout`.
        let (partitions, workers) = query_stats(&pipe, &mut conn).await?;
        let mut stats = QueueStats {
            workers,
            ..QueueStats::default()
        };
        for (p, [length, pending, delayed, dead, trimmed, bytes]) in
            partitions.into_iter().enumerate()
        {
            if length < pending {
                // Pending entries missing from the stream: something outside the queue deleted
                // or trimmed them (the scripts never do). Say so rather than hide it.
                tracing::warn!(
                    queue = self.name(),
                    partition = p,
                    length,
                    pending,
                    "stream holds fewer entries than are pending; entries were deleted behind the queue's back"
                );
            }
            stats.backlog += length.saturating_sub(pending);
            stats.pending += pending;
            stats.delayed += delayed;
            stats.dead += dead;
            stats.dead_trimmed += trimmed;
            stats.bytes += bytes;
        }
        Ok(stats)
    }

    /// The newest `count` dead letters over all partitions, newest first (without their
    /// handles: [`Queue::dead_entries`](crate::Queue::dead_entries) has them).
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let entries = self.dead_entries(count).await?;
        Ok(entries.into_iter().map(|e| e.letter).collect())
    }

    /// Puts a job straight into the dead-letter stream with a reason (trimmed like every
    /// dead-letter write, see [`QueueConfig::dead_letter_max`](crate::QueueConfig)).
    pub async fn dead_letter(&self, payload: &T, reason: &str) -> Result<JobId, QueueError> {
        let mut entry = Entry::new(serde_json::to_string(payload)?, false);
        entry.attempt = 0;
        let keys = self.keys();
        // No entry id: nothing to fence (no consumer, delivery count 0).
        let mut args = vec![
            GROUP.to_string(),
            String::new(),
            String::new(),
            "0".to_string(),
            self.config().dead_letter_max.to_string(),
        ];
        for (k, v) in entry.dead_fields(reason) {
            args.push(k.to_string());
            args.push(v);
        }
        let mut conn = self.conn().await?;
        let _: i64 = scripts::DEAD
            .key(keys.stream(0))
            .key(keys.dead(0))
            .key(keys.dead_trimmed(0))
            .arg(args)
            .invoke_async(&mut conn)
            .await?;
        metrics::counter!("conveyor_jobs_processed_total", "queue" => self.name().to_string(), "outcome" => "dead")
            .increment(1);
        Ok(JobId(entry.id))
    }
}

/// Sends the stats pipeline: per partition `[length, pending, delayed, dead, trimmed, bytes]`, then the count of
/// live workers. A reply of another shape is an error, never read as zeros.
async fn query_stats(
    pipe: &Fanout<'_>,
    conn: &mut RedisConnection,
) -> redis::RedisResult<(Vec<[u64; 6]>, u64)> {
    let mut replies: Vec<redis::Value> = pipe.query(conn).await?;
    let workers = match replies.pop() {
        Some(v) => redis::from_redis_value(v)?,
        None => 0,
    };
    let mut partitions = Vec::with_capacity(replies.len());
    for reply in replies {
        let counts: Vec<u64> = redis::from_redis_value(reply)?;
        let counts: [u64; 6] = counts.try_into().map_err(|got: Vec<u64>| {
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "stats.lua answered with another number of counts than 6",
                format!("{got:?}"),
            ))
        })?;
        partitions.push(counts);
    }
    Ok((partitions, workers))
}
