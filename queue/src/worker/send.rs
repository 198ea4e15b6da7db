//! Sending a batch's settling pipeline: retried while Redis is unreachable (until the hard
//! stop), retried a few times when Redis answers with an error, then given up on — the batch is
//! released and the alarm `conveyor_settle_failures_total` counts it. A settle that fewer
//! replicas confirmed than the replication wait asks is done on the master and not sent again:
//! it is logged and counted (`conveyor_settle_not_replicated_total`); if a failover then
//! promotes a replica without it, its jobs are delivered again (at least once, as always).

use super::shared::Shared;
use crate::backoff::Backoff;
use crate::fanout::Fanout;

/// Attempts of a settle that Redis answers with an error before the batch is released.
const SETTLE_TRIES: u32 = 5;

/// Sends the settling pipeline (`Fanout` loads the scripts on a node that lacks them). While Redis is
/// unreachable it retries with backoff until the worker's hard stop (every step in it is
/// idempotent: fenced scripts act once). An error Redis answers with (a wrong key type, a
/// moved slot, a reply too large) is retried [`SETTLE_TRIES`] times, then the batch is
/// released: its entries stay pending, untracked, to be run again (this worker's reclaim takes
/// them back after two leases), and the alarm `conveyor_settle_failures_total` counts it.
pub(crate) async fn send<T, H>(shared: &Shared<T, H>, pipe: &Fanout<'_>) {
    let mut backoff = Backoff::default();
    let mut refused = 0u32;
    loop {
        let result = match shared.queue.conn().await {
            Ok(mut conn) => match pipe.query_acked(&mut conn).await {
                Ok((_, acked)) => {
                    let replication = shared.queue.config().replication();
                    if let (Some(r), Some(acked)) = (replication, acked) {
                        if acked < r.replicas {
                            tracing::warn!(queue = shared.queue.name(), acked, wanted = r.replicas,
                                "a settle was not confirmed by enough replicas; a failover now may run its jobs again");
                            metrics::counter!("conveyor_settle_not_replicated_total", "queue" => shared.queue.name().to_string())
                                .increment(1);
                        }
                    }
                    return;
                }
                Err(e) => e,
            },
            Err(e) => {
                redis::RedisError::from((redis::ErrorKind::Io, "no connection", e.to_string()))
            }
        };
        if !crate::error::redis_unavailable(&result) {
            refused += 1;
            if refused >= SETTLE_TRIES {
                tracing::error!(error = %result, queue = shared.queue.name(), tries = refused,
                    "settling a batch keeps failing; releasing it (its jobs stay pending and run again)");
                metrics::counter!("conveyor_settle_failures_total", "queue" => shared.queue.name().to_string())
                    .increment(1);
                return;
            }
        }
        tracing::warn!(error = %result, "settling a batch failed; retrying");
        if !backoff.wait(&shared.hard_stop).await {
            return;
        }
    }
}
