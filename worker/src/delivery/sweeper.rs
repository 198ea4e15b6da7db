//! The resource-timeout sweeper: every worker runs one, calling `Collator::sweep` periodically.
//! The sweep script claims each timed-out resource for exactly one sweeper and dead-letters it on
//! the `webhooks` queue (reason naming the missing seqs) in the same atomic step, so nothing is
//! left for this loop to lose: it only logs and counts, and sweeps again while timed-out
//! resources are left. It never deletes complete resources.

use std::time::Duration;

use pipeline::collate::Collator;
use pipeline::resource::DeliveryJob;
use queue::Queue;
use tokio_util::sync::CancellationToken;

/// Most resources claimed per partition per pass (one script run; passes repeat while more are
/// left).
const SWEEP_LIMIT: usize = 100;

/// Sweeps every `timeout / 4` (between 20 ms and 5 s) until `shutdown`; each sweep repeats its
/// pass while timed-out resources are left, so fresh resource ids arriving faster than one pass
/// claims do not pile up. `_queue` is the webhooks queue the dead letters land on; the collator
/// already writes to it from its script.
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
        sweep_until_clear(&collator, timeout, &shutdown).await;
    }
}

/// Passes until no timed-out resource is left (or a pass fails, or shutdown); returns how many
/// resources this call claimed.
pub async fn sweep_until_clear(
    collator: &Collator,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> usize {
    let mut claimed = 0;
    while !shutdown.is_cancelled() {
        let swept = match collator.sweep_once(timeout, SWEEP_LIMIT).await {
            Ok(swept) => swept,
            Err(e) => {
                tracing::warn!(error = %e, "resource sweep failed; will try again");
                break;
            }
        };
        for t in &swept.timed_out {
            tracing::warn!(
                resource_id = %t.resource_id,
                total = t.total,
                received = t.received.len(),
                missing = t.missing().len(),
                "incomplete resource timed out and dead-lettered"
            );
        }
        if !swept.timed_out.is_empty() {
            metrics::counter!("conveyor_resources_timed_out_total")
                .increment(swept.timed_out.len() as u64);
        }
        claimed += swept.timed_out.len();
        if swept.left == 0 {
            break;
        }
        // Others may sweep the same partitions: a pass that claimed nothing while some are left
        // means they were claimed meanwhile; let the runtime breathe between passes.
        tokio::task::yield_now().await;
    }
    claimed
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::Utc;
    use pipeline::ids::{ProducerName, ResourceId, ResourcePart};
    use pipeline::packet::StoredMessage;
    use queue::QueueConfig;

    use super::*;

    fn first_of_two(id: &str) -> StoredMessage {
        let now = Utc::now();
        StoredMessage {
            producer: ProducerName::parse("p").unwrap(),
            number: 0,
            sent_at: now,
            received_at: now,
            stored_at: now,
            transit_ms: 0.0,
            word_lengths: vec![1],
            text: "a".into(),
            part: ResourcePart::new(ResourceId::parse(id).unwrap(), 0, 2).ok(),
        }
    }

    /// 1,037 incomplete resources over 3 partitions, ten times what one pass claims per
    /// partition: one sweep claims every one of them, each exactly once, and leaves none open.
    #[tokio::test]
    async fn one_sweep_keeps_claiming_until_no_timed_out_resource_is_left() {
        let env = testkit::TestEnv::new("sweep_until_clear").await;
        let mut config = QueueConfig::new(&env.namespace, "webhooks");
        config.partitions = 3;
        let queue: Queue<DeliveryJob> = Queue::new(env.redis.clone(), config);
        let collator = Collator::new(
            env.redis.clone(),
            &env.namespace,
            &queue,
            Duration::from_secs(60),
        );
        let ids: Vec<String> = (0..1037).map(|i| format!("open-{i}")).collect();
        for chunk in ids.chunks(200) {
            let packets: Vec<_> = chunk.iter().map(|id| first_of_two(id)).collect();
            assert_eq!(collator.record(&packets).await.unwrap(), 0);
        }
        let claimed = sweep_until_clear(&collator, Duration::ZERO, &CancellationToken::new()).await;
        assert_eq!(claimed, ids.len());
        // Counted per resource id: every one dead-lettered exactly once.
        let letters = queue.dead_letters(5_000).await.unwrap();
        let mut per_id: HashMap<String, usize> = HashMap::new();
        for l in &letters {
            let id = l.payload["resource_id"].as_str().unwrap().to_string();
            *per_id.entry(id).or_default() += 1;
        }
        assert_eq!(per_id.len(), ids.len());
        assert!(
            per_id.values().all(|n| *n == 1),
            "a resource reported twice"
        );
        let swept = collator.sweep_once(Duration::ZERO, 100).await.unwrap();
        assert_eq!((swept.timed_out.len(), swept.left), (0, 0));
    }
}
