//! Issue 15's findings, one test each, against real Redis (the shared one, or a private
//! `redis-server` where a test pauses it). Every test counts handler runs per job id — a job
//! that ran twice fails it, however the finished sets compare.

use crate::support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use queue::{EnqueueOptions, Handler, Job, JobId, Outcome, Queue, QueueConfig, Worker};
use support::*;
use testkit::{xlen, RedisServer, TestEnv};
use tokio::sync::Notify;

/// Runs per job id over every recorder given.
fn runs_per_id(recorders: &[&Recorder<u32>]) -> HashMap<JobId, usize> {
    let mut runs = HashMap::new();
    for rec in recorders {
        for seen in rec.started.lock().unwrap().iter() {
            *runs.entry(seen.id.clone()).or_insert(0) += 1;
        }
    }
    runs
}

async fn admin(pool: &Pool) -> deadpool_redis::Connection {
    pool.get().await.unwrap()
}

async fn zcard(pool: &Pool, key: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(&mut admin(pool).await)
        .await
        .unwrap()
}

/// Owner consumer of every pending entry of `stream`.
async fn owners(pool: &Pool, stream: &str) -> Vec<String> {
    let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(stream)
        .arg(queue::GROUP)
        .arg("-")
        .arg("+")
        .arg(100)
        .query_async(&mut admin(pool).await)
        .await
        .unwrap();
    reply.ids.into_iter().map(|p| p.consumer).collect()
}

/// Answers by payload (1 → Retry, 2 → Dead, else Done), but only once `go` is notified.
struct Gated {
    started: Arc<AtomicUsize>,
    go: Arc<Notify>,
}

impl Handler<u32> for Gated {
    async fn handle(&self, jobs: Vec<Job<u32>>) -> Vec<Outcome> {
        self.started.fetch_add(jobs.len(), Ordering::SeqCst);
        self.go.notified().await;
        jobs.iter()
            .map(|j| match j.payload {
                1 => Outcome::Retry {
                    error: "late".into(),
                    after: None,
                },
                2 => Outcome::Dead {
                    reason: "late".into(),
                },
                _ => Outcome::Done(serde_json::Value::Null),
            })
            .collect()
    }
}

/// Finding 1: a worker whose entries were taken over (reclaimed by another consumer) settles
/// nothing when it finally finishes: no third copy from a Retry, no dead letter beside the new
/// owner's run, no ack of the new owner's entry.
#[tokio::test]
async fn a_worker_that_lost_its_entries_settles_none_of_them() {
    init_tracing();
    let env = TestEnv::new("fence_settle").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    q.enqueue_batch(&[1, 2, 3]).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(Notify::new());
    let handler = Gated {
        started: started.clone(),
        go: go.clone(),
    };
    let (token, task) = spawn_worker(&q, handler, fast_worker("first"));
    wait_taken(&started, 3, Duration::from_secs(5)).await;
    let stream = stream_key(&env.namespace, "jobs", 0);
    // Another consumer takes the entries over, as a reclaim does after a lost heartbeat.
    let ids: Vec<String> = {
        let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(queue::GROUP)
            .arg("-")
            .arg("+")
            .arg(10)
            .query_async(&mut admin(&env.redis).await)
            .await
            .unwrap();
        reply.ids.into_iter().map(|p| p.id).collect()
    };
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&stream)
        .arg(queue::GROUP)
        .arg("thief")
        .arg(0)
        .arg(&ids)
        .query_async(&mut admin(&env.redis).await)
        .await
        .unwrap();
    go.notify_one();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop(token, task).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        3,
        "no job ran a second time here"
    );
    let delayed = format!("{stream}:delayed");
    let dead = format!("{stream}:dead");
    assert_eq!(
        zcard(&env.redis, &delayed).await,
        0,
        "no third copy scheduled"
    );
    assert_eq!(
        xlen(&env.redis, &dead).await,
        0,
        "not dead-lettered beside the new owner's run"
    );
    assert_eq!(
        owners(&env.redis, &stream).await,
        vec!["thief"; 3],
        "the new owner's entries stay pending for it"
    );
}

/// Runs per id of a worker on a runtime of its own whose handler blocks that runtime's only
/// thread for `block` (its heartbeat cannot run meanwhile).
fn spawn_blocking_worker(
    url: &str,
    ns: &str,
    block: Duration,
) -> (tokio::runtime::Runtime, Arc<Mutex<HashMap<JobId, usize>>>) {
    struct Blocks(Duration, Arc<Mutex<HashMap<JobId, usize>>>);
    impl Handler<u32> for Blocks {
        async fn handle(&self, jobs: Vec<Job<u32>>) -> Vec<Outcome> {
            for j in &jobs {
                *self.1.lock().unwrap().entry(j.id.clone()).or_insert(0) += 1;
            }
            std::thread::sleep(self.0);
            jobs.iter()
                .map(|_| Outcome::Done(serde_json::Value::Null))
                .collect()
        }
    }
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, ns, counter) = (url.to_string(), ns.to_string(), runs.clone());
    rt.spawn(async move {
        let q = queue::<u32>(testkit::redis_pool(&url), &ns, "jobs", |_| {});
        let _ = Worker::new(q, Blocks(block, counter), fast_worker("a"))
            .run(queue::CancellationToken::new())
            .await;
    });
    (rt, runs)
}

/// Finding 1 (reclaim): Redis paused for twice the lease while a live worker runs its jobs
/// (its runtime busy a little past the pause, so its first heartbeat after the pause comes a
/// moment after the other worker's); the other worker must not run them too.
#[tokio::test]
async fn a_paused_redis_does_not_hand_a_live_workers_jobs_to_another() {
    init_tracing();
    let redis = RedisServer::start().await;
    let pool = redis.pool();
    let ns = testkit::unique_name("fencepause");
    let q = queue::<u32>(pool.clone(), &ns, "jobs", |_| {});
    let (rt, a_runs) = spawn_blocking_worker(&redis.url(), &ns, Duration::from_millis(2600));
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.enqueue_batch(&(0..5).collect::<Vec<_>>()).await.unwrap();
    let start = Instant::now();
    while a_runs.lock().unwrap().len() < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a never took the jobs"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let b = Recorder::<u32>::ok(Duration::ZERO);
    let (tb, wb) = spawn_worker(&q, b.clone(), fast_worker("b"));
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("ALL")
        .query_async(&mut admin(&pool).await)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5000)).await;
    rt.shutdown_background();
    stop(tb, wb).await;
    let mut runs = runs_per_id(&[&b]);
    for (id, n) in a_runs.lock().unwrap().iter() {
        *runs.entry(id.clone()).or_insert(0) += n;
    }
    assert_eq!(runs.len(), 5, "{runs:?}");
    assert!(
        runs.values().all(|n| *n == 1),
        "every job ran once: {} ran on the other worker; {runs:?}",
        b.started_count()
    );
}

/// Batch sizes a handler saw, and runs per id.
#[derive(Clone, Default)]
struct Sizes(Arc<Mutex<Vec<usize>>>, Recorder<u32>);

impl Handler<u32> for Sizes {
    async fn handle(&self, jobs: Vec<Job<u32>>) -> Vec<Outcome> {
        self.0.lock().unwrap().push(jobs.len());
        self.1.handle(jobs).await
    }
}

impl Default for Recorder<u32> {
    fn default() -> Self {
        Recorder::ok(Duration::from_millis(1500))
    }
}

/// Finding 2 (and 8): four partitions, concurrency 1, handlers slower than the lease. One read
/// must not take more than a batch, and what was read but waits for a slot must keep its lease:
/// every job runs exactly once, in batches of at most `batch_size`.
#[tokio::test]
async fn four_partitions_slow_handlers_and_concurrency_one_run_every_job_once() {
    init_tracing();
    let env = TestEnv::new("fence_parts").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.partitions = 4
    });
    q.enqueue_batch(&(0..40).collect::<Vec<_>>()).await.unwrap();
    let sizes = Sizes::default();
    let mut cfg = fast_worker("one");
    cfg.batch_size = 10;
    cfg.concurrency = 1;
    let (token, task) = spawn_worker(&q, sizes.clone(), cfg);
    // An idle second worker, ready to reclaim whatever looks abandoned.
    let other = Recorder::<u32>::ok(Duration::ZERO);
    let (t2, w2) = spawn_worker(&q, other.clone(), fast_worker("other"));
    let start = Instant::now();
    while sizes.1.finished_ids().union(&other.finished_ids()).count() < 40 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not all jobs ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stop(token, task).await;
    stop(t2, w2).await;
    let runs = runs_per_id(&[&sizes.1, &other]);
    let max = runs.values().max().copied().unwrap_or(0);
    assert_eq!((runs.len(), max), (40, 1), "runs per id: {runs:?}");
    let seen = sizes.0.lock().unwrap().clone();
    assert!(seen.iter().all(|n| *n <= 10), "batch sizes {seen:?}");
}

/// Finding 3: an XADD whose answer does not come in time may still run. The error says
/// "outcome unknown" (not "unavailable"), and retrying with the same job id enqueues it once.
#[tokio::test]
async fn a_timed_out_enqueue_is_outcome_unknown_and_a_retry_with_its_id_enqueues_once() {
    init_tracing();
    let redis = RedisServer::start().await;
    let pool = redis.pool();
    let ns = testkit::unique_name("fenceunknown");
    let q = queue::<u32>(pool.clone(), &ns, "jobs", |_| {});
    q.enqueue(&0).await.unwrap(); // a warm connection
    let opts = || EnqueueOptions {
        job_id: Some("producer-a:7".into()),
        ..EnqueueOptions::default()
    };
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("WRITE")
        .query_async(&mut admin(&pool).await)
        .await
        .unwrap();
    let first = q.enqueue_with(&7, opts()).await;
    let err = first.expect_err("the answer came too late");
    assert!(!err.is_unavailable(), "not 'unavailable': {err}");
    assert!(err.is_outcome_unknown(), "outcome unknown: {err}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let again = q.enqueue_with(&7, opts()).await.unwrap();
    assert_eq!(again.0, "producer-a:7");
    let stream = stream_key(&ns, "jobs", q.partition_of("producer-a:7"));
    let mut total = 0;
    for p in 0..1 {
        total += xlen(&pool, &stream_key(&ns, "jobs", p)).await;
    }
    assert_eq!(total, 2, "the warm-up job and ONE copy of job 7 ({stream})");
    // The batch path deduplicates too.
    let ids = q
        .enqueue_batch_with_ids(&[(None, Some("producer-a:7".to_string()), 7)])
        .await
        .unwrap();
    assert_eq!(ids[0].0, "producer-a:7");
    assert_eq!(
        xlen(&pool, &stream).await,
        2,
        "the batch path added no copy"
    );
}

/// Finding 4: a waiter cancelled while its queue's channel is being subscribed must not leave
/// the channel "wanted but never ready": the next wait on that queue gets its result.
#[tokio::test]
async fn a_waiter_cancelled_during_subscribe_does_not_break_later_waits() {
    init_tracing();
    let redis = RedisServer::start().await;
    let pool = redis.pool();
    let ns = testkit::unique_name("fencewait");
    let q1 = queue::<u32>(pool.clone(), &ns, "one", |_| {}).with_redis_connection(
        redis::IntoConnectionInfo::into_connection_info(redis.url()).unwrap(),
    );
    let q2 = queue::<u32>(pool.clone(), &ns, "two", |_| {}).with_redis_connection(
        redis::IntoConnectionInfo::into_connection_info(redis.url()).unwrap(),
    );
    let (t1, w1) = spawn_worker(&q1, Recorder::<u32>::ok(Duration::ZERO), fast_worker("w1"));
    let (t2, w2) = spawn_worker(&q2, Recorder::<u32>::ok(Duration::ZERO), fast_worker("w2"));
    // The process's result subscriber is connected (through queue one).
    let _: serde_json::Value = q1
        .enqueue_and_wait(&1, Duration::from_secs(5))
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(800)
        .arg("ALL")
        .query_async(&mut admin(&pool).await)
        .await
        .unwrap();
    let cancelled = q2
        .enqueue_and_wait::<serde_json::Value>(&2, Duration::from_millis(300))
        .await;
    assert!(cancelled.is_err(), "Redis was paused");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = q2
        .enqueue_and_wait::<serde_json::Value>(&3, Duration::from_secs(5))
        .await;
    assert!(later.is_ok(), "a later wait gets its result: {later:?}");
    stop(t1, w1).await;
    stop(t2, w2).await;
}

async fn consumers(pool: &Pool, stream: &str) -> Vec<String> {
    let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(queue::GROUP)
        .query_async(&mut admin(pool).await)
        .await
        .unwrap();
    reply.consumers.into_iter().map(|c| c.name).collect()
}

/// Finding 5: a worker leaves the group when it stops, and consumers of workers that died with
/// nothing pending are removed by the live ones.
#[tokio::test]
async fn consumers_leave_the_group_and_dead_empty_ones_are_removed() {
    init_tracing();
    let env = TestEnv::new("fence_leave").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    let stream = stream_key(&env.namespace, "jobs", 0);
    for i in 0..3 {
        let rec = Recorder::<u32>::ok(Duration::ZERO);
        let (token, task) = spawn_worker(&q, rec.clone(), fast_worker(&format!("w{i}")));
        q.enqueue(&i).await.unwrap();
        rec.wait_finished(1, Duration::from_secs(5)).await;
        stop(token, task).await;
    }
    assert_eq!(consumers(&env.redis, &stream).await, Vec::<String>::new());
    let _: i64 = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(&stream)
        .arg(queue::GROUP)
        .arg("ghost")
        .query_async(&mut admin(&env.redis).await)
        .await
        .unwrap();
    let rec = Recorder::<u32>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(&q, rec, fast_worker("live"));
    let start = Instant::now();
    while consumers(&env.redis, &stream)
        .await
        .contains(&"ghost".to_string())
    {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the ghost consumer stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(token, task).await;
}

/// Finding 6: the partition count is stored in Redis; a worker configured with another count
/// refuses to start, with an error that names both counts.
#[tokio::test]
async fn a_worker_with_another_partition_count_refuses_to_start() {
    init_tracing();
    let env = TestEnv::new("fence_parts_count").await;
    let q4 = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.partitions = 4
    });
    let (token, task) = spawn_worker(&q4, Recorder::<u32>::ok(Duration::ZERO), fast_worker("p4"));
    q4.enqueue(&1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(token, task).await;
    let q2 = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.partitions = 2
    });
    let worker = Worker::new(
        q2.clone(),
        Recorder::<u32>::ok(Duration::ZERO),
        fast_worker("p2"),
    );
    let ran = tokio::time::timeout(
        Duration::from_secs(3),
        worker.run(queue::CancellationToken::new()),
    )
    .await
    .expect("the worker returns at once");
    let err = ran.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains('4') && text.contains('2'), "{text}");
    let checked = q2
        .check_partitions()
        .await
        .expect_err("the producer side checks too");
    assert!(checked.to_string().contains("partitions"), "{checked}");
}

/// Finding 7: a settle error that never clears (here WRONGTYPE: the delayed set is a string)
/// must not pin the batch and its slot forever; later jobs still run.
#[tokio::test]
async fn a_settle_that_keeps_failing_releases_its_batch() {
    init_tracing();
    let env = TestEnv::new("fence_stuck").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    let stream = stream_key(&env.namespace, "jobs", 0);
    let _: () = redis::cmd("SET")
        .arg(format!("{stream}:delayed"))
        .arg("not a zset")
        .query_async(&mut admin(&env.redis).await)
        .await
        .unwrap();
    let rec = Recorder::<u32>::new(Duration::ZERO, |j| match j.payload {
        1 => Outcome::Retry {
            error: "again".into(),
            after: None,
        },
        _ => Outcome::Done(serde_json::Value::Null),
    });
    let mut cfg = fast_worker("pinned");
    cfg.concurrency = 1;
    let (token, task) = spawn_worker(&q, rec.clone(), cfg);
    q.enqueue(&1).await.unwrap();
    rec.wait_finished(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    q.enqueue(&2).await.unwrap();
    let start = Instant::now();
    while !rec.finished().iter().any(|s| s.payload == 2) {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the stuck settle pinned the only batch slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(token, task).await;
    let held = xlen(&env.redis, &stream).await + xlen(&env.redis, &format!("{stream}:dead")).await;
    assert_eq!(
        held, 1,
        "job 1 is not lost: still in its stream or dead-lettered"
    );
}

/// Finding 8 (full jitter): capped retries do not fire in lockstep.
#[test]
fn capped_retry_delays_are_spread() {
    let mut cfg = QueueConfig::new("ns", "q");
    cfg.backoff_base = Duration::from_millis(100);
    cfg.backoff_max = Duration::from_secs(1);
    let delays: std::collections::HashSet<Duration> =
        (0..50).map(|_| queue::retry_delay(&cfg, 12)).collect();
    assert!(delays.len() > 10, "spread: {delays:?}");
    assert!(delays.iter().all(|d| *d <= cfg.backoff_max));
}

#[allow(dead_code)]
fn _types(_: Queue<u32>) {}
