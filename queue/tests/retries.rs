//! Failure handling against the real Redis: retries with growing backoff, dead letters after
//! max attempts with the error history, and poison jobs (delivered too often) dead-lettered.

use crate::support;

use std::time::{Duration, Instant};

use queue::{Handler, Job, Outcome, Worker};
use support::*;
use testkit::{xlen, TestEnv};

#[tokio::test]
async fn a_flaky_job_is_retried_within_growing_jittered_delays_and_succeeds_on_attempt_three() {
    init_tracing();
    let env = TestEnv::new("queue_retry").await;
    let q = queue::<String>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.backoff_base = Duration::from_millis(200);
    });
    let rec = Recorder::<String>::new(Duration::ZERO, |job| {
        if job.attempt < 3 {
            Outcome::Retry {
                error: format!("flaky failure {}", job.attempt),
                after: None,
            }
        } else {
            Outcome::Done(serde_json::Value::Null)
        }
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    let id = q.enqueue(&"flaky".to_string()).await.unwrap();
    let start = Instant::now();
    while rec.finished().len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "only {} attempts",
            rec.finished().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = rec.finished();
    assert!(
        seen.iter().all(|s| s.id == id),
        "one job, same id every attempt"
    );
    assert_eq!(
        seen.iter().map(|s| s.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let gap1 = seen[1].at - seen[0].at;
    let gap2 = seen[2].at - seen[1].at;
    // Full jitter: each delay is drawn below a bound that doubles (200 ms, then 400 ms); the
    // slack covers the promoter's poll and a loaded machine.
    let slack = Duration::from_millis(400);
    assert!(
        gap1 <= Duration::from_millis(200) + slack,
        "first backoff {gap1:?}"
    );
    assert!(
        gap2 <= Duration::from_millis(400) + slack,
        "second backoff {gap2:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rec.finished().len() == 3, "not run again after success");
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backlog, stats.pending, stats.delayed, stats.dead),
        (0, 0, 0, 0)
    );
    stop(token, task).await;
}

#[tokio::test]
async fn a_job_that_always_fails_is_dead_lettered_after_max_attempts_with_its_errors() {
    init_tracing();
    let env = TestEnv::new("queue_deadletter").await;
    let q = queue::<String>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.max_attempts = 3;
        c.backoff_base = Duration::from_millis(20);
    });
    let rec = Recorder::<String>::new(Duration::ZERO, |job| Outcome::Retry {
        error: format!("always fails (attempt {})", job.attempt),
        after: None,
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    let id = q.enqueue(&"doomed".to_string()).await.unwrap();
    let start = Instant::now();
    while q.stats().await.unwrap().dead < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rec.finished().len(), 3, "exactly max_attempts runs");
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.job_id, id);
    assert_eq!(letter.payload, serde_json::json!("doomed"));
    assert_eq!(letter.error, "always fails (attempt 3)");
    assert_eq!(letter.attempts, 3);
    assert_eq!(
        letter.history,
        vec![
            "always fails (attempt 1)",
            "always fails (attempt 2)",
            "always fails (attempt 3)"
        ]
    );
    assert!(letter.dead_at_ms > 0);
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backlog, stats.pending, stats.delayed, stats.dead),
        (0, 0, 0, 1)
    );

    // Outcome::Dead skips retries; dead_letter() files a job directly.
    let rec2 = Recorder::<String>::new(Duration::ZERO, |_| Outcome::Dead {
        reason: "bad input".into(),
    });
    stop(token, task).await;
    let (token, task) = spawn_worker(&q, rec2.clone(), fast_worker("w2"));
    q.enqueue(&"bad".to_string()).await.unwrap();
    rec2.wait_finished(1, Duration::from_secs(5)).await;
    q.dead_letter(&"expired".to_string(), "resource timed out")
        .await
        .unwrap();
    let start = Instant::now();
    while q.stats().await.unwrap().dead < 3 {
        assert!(start.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let errors: Vec<String> = q
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.error)
        .collect();
    assert!(errors.contains(&"bad input".to_string()), "{errors:?}");
    assert!(
        errors.contains(&"resource timed out".to_string()),
        "{errors:?}"
    );
    assert_eq!(rec2.finished().len(), 1, "a dead job is not retried");
    stop(token, task).await;
}

/// Never finishes: stands in for a job that crashes its worker every time.
struct Crash;

impl Handler<String> for Crash {
    async fn handle(&self, _jobs: Vec<Job<String>>) -> Vec<Outcome> {
        std::future::pending::<()>().await;
        Vec::new()
    }
}

#[tokio::test]
async fn a_poison_job_that_keeps_killing_workers_is_dead_lettered() {
    init_tracing();
    let env = TestEnv::new("queue_poison").await;
    // max_attempts 1 → poison after more than 3 deliveries.
    let q = queue::<String>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.max_attempts = 1
    });
    q.enqueue(&"poison".to_string()).await.unwrap();
    let mut cfg = fast_worker("crashy");
    cfg.lease = Duration::from_millis(200);
    cfg.shutdown_deadline = Duration::from_millis(50);
    // Each crashing worker: takes the job, then "dies" (its runtime is dropped) without acking.
    for round in 0..4 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (url, ns) = (env.redis_url.clone(), env.namespace.clone());
        let mut cfg = cfg.clone();
        cfg.consumer = format!("crashy-{round}");
        rt.spawn(async move {
            let pool = testkit::redis_pool(&url);
            let q = queue::<String>(pool, &ns, "jobs", |c| c.max_attempts = 1);
            let _ = Worker::new(q, Crash, cfg)
                .run(queue::CancellationToken::new())
                .await;
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        rt.shutdown_background();
    }
    let rec = Recorder::<String>::ok(Duration::ZERO);
    let mut cfg = fast_worker("healthy");
    cfg.lease = Duration::from_millis(200);
    let (token, task) = spawn_worker(&q, rec.clone(), cfg);
    let start = Instant::now();
    while q.stats().await.unwrap().dead < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "poison job never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rec.finished().is_empty(), "the poison job is not run again");
    let dead = q.dead_letters(1).await.unwrap();
    assert!(
        dead[0].error.starts_with("poison job: delivered"),
        "{}",
        dead[0].error
    );
    stop(token, task).await;
    let stream = stream_key(&env.namespace, "jobs", 0);
    assert_eq!(xlen(&env.redis, &stream).await, 0);
    assert_eq!(pending(&env.redis, &stream).await, 0);
}

#[tokio::test]
async fn a_panicking_handler_does_not_strand_its_batch() {
    init_tracing();
    let env = TestEnv::new("queue_panic").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.backoff_base = Duration::from_millis(20);
    });
    let rec = Recorder::<u32>::new(Duration::ZERO, |job| {
        assert!(job.attempt > 1, "handler blows up on the first attempt");
        Outcome::Done(serde_json::Value::Null)
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    q.enqueue_batch(&[1, 2, 3]).await.unwrap();
    rec.wait_finished(3, Duration::from_secs(5)).await;
    assert!(
        rec.finished().iter().all(|s| s.attempt == 2),
        "each job retried once"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backlog, stats.pending, stats.delayed, stats.dead),
        (0, 0, 0, 0)
    );
    stop(token, task).await;
}

#[tokio::test]
async fn a_retry_with_an_explicit_delay_waits_that_long() {
    init_tracing();
    let env = TestEnv::new("queue_retry_after").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    let rec = Recorder::<u32>::new(Duration::ZERO, |job| {
        if job.attempt == 1 {
            Outcome::Retry {
                error: "not yet".into(),
                after: Some(Duration::from_millis(400)),
            }
        } else {
            Outcome::Done(serde_json::Value::Null)
        }
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    q.enqueue(&1).await.unwrap();
    let start = Instant::now();
    while rec.finished().len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(3), "never retried");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = rec.finished();
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(400), "retried early: {gap:?}");
    assert!(gap <= Duration::from_millis(600), "retried late: {gap:?}");
    assert_eq!(q.stats().await.unwrap().delayed, 0);
    stop(token, task).await;
}
