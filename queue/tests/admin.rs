//! Queue admin against the real Redis: dead letters listed with their error and attempts,
//! retried (each retried letter runs exactly once more, counted per job id) or deleted; a
//! delayed job promoted; the queue's states, pending jobs and workers as an operator sees them.

use crate::support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use queue::{JobId, Outcome, QueueError};
use support::*;
use testkit::TestEnv;

/// Runs per job id among what `rec` finished.
fn runs(rec: &Recorder<u32>) -> HashMap<JobId, usize> {
    let mut out = HashMap::new();
    for s in rec.finished() {
        *out.entry(s.id).or_insert(0) += 1;
    }
    out
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_retried_dead_letter_runs_exactly_once_more_and_retry_all_takes_the_rest() {
    init_tracing();
    let env = TestEnv::new("admin_retry").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.partitions = 2;
        c.max_attempts = 2;
        c.backoff_base = Duration::from_millis(10);
    });
    let failing = Arc::new(AtomicBool::new(true));
    let fail = failing.clone();
    let rec = Recorder::<u32>::new(Duration::ZERO, move |job| {
        if fail.load(Ordering::SeqCst) {
            Outcome::Retry {
                error: format!("boom {}", job.payload),
                after: None,
            }
        } else {
            Outcome::Done(serde_json::Value::Null)
        }
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    let ids = q.enqueue_batch(&[1, 2, 3, 4]).await.unwrap();
    wait_until("four dead letters", Duration::from_secs(10), async || {
        q.stats().await.unwrap().dead == 4
    })
    .await;
    assert_eq!(rec.finished().len(), 8, "two attempts each");

    let dead = q.dead_entries(10).await.unwrap();
    assert_eq!(dead.len(), 4);
    for d in &dead {
        assert!(ids.contains(&d.letter.job_id));
        assert_eq!(d.letter.attempts, 2);
        assert_eq!(d.letter.error, format!("boom {}", d.letter.payload));
        assert_eq!(d.letter.history.len(), 2, "{:?}", d.letter.history);
        assert!(d.partition < 2);
    }
    let states = q.partition_states().await.unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(states.iter().map(|s| s.dead).sum::<u64>(), 4);

    // Retry one, found by its job id: it runs once more and succeeds; the others stay dead.
    failing.store(false, Ordering::SeqCst);
    let first = &ids[0];
    let found = q.find_dead(&first.0).await.unwrap();
    assert_eq!(found.len(), 1);
    q.retry_dead(found[0].partition, &found[0].entry_id)
        .await
        .unwrap();
    rec.wait_finished(4, Duration::from_secs(5)).await;
    wait_until(
        "the retried job settled",
        Duration::from_secs(5),
        async || {
            let s = q.stats().await.unwrap();
            s.backlog + s.pending == 0
        },
    )
    .await;
    assert_eq!(
        runs(&rec)[first],
        3,
        "two failed attempts + one retried run"
    );
    assert_eq!(q.stats().await.unwrap().dead, 3);
    // Retrying the same letter again is refused: it is gone from the dead letters.
    let again = q.retry_dead(found[0].partition, &found[0].entry_id).await;
    assert!(matches!(again, Err(QueueError::Refused(_))), "{again:?}");
    let typo = q.retry_dead(0, "not-an-id").await;
    assert!(matches!(typo, Err(QueueError::Refused(_))), "{typo:?}");

    // Retry all: each remaining letter runs exactly once more.
    assert_eq!(q.retry_all_dead().await.unwrap(), 3);
    wait_until(
        "every retried job settled",
        Duration::from_secs(5),
        async || {
            let s = q.stats().await.unwrap();
            s.backlog + s.pending + s.delayed + s.dead == 0 && rec.finished().len() == 12
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counted = runs(&rec);
    assert_eq!(counted.len(), 4);
    for id in &ids {
        assert_eq!(
            counted[id], 3,
            "job {id}: 2 failed attempts + 1 retried run"
        );
    }
    assert_eq!(q.retry_all_dead().await.unwrap(), 0);
    stop(token, task).await;
}

#[tokio::test]
async fn dead_letters_are_deleted_one_or_all_and_a_delayed_job_is_promoted() {
    init_tracing();
    let env = TestEnv::new("admin_delete").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.partitions = 3
    });
    for n in 0..5 {
        q.dead_letter(&n, "given up").await.unwrap();
    }
    let dead = q.dead_entries(2).await.unwrap();
    assert_eq!(dead.len(), 2, "the limit is kept");
    q.delete_dead(dead[0].partition, &dead[0].entry_id)
        .await
        .unwrap();
    assert_eq!(q.stats().await.unwrap().dead, 4);
    assert!(q
        .find_dead(&dead[0].letter.job_id.0)
        .await
        .unwrap()
        .is_empty());
    let gone = q.delete_dead(dead[0].partition, &dead[0].entry_id).await;
    assert!(matches!(gone, Err(QueueError::Refused(_))), "{gone:?}");
    assert_eq!(q.delete_all_dead().await.unwrap(), 4);
    assert_eq!(q.stats().await.unwrap().dead, 0);

    // A job delayed by an hour, listed with its due time, then run now.
    let id = q.enqueue_in(&7, Duration::from_secs(3600)).await.unwrap();
    let delayed = q.delayed_jobs(10).await.unwrap();
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].job_id, id.0);
    assert_eq!(delayed[0].payload, serde_json::json!(7));
    let states = q.partition_states().await.unwrap();
    let due = states.iter().find_map(|s| s.next_due_in_ms).unwrap();
    assert!((3_590_000..=3_600_000).contains(&due), "{due}");
    let rec = Recorder::<u32>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    q.promote(&id.0).await.unwrap();
    rec.wait_finished(1, Duration::from_secs(5)).await;
    assert_eq!(runs(&rec)[&id], 1);
    let twice = q.promote(&id.0).await;
    assert!(matches!(twice, Err(QueueError::Refused(_))), "{twice:?}");
    let unknown = q.promote("no-such-*-job").await;
    assert!(
        matches!(unknown, Err(QueueError::Refused(_))),
        "{unknown:?}"
    );
    stop(token, task).await;
}

#[tokio::test]
async fn queues_states_pending_jobs_and_workers_as_an_operator_sees_them() {
    init_tracing();
    let env = TestEnv::new("admin_view").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "slow", |c| {
        c.partitions = 2
    });
    let other = queue::<u32>(env.redis.clone(), &env.namespace, "other", |_| {});
    other.enqueue(&1).await.unwrap();
    let rec = Recorder::<u32>::ok(Duration::from_millis(1500));
    let mut config = fast_worker("w-slow");
    config.batch_size = 10;
    let (token, task) = spawn_worker(&q, rec.clone(), config);
    let ids = q.enqueue_batch(&[1, 2, 3]).await.unwrap();
    wait_until("three jobs started", Duration::from_secs(5), async || {
        rec.started_count() == 3
    })
    .await;

    let queues = queue::admin::list_queues(&env.redis.clone().into(), &env.namespace)
        .await
        .unwrap();
    let names: Vec<(&str, u16)> = queues
        .iter()
        .map(|q| (q.name.as_str(), q.partitions))
        .collect();
    assert_eq!(names, [("other", 1), ("slow", 2)]);
    let opened = queue::admin::open(env.redis.clone().into(), &env.namespace, "slow")
        .await
        .unwrap();
    assert_eq!(
        opened.keys().partitions(),
        2,
        "partition count read from Redis"
    );

    let pending = opened.pending_jobs(10).await.unwrap();
    assert_eq!(pending.len(), 3);
    for p in &pending {
        assert_eq!(p.consumer, "w-slow");
        assert_eq!(p.deliveries, 1);
        assert!(p.idle_ms < 1500, "{p:?}");
        assert!(ids.iter().any(|id| Some(&id.0) == p.job_id.as_ref()));
    }
    let workers = opened.workers().await.unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].name, "w-slow");
    assert!(workers[0].live);
    assert_eq!(workers[0].in_flight, 3);

    let states = opened.partition_states().await.unwrap();
    let stats = opened.stats().await.unwrap();
    assert_eq!(states.iter().map(|s| s.pending).sum::<u64>(), stats.pending);
    assert_eq!(stats.pending, 3);
    let age = opened.oldest_job_age_ms().await.unwrap().unwrap();
    assert!(age < 5000, "{age}");
    assert!(other.oldest_job_age_ms().await.unwrap().is_some());

    rec.wait_finished(3, Duration::from_secs(5)).await;
    wait_until("nothing held", Duration::from_secs(5), async || {
        opened.workers().await.unwrap()[0].in_flight == 0
    })
    .await;
    assert_eq!(opened.oldest_job_age_ms().await.unwrap(), None);
    stop(token, task).await;
    let after = opened.workers().await.unwrap();
    assert!(after.is_empty(), "a worker that left is gone: {after:?}");
}
