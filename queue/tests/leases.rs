//! Leases and shutdown against the real Redis: a worker that dies holding jobs loses them to a
//! live worker within lease + 2 s; a graceful shutdown finishes and acks what is in flight.

use crate::support;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use testkit::{xlen, TestEnv};

#[tokio::test]
async fn a_dead_workers_jobs_run_on_another_worker_within_lease_plus_two_seconds() {
    init_tracing();
    let env = TestEnv::new("queue_dead_worker").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    q.enqueue_batch(&(0..40).collect::<Vec<_>>()).await.unwrap();

    // The doomed worker runs on a runtime of its own, with its own pool: shutting that runtime
    // down stops every task of it at once, heartbeat included — like a killed process.
    let mut cfg = fast_worker("doomed");
    cfg.batch_size = 100;
    let (doomed_rt, taken) =
        spawn_doomed_worker(&env.redis_url, &env.namespace, "jobs", |_| {}, cfg);
    wait_taken(&taken, 40, Duration::from_secs(5)).await;
    let stream = stream_key(&env.namespace, "jobs", 0);
    // Holding them well past the lease: heartbeats keep the lease alive while it lives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        pending(&env.redis, &stream).await,
        40,
        "a live worker keeps its leases"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backlog, stats.pending, stats.workers),
        (0, 40, 1),
        "{stats:?}"
    );

    let rescuer = Recorder::<u32>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(&q, rescuer.clone(), fast_worker("rescuer"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rescuer.started_count(),
        0,
        "a live worker's jobs are not taken from it"
    );

    doomed_rt.shutdown_background();
    let died = Instant::now();
    rescuer.wait_finished(40, Duration::from_secs(3)).await;
    let took = died.elapsed();
    assert!(took <= Duration::from_secs(3), "reclaimed after {took:?}");
    let payloads: std::collections::HashSet<u32> =
        rescuer.finished().iter().map(|s| s.payload).collect();
    assert_eq!(payloads, (0..40).collect(), "none lost");
    stop(token, task).await;
    assert_eq!(xlen(&env.redis, &stream).await, 0);
    assert_eq!(pending(&env.redis, &stream).await, 0);
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_acks_in_flight_batches() {
    init_tracing();
    let env = TestEnv::new("queue_shutdown").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    q.enqueue_batch(&(0..30).collect::<Vec<_>>()).await.unwrap();
    let rec = Recorder::<u32>::ok(Duration::from_millis(800));
    let mut cfg = fast_worker("w1");
    cfg.batch_size = 10;
    cfg.concurrency = 3;
    let (token, task) = spawn_worker(&q, rec.clone(), cfg);
    let start = Instant::now();
    while rec.started_count() < 30 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "batches never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        rec.finished().is_empty(),
        "still mid-batch when shutdown starts"
    );
    let stopping = Instant::now();
    stop(token, task).await;
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "within the deadline: {took:?}"
    );
    assert_eq!(rec.finished().len(), 30, "every in-flight job finished");
    let stream = stream_key(&env.namespace, "jobs", 0);
    assert_eq!(
        pending(&env.redis, &stream).await,
        0,
        "nothing left pending"
    );
    assert_eq!(xlen(&env.redis, &stream).await, 0, "and everything deleted");
}

#[tokio::test]
async fn shutdown_past_the_deadline_leaves_unfinished_jobs_for_others() {
    init_tracing();
    let env = TestEnv::new("queue_deadline").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    q.enqueue_batch(&[1, 2, 3]).await.unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let mut cfg = fast_worker("slow");
    cfg.shutdown_deadline = Duration::from_millis(300);
    let (token, task) = spawn_worker(&q, Hang(taken.clone()), cfg);
    wait_taken(&taken, 3, Duration::from_secs(5)).await;
    let stopping = Instant::now();
    stop(token, task).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "returned by the deadline"
    );
    let stream = stream_key(&env.namespace, "jobs", 0);
    assert_eq!(
        pending(&env.redis, &stream).await,
        3,
        "unfinished jobs stay pending for reclaim"
    );
    let rescuer = Recorder::<u32>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(&q, rescuer.clone(), fast_worker("rescuer"));
    rescuer.wait_finished(3, Duration::from_secs(4)).await;
    stop(token, task).await;
    assert_eq!(xlen(&env.redis, &stream).await, 0);
}

/// The heartbeat extends only entries held a beat interval (lease/3) or longer — a fresh read
/// has a fresh idle time already. One job that runs for three leases beside an idle second worker:
/// its idle time in the pending list, sampled all along, stays under the lease (so no reclaim
/// may take it), the other worker never starts it, and it runs exactly once.
#[tokio::test]
async fn a_job_running_three_leases_keeps_its_lease_and_runs_once() {
    init_tracing();
    let env = TestEnv::new("queue_long_job").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    let lease = Duration::from_secs(1);
    let slow = Recorder::<u32>::ok(3 * lease);
    let (slow_token, slow_task) = spawn_worker(&q, slow.clone(), fast_worker("slow"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.enqueue(&7).await.unwrap();
    let stream = stream_key(&env.namespace, "jobs", 0);
    let start = Instant::now();
    while slow.started_count() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the job was not read"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = Recorder::<u32>::ok(Duration::ZERO);
    let (other_token, other_task) = spawn_worker(&q, other.clone(), fast_worker("other"));

    let mut max_idle = 0u64;
    let mut samples = 0;
    while slow.finished_ids().is_empty() {
        let mut conn = env.redis.get().await.unwrap();
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("workers")
            .arg("-")
            .arg("+")
            .arg(10)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some((_, _, idle, _)) = rows.first() {
            max_idle = max_idle.max(*idle);
            samples += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the job did not finish"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(samples >= 40, "sampled the pending entry {samples} times");
    assert!(
        max_idle < lease.as_millis() as u64,
        "idle time reached {max_idle} ms: the heartbeat did not extend a long-held entry"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.started_count(), 0, "the live worker's job was taken");
    assert_eq!(slow.started_count(), 1, "started once");
    assert_eq!(slow.finished().len(), 1, "finished once");
    stop(other_token, other_task).await;
    stop(slow_token, slow_task).await;
    assert_eq!(pending(&env.redis, &stream).await, 0);
}
