//! Load for the cluster tests (failover, reshard): producers that enqueue numbered jobs with
//! their number as job id, single enqueues or batches, and retry an error with the same ids
//! after 50 ms as a real producer does; what they saw is kept in [`Sent`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use queue::{EnqueueOptions, Queue, QueueError};

use super::Recorder;

/// Numbers enqueued `Ok` (number, partition, when the call began, when it answered), and
/// the errors seen (by kind).
#[derive(Default)]
pub struct Sent {
    pub ok: Vec<(u64, u16, Instant, Instant)>,
    pub errors: HashMap<&'static str, usize>,
}

pub fn kind(e: &QueueError) -> &'static str {
    match e {
        QueueError::NotReplicated { .. } => "not replicated",
        QueueError::OutcomeUnknown(_) => "outcome unknown",
        e if e.is_unavailable() => "unavailable",
        _ => "other",
    }
}

/// Enqueues `from..` one by one (or `batch` at a time) until `stop`; an error is retried with the
/// same ids after 50 ms.
pub async fn produce(
    q: Queue<u64>,
    sent: Arc<Mutex<Sent>>,
    from: u64,
    batch: u64,
    stop: queue::CancellationToken,
) {
    let mut n = from;
    while !stop.is_cancelled() {
        let numbers: Vec<u64> = (n..n + batch).collect();
        let began = Instant::now();
        let result = if batch == 1 {
            let opts = EnqueueOptions {
                job_id: Some(n.to_string()),
                ..EnqueueOptions::default()
            };
            q.enqueue_with(&n, opts).await.map(|_| ())
        } else {
            let items: Vec<(Option<String>, Option<String>, u64)> = numbers
                .iter()
                .map(|&k| (None, Some(k.to_string()), k))
                .collect();
            q.enqueue_batch_with_ids(&items).await.map(|_| ())
        };
        let at = Instant::now();
        match result {
            Ok(()) => {
                {
                    let mut s = sent.lock().unwrap();
                    for &k in &numbers {
                        s.ok.push((k, q.partition_of(&k.to_string()), began, at));
                    }
                }
                n += batch;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => {
                {
                    *sent.lock().unwrap().errors.entry(kind(&e)).or_insert(0) += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What came of the producers' work: the numbers acknowledged, the errors they retried (by
/// kind), the acknowledged numbers that never ran and those that ran more than once (with
/// their run count). Runs are counted per number.
pub struct Tally {
    pub accepted: Vec<u64>,
    pub errors: HashMap<&'static str, usize>,
    pub lost: Vec<u64>,
    pub twice: Vec<(u64, usize)>,
}

/// Waits (60 s at most) until `rec` finished as many jobs as `sent` acknowledged, then 2 s more
/// for any duplicate run (a re-delivery) to show, and counts.
pub async fn wait_and_tally(sent: &Mutex<Sent>, rec: &Recorder<u64>) -> Tally {
    let (accepted, errors) = {
        let s = sent.lock().unwrap();
        let ok: Vec<u64> = s.ok.iter().map(|(n, ..)| *n).collect();
        (ok, s.errors.clone())
    };
    println!(
        "acknowledged {} enqueues; errors retried: {errors:?}",
        accepted.len()
    );
    rec.wait_finished(accepted.len(), Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut runs: HashMap<u64, usize> = HashMap::new();
    for s in rec.started.lock().unwrap().iter() {
        *runs.entry(s.payload).or_insert(0) += 1;
    }
    let lost = accepted
        .iter()
        .copied()
        .filter(|n| !runs.contains_key(n))
        .collect();
    let mut twice: Vec<(u64, usize)> = runs.into_iter().filter(|(_, r)| *r > 1).collect();
    twice.sort_unstable();
    Tally {
        accepted,
        errors,
        lost,
        twice,
    }
}
