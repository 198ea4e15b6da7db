//! Getting entries: consumer-group creation, the XREADGROUP read loop over all partitions (with
//! batch linger, bounded concurrency and the byte budget), and turning replies into [`Delivered`] entries.
//! Settling entries is `batch`'s job; reclaiming is `background`'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::batch;
use super::shared::{in_flight, Delivered, Handler, Held, Shared};
use super::xread::{cluster_read, xreadgroup};
use crate::backoff::Backoff;
use crate::error::QueueError;
use crate::keys::GROUP;
use crate::pool::RedisConnection;

/// Creates the `workers` group on every partition stream (MKSTREAM; an existing group is fine).
pub(crate) async fn ensure_groups<T, H>(shared: &Shared<T, H>) -> Result<(), QueueError> {
    let keys = shared.queue.keys();
    let mut conn = shared.queue.conn().await?;
    for p in 0..keys.partitions() {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys.stream(p))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads and dispatches batches until `shutdown`. Never returns early on Redis errors.
pub(crate) async fn read_loop<T, H>(shared: &Arc<Shared<T, H>>, shutdown: &CancellationToken)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    let mut backoff = Backoff::default();
    let mut groups_ready = false;
    let mut reader: Option<RedisConnection> = None;
    let mut paused = PauseCheck::default();
    loop {
        if !groups_ready {
            match ensure_groups(shared).await {
                Ok(()) => groups_ready = true,
                Err(e)
                    if pause(&mut backoff, shutdown, "cannot create consumer groups", &e).await =>
                {
                    continue
                }
                Err(_) => return,
            }
        }
        if paused.paused(shared).await {
            // Paused by an operator: read nothing new; in-flight batches finish on their own.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(paused.every(shared)) => continue,
            }
        }
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = shared.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let conn = match reader.as_mut() {
            Some(c) => c,
            None => match reader_connection(shared).await {
                Ok(c) => reader.insert(c),
                Err(e) if pause(&mut backoff, shutdown, "redis unavailable", &e).await => continue,
                Err(_) => return,
            },
        };
        let reservation = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = shared.budget.reserve(shared.config.batch_size) => r,
        };
        let count = reservation.count;
        let read = tokio::select! {
            // Dropping the reader closes its socket, so a pending blocked read delivers nothing.
            _ = shutdown.cancelled() => return,
            r = read_batch(shared, conn, count, shared.config.block) => r,
        };
        match read {
            Ok(mut entries) => {
                backoff.reset();
                if entries.is_empty() {
                    continue;
                }
                linger(shared, conn, &mut entries, count).await;
                let held = tokio::select! {
                    // Not run here: pending, they go to other workers once this one has left.
                    _ = shutdown.cancelled() => {
                        shared.track(&in_flight(&entries), false);
                        return;
                    }
                    held = shared.hold(permit, reservation, &entries) => held,
                };
                dispatch(shared, entries, held);
            }
            Err(e) => {
                reader = None;
                if e.code() == Some("NOGROUP") {
                    tracing::warn!("consumer group missing (Redis lost its data?); recreating");
                    groups_ready = false;
                    continue;
                }
                tracing::warn!(error = %e, "reading from redis failed; reconnecting");
                if !backoff.wait(shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Whether the queue is paused (its `paused` key exists), asked at most every
/// [`PauseCheck::every`] (a fifth of the block time, at most 50 ms: at most 20 `EXISTS` a
/// second per worker), so a pause stops reading within one block time plus that. Redis
/// unreachable counts as not paused: the read that follows finds out and backs off.
#[derive(Default)]
struct PauseCheck {
    asked: Option<Instant>,
    paused: bool,
}

impl PauseCheck {
    fn every<T, H>(&self, shared: &Shared<T, H>) -> Duration {
        (shared.config.block / 5).clamp(Duration::from_millis(1), Duration::from_millis(50))
    }

    async fn paused<T, H>(&mut self, shared: &Shared<T, H>) -> bool {
        if self
            .asked
            .is_some_and(|at| at.elapsed() < self.every(shared))
        {
            return self.paused;
        }
        self.asked = Some(Instant::now());
        let key = shared.queue.keys().paused();
        let asked = async {
            let mut conn = shared.queue.conn().await?;
            let n: u64 = redis::cmd("EXISTS").arg(key).query_async(&mut conn).await?;
            Ok::<bool, QueueError>(n > 0)
        };
        let now = asked.await.unwrap_or(false);
        if now != self.paused {
            tracing::info!(
                queue = shared.queue.name(),
                paused = now,
                "queue pause changed"
            );
        }
        self.paused = now;
        now
    }
}

/// Logs `what` failed and waits out the backoff; false when the worker is shutting down.
async fn pause(
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
    what: &str,
    error: &QueueError,
) -> bool {
    tracing::warn!(%error, "{what}; retrying");
    backoff.wait(shutdown).await
}

/// A connection of its own for blocking reads (taken out of the pool so BLOCK never delays
/// other commands), with a response timeout longer than the block time.
async fn reader_connection<T, H>(shared: &Shared<T, H>) -> Result<RedisConnection, QueueError> {
    let timeout = shared.config.block + Duration::from_secs(5);
    Ok(shared.queue.pool().dedicated(timeout).await?)
}

/// After a partial batch, keeps reading for up to `batch_linger` to fill it to `count`.
async fn linger<T, H>(
    shared: &Shared<T, H>,
    conn: &mut RedisConnection,
    entries: &mut Vec<Delivered>,
    count: usize,
) {
    let linger = shared.config.batch_linger;
    let until = Instant::now() + linger;
    while entries.len() < count {
        let left = until.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            break;
        }
        let want = count - entries.len();
        match read_batch(shared, conn, want, left).await {
            Ok(more) if !more.is_empty() => entries.extend(more),
            _ => break,
        }
    }
}

/// Spawns the batch task for what was read (at most `batch_size` entries, already tracked as
/// in flight by [`read_batch`]).
fn dispatch<T, H>(shared: &Arc<Shared<T, H>>, entries: Vec<Delivered>, held: Held)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    let task_shared = shared.clone();
    shared
        .tracker
        .spawn(async move { batch::process(task_shared, entries, held).await });
}

/// `XREADGROUP GROUP workers <me> COUNT c BLOCK ms STREAMS <k partitions> > …`, sized so one
/// read never returns more than `count` entries: `COUNT` applies per stream, so a read names
/// `k = min(partitions, count)` partitions (rotating, so every partition gets its turn) with
/// `COUNT count / k`. What it returns is tracked as in flight at once — its leases are
/// extended by the heartbeat from the moment of the read, so neither another worker nor this
/// one's reclaimer takes it while it waits to run.
pub(crate) async fn read_batch<T, H>(
    shared: &Shared<T, H>,
    conn: &mut RedisConnection,
    count: usize,
    block: Duration,
) -> Result<Vec<Delivered>, redis::RedisError> {
    let keys = shared.queue.keys();
    let partitions = usize::from(keys.partitions());
    let k = partitions.min(count.max(1));
    let first = shared.next_read_partition(partitions);
    let streams: Vec<String> = (0..k)
        .map(|i| keys.stream(((first + i) % partitions) as u16))
        .collect();
    let per = (count / k).max(1);
    let reply = match conn.is_cluster() {
        false => {
            xreadgroup(shared, &streams, per, Some(block))
                .query_async(conn)
                .await?
        }
        true => cluster_read(shared, conn, &streams, per, block).await?,
    };
    let all: Vec<String> = (0..keys.partitions()).map(|p| keys.stream(p)).collect();
    let entries = decode_read_reply(reply, &all);
    shared.track(&in_flight(&entries), true);
    Ok(entries)
}

/// Turns an XREADGROUP reply into [`Delivered`] entries by taking the reply apart in place
/// (RESP2 arrays or a RESP3 map), so no field value is copied on the way; this was a
/// noticeable part of a worker's CPU with redis-rs's generic `StreamReadReply` conversion.
/// Streams not in `streams` and shapes that are not a read reply are skipped with a warning (a
/// skipped entry stays pending and is reclaimed after its lease); an entry without fields
/// (deleted meanwhile) yields an empty map, which the batch dead-letters as malformed.
fn decode_read_reply(reply: redis::Value, streams: &[String]) -> Vec<Delivered> {
    use redis::Value;
    let per_stream: Vec<(Value, Value)> = match reply {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    let mut pair = pair.into_iter();
                    Some((pair.next()?, pair.next()?))
                }
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs,
        Value::Nil => Vec::new(),
        other => {
            tracing::warn!(reply = ?other, "XREADGROUP answered something that is not a read reply");
            Vec::new()
        }
    };
    let mut out = Vec::new();
    for (key, entries) in per_stream {
        let Some(key) = text(key) else { continue };
        let Some(p) = streams.iter().position(|s| *s == key) else {
            continue;
        };
        let Value::Array(entries) = entries else {
            continue;
        };
        out.reserve(entries.len());
        for entry in entries {
            let Value::Array(parts) = entry else {
                tracing::warn!(stream = %key, entry = ?entry, "skipping an unreadable stream entry");
                continue;
            };
            let mut parts = parts.into_iter();
            let Some(entry_id) = parts.next().and_then(text) else {
                tracing::warn!(stream = %key, "skipping a stream entry without an id");
                continue;
            };
            let mut map = HashMap::new();
            if let Some(Value::Array(fields)) = parts.next() {
                map.reserve(fields.len() / 2);
                let mut fields = fields.into_iter();
                while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                    if let Some(name) = text(name) {
                        map.insert(name, value);
                    }
                }
            }
            out.push(Delivered {
                partition: p as u16,
                entry_id,
                map,
                deliveries: 1,
            });
        }
    }
    out
}

/// A bulk or simple string reply as an owned `String` (no copy when it is valid UTF-8).
fn text(value: redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        redis::Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let fields = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        Value::Array(vec![bulk(id), Value::Array(fields)])
    }

    fn streams() -> Vec<String> {
        vec!["ns:q:{0}".to_string(), "ns:q:{1}".to_string()]
    }

    #[test]
    fn a_resp2_reply_is_taken_apart_per_partition() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("ns:q:{1}"),
                Value::Array(vec![
                    entry("1-0", &[("id", "a"), ("payload", "{}")]),
                    entry("1-1", &[("id", "b")]),
                ]),
            ]),
            Value::Array(vec![bulk("other"), Value::Array(vec![entry("9-9", &[])])]),
        ]);
        let got = decode_read_reply(reply, &streams());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].partition, 1);
        assert_eq!(got[0].entry_id, "1-0");
        assert_eq!(got[0].map.get("payload"), Some(&bulk("{}")));
        assert_eq!(got[1].entry_id, "1-1");
        assert_eq!(got[1].map.len(), 1);
    }

    #[test]
    fn a_resp3_map_nil_and_deleted_entries() {
        let reply = Value::Map(vec![(
            bulk("ns:q:{0}"),
            Value::Array(vec![Value::Array(vec![bulk("2-0"), Value::Nil])]),
        )]);
        let got = decode_read_reply(reply, &streams());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].partition, 0);
        assert!(got[0].map.is_empty());
        assert!(decode_read_reply(Value::Nil, &streams()).is_empty());
        assert!(decode_read_reply(Value::Int(3), &streams()).is_empty());
    }
}
