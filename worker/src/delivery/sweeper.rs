//! The resource-timeout sweeper: every worker runs one, calling `Collator::sweep` periodically.
//! The sweep script claims each timed-out resource for exactly one sweeper and dead-letters it on
//! the `webhooks` queue (reason naming the missing seqs) in the same atomic step, so nothing is
//! left for this loop to lose: it only logs and counts. It never deletes complete resources.

use std::time::Duration;

use pipeline::collate::Collator;
use pipeline::resource::DeliveryJob;
use queue::Queue;
use tokio_util::sync::CancellationToken;

/// Most resources claimed per partition per sweep.
const SWEEP_LIMIT: usize = 100;

/// Sweeps every `timeout / 4` (between 20 ms and 5 s) until `shutdown`. `_queue` is the webhooks
/// queue the dead letters land on; the collator already writes to it from its script.
pub async fn run(
    collator: Collator,
    _queue: Queue<DeliveryJob>,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let every = (timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match collator.sweep(timeout, SWEEP_LIMIT).await {
            Ok(claimed) => {
                for t in &claimed {
                    tracing::warn!(
                        resource_id = %t.resource_id,
                        total = t.total,
                        received = t.received.len(),
                        missing = t.missing().len(),
                        "incomplete resource timed out and dead-lettered"
                    );
                }
                if !claimed.is_empty() {
                    metrics::counter!("conveyor_resources_timed_out_total")
                        .increment(claimed.len() as u64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "resource sweep failed; will try again"),
        }
    }
}
