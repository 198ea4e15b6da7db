//! The worker's background duties, each a loop that logs Redis errors and carries on:
//! `heartbeat` (liveness ZSET, and per partition `extend.lua`: a heartbeat by Redis's clock +
//! lease extension of in-flight entries), `promoter` (due delayed jobs to the stream by Redis's
//! clock, polled at ≤ 50 ms or sleeping exactly to the next due time) and `reclaimer`
//! (`reclaim.lua`: entries idle longer than the lease whose owner's heartbeat is stale, with
//! their delivery counts so the batch dead-letters poison entries; now and then `consumers.lua`
//! removes consumers that died with nothing pending). `leave` takes the worker out on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::batch;
use super::shared::{in_flight, Delivered, Handler, Shared};
use crate::backoff::Backoff;
use crate::job::now_ms;
use crate::keys::GROUP;
use crate::queue::Queue;
use crate::scripts;

/// Most jobs moved per promote call; more are moved right away in the next call.
const PROMOTE_LIMIT: usize = 1000;
/// Longest sleep between checks of the delayed set.
const PROMOTE_POLL: Duration = Duration::from_millis(50);

/// Reclaim passes between two sweeps for consumers that died with nothing pending.
const PRUNE_EVERY: u32 = 8;

/// Every lease/3: records this worker as live and extends the leases of its in-flight entries
/// held a beat interval or longer.
/// A failed beat is tried again soon (from 50 ms), so a worker is back in the heartbeat sets
/// moments after Redis is.
pub(crate) async fn heartbeat<T, H>(shared: Arc<Shared<T, H>>, stop: CancellationToken)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let every = shared.config.lease / 3;
    let mut retry = Backoff::new(Duration::from_millis(50), every);
    loop {
        let sleep = match beat(&shared).await {
            Ok(()) => {
                retry.reset();
                every
            }
            Err(e) => {
                tracing::warn!(error = %e, "worker heartbeat failed");
                retry.next_delay()
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(sleep) => {}
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
    // Only entries held for a beat interval or more: an entry's idle time then stays under
    // two intervals (2/3 of a lease) between beats, below what any reclaim waits for.
    let lease_ms = shared.config.lease.as_millis() as u64;
    let at = Instant::now();
    let mut inflight: HashMap<u16, Vec<String>> = shared
        .inflight_older_than(shared.config.lease / 3)
        .into_iter()
        .collect();
    for p in 0..keys.partitions() {
        let ids = inflight.remove(&p).unwrap_or_default();
        let mut inv = scripts::EXTEND.prepare_invoke();
        inv.key(keys.stream(p))
            .key(keys.consumers(p))
            .key(keys.beats_since(p))
            .arg(GROUP)
            .arg(&shared.config.consumer)
            .arg(lease_ms)
            .arg(&ids);
        let extended: usize = inv.invoke_async(&mut conn).await?;
        shared.renewed(p, &ids, at);
        tracing::trace!(partition = p, extended, "heartbeat; leases extended");
    }
    Ok(())
}

/// Takes this worker out (best effort, on shutdown): out of the liveness set and every
/// partition's heartbeat set (so others reclaim what it left at once, after its lease), and out
/// of the consumer group where it has nothing pending.
pub(crate) async fn leave<T, H>(shared: &Shared<T, H>)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let remove = async {
        let keys = shared.queue.keys();
        let mut conn = shared.queue.conn().await?;
        let _: () = redis::cmd("ZREM")
            .arg(keys.workers())
            .arg(&shared.config.consumer)
            .query_async(&mut conn)
            .await?;
        for p in 0..keys.partitions() {
            let mut inv = scripts::CONSUMERS.prepare_invoke();
            inv.key(keys.stream(p))
                .key(keys.consumers(p))
                .key(keys.beats_since(p))
                .arg(GROUP)
                .arg("leave")
                .arg(&shared.config.consumer);
            let _: i64 = inv.invoke_async(&mut conn).await?;
        }
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
        let mut inv = scripts::PROMOTE.prepare_invoke();
        inv.key(keys.delayed(p))
            .key(keys.stream(p))
            .arg(PROMOTE_LIMIT);
        let (moved, next_in): (usize, i64) = inv.invoke_async(&mut conn).await?;
        if moved >= PROMOTE_LIMIT {
            sleep = Duration::ZERO;
        } else if next_in >= 0 {
            sleep = sleep.min(Duration::from_millis(next_in as u64));
        }
    }
    Ok(sleep)
}

/// Reclaims entries whose worker is gone (see `reclaim.lua`) and runs them here; every
/// [`PRUNE_EVERY`] passes, removes consumers that died with nothing pending.
pub(crate) async fn reclaimer<T, H>(shared: Arc<Shared<T, H>>, stop: CancellationToken)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    let every = (shared.config.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    // The series exists from the start (at 0), so a dashboard's query finds it before any reclaim.
    metrics::counter!("conveyor_jobs_reclaimed_total", "queue" => shared.queue.name().to_string())
        .increment(0);
    let mut backoff = Backoff::default();
    let mut passes = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        passes = passes.wrapping_add(1);
        for p in 0..shared.queue.keys().partitions() {
            let mut result = reclaim_partition(&shared, p, &stop).await;
            if result.is_ok() && passes % PRUNE_EVERY == 0 {
                result = prune(&shared.queue, p, shared.config.lease).await;
            }
            if let Err(e) = result {
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

/// One claimed entry as `reclaim.lua` returns it: id, delivery count (after the claim), fields.
type Claimed = (String, u64, Vec<redis::Value>);

async fn reclaim_partition<T, H>(
    shared: &Arc<Shared<T, H>>,
    p: u16,
    stop: &CancellationToken,
) -> Result<(), crate::QueueError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    let keys = shared.queue.keys();
    let lease_ms = shared.config.lease.as_millis() as u64;
    let mut cursor = "-".to_string();
    loop {
        // Only claim when a batch slot is free, so reclaimed work never exceeds the concurrency.
        let permit = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            p = shared.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return Ok(()) },
        };
        let reservation = shared.budget.free(shared.config.batch_size);
        let mut conn = shared.queue.conn().await?;
        let mut inv = scripts::RECLAIM.prepare_invoke();
        inv.key(keys.stream(p))
            .key(keys.consumers(p))
            .key(keys.beats_since(p))
            .arg(GROUP)
            .arg(&shared.config.consumer)
            .arg(lease_ms)
            .arg(reservation.count)
            .arg(&cursor);
        let (next, claimed): (String, Vec<Claimed>) =
            split_reply(inv.invoke_async(&mut conn).await?);
        cursor = next;
        // An own entry still running here (a late heartbeat) stays with the batch running it.
        let entries: Vec<Delivered> = claimed
            .into_iter()
            .filter(|(id, _, _)| !shared.is_inflight(p, id))
            .map(|(entry_id, deliveries, fields)| Delivered {
                partition: p,
                entry_id,
                map: field_map(fields),
                deliveries,
            })
            .collect();
        if !entries.is_empty() {
            shared.track(&in_flight(&entries), true);
            metrics::counter!("conveyor_jobs_reclaimed_total", "queue" => shared.queue.name().to_string())
                .increment(entries.len() as u64);
            tracing::info!(
                partition = p,
                count = entries.len(),
                "reclaimed entries of a worker whose heartbeat stopped"
            );
            let held = shared.hold(permit, reservation, &entries).await;
            let task_shared = shared.clone();
            shared
                .tracker
                .spawn(async move { batch::process(task_shared, entries, held).await });
        }
        if cursor == "0-0" {
            return Ok(());
        }
    }
}

/// `reclaim.lua`'s reply: the next scan start, then the claimed entries.
/// Anything unreadable ends the scan (and is taken again on a later pass).
fn split_reply(reply: redis::Value) -> (String, Vec<Claimed>) {
    let redis::Value::Array(items) = reply else {
        return ("0-0".into(), Vec::new());
    };
    let mut items = items.into_iter();
    let next: String = items
        .next()
        .and_then(|v| redis::from_redis_value(v).ok())
        .unwrap_or_else(|| "0-0".into());
    let mut claimed = Vec::new();
    for item in items {
        let redis::Value::Array(parts) = item else {
            continue;
        };
        let mut parts = parts.into_iter();
        let (Some(id), Some(n), Some(redis::Value::Array(fields))) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let (Ok(id), Ok(n)) = (redis::from_redis_value(id), redis::from_redis_value(n)) {
            claimed.push((id, n, fields));
        }
    }
    (next, claimed)
}

/// A flat field/value list as a map.
fn field_map(fields: Vec<redis::Value>) -> HashMap<String, redis::Value> {
    let mut map = HashMap::with_capacity(fields.len() / 2);
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if let Ok(name) = redis::from_redis_value::<String>(name) {
            map.insert(name, value);
        }
    }
    map
}

/// Removes partition `p`'s consumers that died with nothing pending (`consumers.lua prune`).
async fn prune<T>(queue: &Queue<T>, p: u16, lease: Duration) -> Result<(), crate::QueueError> {
    let keys = queue.keys();
    let mut conn = queue.conn().await?;
    let mut inv = scripts::CONSUMERS.prepare_invoke();
    inv.key(keys.stream(p))
        .key(keys.consumers(p))
        .key(keys.beats_since(p))
        .arg(GROUP)
        .arg("prune")
        .arg(lease.as_millis() as u64);
    let deleted: i64 = inv.invoke_async(&mut conn).await?;
    if deleted > 0 {
        tracing::info!(
            partition = p,
            deleted,
            "removed consumers that left nothing pending"
        );
    }
    Ok(())
}
