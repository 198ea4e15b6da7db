//! The resource-timeout sweeper: every worker runs one; `Collator::sweep` claims each timed-out
//! resource for exactly one of them, which dead-letters it on the `webhooks` queue with a reason
//! naming the missing seqs. It never deletes resources that are complete.

use std::time::Duration;

use pipeline::collate::{Collator, TimedOut};
use pipeline::resource::DeliveryJob;
use queue::Queue;
use tokio_util::sync::CancellationToken;

/// Most resources claimed per partition per sweep.
const SWEEP_LIMIT: usize = 100;
/// Most missing seqs spelled out in a reason.
const LISTED: usize = 50;

/// The dead-letter reason of a timed-out resource.
pub fn reason(t: &TimedOut, timeout: Duration) -> String {
    let missing = t.missing();
    let mut listed: Vec<String> = missing.iter().take(LISTED).map(u32::to_string).collect();
    if missing.len() > LISTED {
        listed.push(format!("… ({} more)", missing.len() - LISTED));
    }
    format!(
        "resource {} timed out after {} ms: received {} of {} packets; missing seqs [{}]",
        t.resource_id,
        timeout.as_millis(),
        t.received.len(),
        t.total,
        listed.join(", ")
    )
}

pub async fn run(
    collator: Collator,
    queue: Queue<DeliveryJob>,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let every = (timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let claimed = match collator.sweep(timeout, SWEEP_LIMIT).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "resource sweep failed; will try again");
                continue;
            }
        };
        for t in claimed {
            report(&queue, &t, timeout, &shutdown).await;
        }
    }
}

/// Dead-letters one claimed resource, retrying while Redis is unreachable.
async fn report(
    queue: &Queue<DeliveryJob>,
    t: &TimedOut,
    timeout: Duration,
    shutdown: &CancellationToken,
) {
    let why = reason(t, timeout);
    let job = DeliveryJob {
        resource_id: t.resource_id.clone(),
    };
    let mut pause = Duration::from_millis(100);
    for _ in 0..20 {
        match queue.dead_letter(&job, &why).await {
            Ok(_) => {
                metrics::counter!("conveyor_resources_timed_out_total").increment(1);
                tracing::warn!(resource_id = %t.resource_id, missing = t.missing().len(), "incomplete resource dead-lettered");
                return;
            }
            Err(e) => {
                tracing::warn!(resource_id = %t.resource_id, error = %e, "dead-lettering a timed-out resource failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
    // Not silently kept: the reason goes to the log when the dead-letter stream cannot take it.
    tracing::error!(resource_id = %t.resource_id, reason = %why, "timed-out resource could not be dead-lettered");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_lists_the_missing_seqs() {
        let t = TimedOut {
            resource_id: "r".into(),
            total: 5,
            first_seen_ms: 0,
            received: vec![0, 3],
        };
        assert_eq!(
            reason(&t, Duration::from_millis(60_000)),
            "resource r timed out after 60000 ms: received 2 of 5 packets; missing seqs [1, 2, 4]"
        );
        let many = TimedOut {
            resource_id: "m".into(),
            total: 200,
            first_seen_ms: 0,
            received: vec![],
        };
        assert!(reason(&many, Duration::from_secs(1)).ends_with("49, … (150 more)]"));
    }
}
