//! The worker's background duties, each a loop that logs Redis errors and carries on:
//! `heartbeat` (liveness ZSET + lease extension of in-flight entries), `promoter` (due delayed
//! jobs to the stream, polled at ≤ 50 ms or sleeping exactly to the next due time) and
//! `reclaimer` (XAUTOCLAIM entries idle longer than the lease, with their delivery counts so the
//! batch dead-letters poison entries).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamPendingCountReply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::batch;
use super::shared::{Delivered, Handler, Shared};
use crate::backoff::Backoff;
use crate::job::now_ms;
use crate::keys::GROUP;
use crate::scripts;

/// Most jobs moved per promote call; more are moved right away in the next call.
const PROMOTE_LIMIT: usize = 1000;
/// Longest sleep between checks of the delayed set.
const PROMOTE_POLL: Duration = Duration::from_millis(50);

/// Every lease/3: records this worker as live and extends the leases of its in-flight entries.
pub(crate) async fn heartbeat<T, H>(shared: Arc<Shared<T, H>>, stop: CancellationToken)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let every = shared.config.lease / 3;
    loop {
        if let Err(e) = beat(&shared).await {
            tracing::warn!(error = %e, "worker heartbeat failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn beat<T, H>(shared: &Shared<T, H>) -> Result<(), crate::QueueError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let keys = shared.queue.keys();
    let now = now_ms();
    let mut conn = shared.queue.conn().await?;
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD")
        .arg(keys.workers())
        .arg(now)
        .arg(&shared.config.consumer)
        .ignore();
    // Forget workers silent for an hour so the set stays small.
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(keys.workers())
        .arg("-inf")
        .arg(now.saturating_sub(3_600_000))
        .ignore();
    pipe.query_async::<()>(&mut conn).await?;
    for (p, ids) in shared.inflight_snapshot() {
        let mut inv = scripts::EXTEND.prepare_invoke();
        inv.key(keys.stream(p))
            .arg(GROUP)
            .arg(&shared.config.consumer)
            .arg(&ids);
        let extended: usize = inv.invoke_async(&mut conn).await?;
        tracing::trace!(partition = p, extended, "leases extended");
    }
    Ok(())
}

/// Removes this worker from the liveness set (best effort, on shutdown).
pub(crate) async fn leave<T, H>(shared: &Shared<T, H>)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let remove = async {
        let mut conn = shared.queue.conn().await?;
        let _: () = redis::cmd("ZREM")
            .arg(shared.queue.keys().workers())
            .arg(&shared.config.consumer)
            .query_async(&mut conn)
            .await?;
        Ok::<(), crate::QueueError>(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(1), remove).await {
        tracing::debug!(error = %e, "could not leave the liveness set");
    }
}

/// Moves due delayed jobs of every partition into its stream until `stop`.
pub(crate) async fn promoter<T, H>(shared: Arc<Shared<T, H>>, stop: CancellationToken)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let mut backoff = Backoff::default();
    loop {
        match promote_once(&shared).await {
            Ok(sleep) => {
                backoff.reset();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "promoting delayed jobs failed; retrying");
                if !backoff.wait(&stop).await {
                    return;
                }
            }
        }
    }
}

/// One pass over the partitions; returns how long to sleep before the next pass.
async fn promote_once<T, H>(shared: &Shared<T, H>) -> Result<Duration, crate::QueueError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let keys = shared.queue.keys();
    let mut conn = shared.queue.conn().await?;
    let mut sleep = PROMOTE_POLL;
    for p in 0..keys.partitions() {
        let now = now_ms();
        let mut inv = scripts::PROMOTE.prepare_invoke();
        inv.key(keys.delayed(p))
            .key(keys.stream(p))
            .arg(now)
            .arg(PROMOTE_LIMIT);
        let (moved, next_due): (usize, i64) = inv.invoke_async(&mut conn).await?;
        if moved >= PROMOTE_LIMIT {
            sleep = Duration::ZERO;
        } else if next_due >= 0 {
            let until = Duration::from_millis((next_due as u64).saturating_sub(now_ms()));
            sleep = sleep.min(until);
        }
    }
    Ok(sleep)
}

/// Reclaims entries whose lease ran out (their worker died or stalled) and runs them here.
pub(crate) async fn reclaimer<T, H>(shared: Arc<Shared<T, H>>, stop: CancellationToken)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    let every = (shared.config.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        for p in 0..shared.queue.keys().partitions() {
            if let Err(e) = reclaim_partition(&shared, p, &stop).await {
                tracing::warn!(error = %e, partition = p, "reclaiming failed; retrying");
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
            backoff.reset();
        }
    }
}

async fn reclaim_partition<T, H>(
    shared: &Arc<Shared<T, H>>,
    p: u16,
    stop: &CancellationToken,
) -> Result<(), crate::QueueError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    let stream = shared.queue.keys().stream(p);
    let lease_ms = shared.config.lease.as_millis() as u64;
    let mut cursor = "0-0".to_string();
    loop {
        // Only claim when a batch slot is free, so reclaimed work never exceeds the concurrency.
        let permit = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            p = shared.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return Ok(()) },
        };
        let mut conn = shared.queue.conn().await?;
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(GROUP)
            .arg(&shared.config.consumer)
            .arg(lease_ms)
            .arg(&cursor)
            .arg("COUNT")
            .arg(shared.config.batch_size)
            .query_async(&mut conn)
            .await?;
        cursor = reply.next_stream_id.clone();
        // Our own entries only look idle when a heartbeat was late: keep them where they are.
        let claimed: Vec<_> = reply
            .claimed
            .into_iter()
            .filter(|e| !shared.is_inflight(p, &e.id))
            .collect();
        if !claimed.is_empty() {
            let counts =
                deliveries(&mut conn, &stream, claimed.iter().map(|e| e.id.as_str())).await?;
            // The batch dead-letters an entry delivered too often instead of running it again.
            let entries: Vec<Delivered> = claimed
                .into_iter()
                .map(|e| Delivered {
                    partition: p,
                    deliveries: counts.get(&e.id).copied(),
                    entry_id: e.id,
                    map: e.map,
                })
                .collect();
            metrics::counter!("conveyor_jobs_reclaimed_total", "queue" => shared.queue.name().to_string())
                .increment(entries.len() as u64);
            tracing::info!(
                partition = p,
                count = entries.len(),
                "reclaimed entries whose lease expired"
            );
            let task_shared = shared.clone();
            shared
                .tracker
                .spawn(async move { batch::process(task_shared, entries, permit).await });
        }
        if cursor == "0-0" {
            return Ok(());
        }
    }
}

/// Delivery counts of entries, from `XPENDING <stream> workers <id> <id> 1` each (one pipeline).
async fn deliveries<'a, C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, u64>, crate::QueueError> {
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("XPENDING")
            .arg(stream)
            .arg(GROUP)
            .arg(id)
            .arg(id)
            .arg(1);
    }
    let replies: Vec<StreamPendingCountReply> = pipe.query_async(conn).await?;
    Ok(replies
        .into_iter()
        .flat_map(|r| r.ids)
        .map(|p| (p.id, p.times_delivered as u64))
        .collect())
}
