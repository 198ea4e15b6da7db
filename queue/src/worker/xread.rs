//! The XREADGROUP command of a worker's read, and the read on a Redis Cluster (one per
//! partition, as a cluster refuses one read over streams of several slots).

use std::time::Duration;

use super::shared::Shared;
use crate::keys::GROUP;
use crate::pool::RedisConnection;

/// `XREADGROUP GROUP workers <me> COUNT per [BLOCK ms] STREAMS <streams> > …`.
pub(crate) fn xreadgroup<T, H>(
    shared: &Shared<T, H>,
    streams: &[String],
    per: usize,
    block: Option<Duration>,
) -> redis::Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(GROUP)
        .arg(&shared.config.consumer)
        .arg("COUNT")
        .arg(per);
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
    }
    cmd.arg("STREAMS")
        .arg(streams)
        .arg(vec![">"; streams.len()]);
    cmd
}

/// Longest a cluster read waits on one partition while every partition is empty: a job that
/// lands on another partition meanwhile waits at most this long (single node: no such wait).
pub(crate) const CLUSTER_IDLE_WAIT: Duration = Duration::from_millis(50);

/// The read of [`read_batch`] on a Redis Cluster, where one XREADGROUP cannot name streams of
/// several slots: one non-blocking XREADGROUP per partition, all sent at once on the reader's
/// cluster connection (the same `COUNT` per partition, so still at most `count` in all); when
/// every one came back empty, one blocking read on the first partition of the rotation for at
/// most [`CLUSTER_IDLE_WAIT`], so an idle worker waits without spinning. Replies are merged into
/// one read reply (an array of `[stream, entries]`).
pub(crate) async fn cluster_read<T, H>(
    shared: &Shared<T, H>,
    conn: &mut RedisConnection,
    streams: &[String],
    per: usize,
    block: Duration,
) -> Result<redis::Value, redis::RedisError> {
    let Some(cluster) = conn.fork() else {
        return Err((redis::ErrorKind::Client, "not a cluster connection").into());
    };
    let reads = streams.iter().map(|stream| {
        let cmd = xreadgroup(shared, std::slice::from_ref(stream), per, None);
        let mut c = cluster.clone();
        async move { cmd.query_async::<redis::Value>(&mut c).await }
    });
    let mut merged = Vec::new();
    for reply in futures::future::try_join_all(reads).await? {
        match reply {
            redis::Value::Array(items) => merged.extend(items),
            redis::Value::Map(pairs) => merged.extend(
                pairs
                    .into_iter()
                    .map(|(k, v)| redis::Value::Array(vec![k, v])),
            ),
            _ => {}
        }
    }
    if !merged.is_empty() {
        return Ok(redis::Value::Array(merged));
    }
    let wait = block.min(CLUSTER_IDLE_WAIT);
    match streams.first() {
        Some(first) => {
            xreadgroup(shared, std::slice::from_ref(first), per, Some(wait))
                .query_async(conn)
                .await
        }
        None => Ok(redis::Value::Nil),
    }
}
