//! The everyday path against the real Redis: jobs are processed and deleted (the stream ends
//! empty), stats add up, partitions spread and drain, request/reply returns results or times out.

use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use queue::{EnqueueOptions, Outcome, QueueError};
use support::*;
use testkit::{xlen, TestEnv};

#[tokio::test]
async fn processed_jobs_are_acked_and_deleted_so_the_stream_ends_empty() {
    init_tracing();
    let env = TestEnv::new("queue_empty").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    let ids = q
        .enqueue_batch(&(0..500).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(ids.len(), 500);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        500,
        "ids are unique"
    );
    let stream = stream_key(&env.namespace, "jobs", 0);
    assert_eq!(xlen(&env.redis, &stream).await, 500);
    let before = q.stats().await.unwrap();
    assert_eq!(before.backlog, 500);
    assert_eq!(before.pending, 0);

    let rec = Recorder::<u32>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    rec.wait_finished(500, Duration::from_secs(10)).await;
    let payloads: HashSet<u32> = rec.finished().iter().map(|s| s.payload).collect();
    assert_eq!(payloads, (0..500).collect());

    // Settling happens right after the handler returns; give it a moment.
    let start = Instant::now();
    while xlen(&env.redis, &stream).await > 0 && start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        xlen(&env.redis, &stream).await,
        0,
        "entries are deleted, not just acked"
    );
    assert_eq!(pending(&env.redis, &stream).await, 0);
    let after = q.stats().await.unwrap();
    assert_eq!(
        (after.backlog, after.pending, after.delayed, after.dead),
        (0, 0, 0, 0)
    );
    assert_eq!(after.workers, 1, "the running worker is live");
    stop(token, task).await;
    assert_eq!(
        q.stats().await.unwrap().workers,
        0,
        "a stopped worker leaves the live set"
    );
}

#[tokio::test]
async fn four_partitions_spread_jobs_by_key_and_all_are_processed() {
    init_tracing();
    let env = TestEnv::new("queue_partitions").await;
    let q = queue::<String>(env.redis.clone(), &env.namespace, "parts", |c| {
        c.partitions = 4
    });
    let items: Vec<(Option<String>, String)> = (0..200)
        .map(|i| (Some(format!("resource-{i}")), format!("job-{i}")))
        .collect();
    q.enqueue_batch_keyed(&items).await.unwrap();
    let mut lens = Vec::new();
    for p in 0..4 {
        lens.push(xlen(&env.redis, &stream_key(&env.namespace, "parts", p)).await);
    }
    assert_eq!(lens.iter().sum::<u64>(), 200);
    assert!(
        lens.iter().all(|l| *l > 20),
        "every partition gets a share: {lens:?}"
    );
    let streams: Vec<String> = (0..4)
        .map(|p| stream_key(&env.namespace, "parts", p))
        .collect();
    assert_eq!(q.stream_keys(), streams);
    assert_eq!(
        q.stream_key(Some("resource-7")),
        streams[usize::from(q.partition_of("resource-7"))]
    );
    // The same key always lands on the same stream.
    assert_eq!(
        q.stream_key(Some("resource-7")),
        q.stream_key(Some("resource-7"))
    );
    assert!(q
        .stream_key(Some("resource-7"))
        .starts_with(&format!("{}:{{parts:", env.namespace)));

    let rec = Recorder::<String>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    rec.wait_finished(200, Duration::from_secs(10)).await;
    let partitions: HashSet<u16> = rec.finished().iter().map(|s| s.partition).collect();
    assert_eq!(partitions, (0..4).collect());
    for s in rec.finished() {
        let i: usize = s.payload.trim_start_matches("job-").parse().unwrap();
        let expected = q.stream_key(Some(&format!("resource-{i}")));
        assert_eq!(stream_key(&env.namespace, "parts", s.partition), expected);
    }
    stop(token, task).await;
    for p in 0..4 {
        let key = stream_key(&env.namespace, "parts", p);
        assert_eq!(xlen(&env.redis, &key).await, 0);
        assert_eq!(pending(&env.redis, &key).await, 0);
    }
}

#[tokio::test]
async fn enqueue_and_wait_returns_the_handlers_result() {
    init_tracing();
    let env = TestEnv::new("queue_reply").await;
    let q = queue::<i64>(env.redis.clone(), &env.namespace, "rpc", |c| {
        c.partitions = 2
    });
    let rec = Recorder::<i64>::new(Duration::ZERO, |job| {
        if job.payload < 0 {
            Outcome::Dead {
                reason: "negative input".into(),
            }
        } else {
            Outcome::Done(serde_json::json!({ "doubled": job.payload * 2 }))
        }
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    let mut waits = Vec::new();
    for i in 0..20i64 {
        let q = q.clone();
        waits.push(tokio::spawn(async move {
            q.enqueue_and_wait::<serde_json::Value>(&i, Duration::from_secs(5))
                .await
        }));
    }
    for (i, w) in waits.into_iter().enumerate() {
        let v = w.await.unwrap().unwrap();
        assert_eq!(
            v["doubled"],
            serde_json::json!(i as i64 * 2),
            "each reply reaches its own caller"
        );
    }
    // A second queue in the same process shares the subscriber connection and gets its own replies.
    let q2 = queue::<i64>(env.redis.clone(), &env.namespace, "rpc2", |_| {});
    let rec2 = Recorder::<i64>::new(Duration::ZERO, |job| {
        Outcome::Done(serde_json::json!(job.payload + 1000))
    });
    let (token2, task2) = spawn_worker(&q2, rec2.clone(), fast_worker("w2"));
    let (a, b) = tokio::join!(
        q.enqueue_and_wait::<serde_json::Value>(&5, Duration::from_secs(5)),
        q2.enqueue_and_wait::<i64>(&5, Duration::from_secs(5)),
    );
    assert_eq!(a.unwrap()["doubled"], serde_json::json!(10));
    assert_eq!(b.unwrap(), 1005);
    let mut conn = env.redis.get().await.unwrap();
    let subscribers: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("{}:{{rpc}}:results", env.namespace))
        .arg(format!("{}:{{rpc2}}:results", env.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        subscribers.iter().all(|(_, n)| *n == 1),
        "one subscriber per channel, not one per waiter: {subscribers:?}"
    );
    stop(token2, task2).await;
    match q
        .enqueue_and_wait::<serde_json::Value>(&-1, Duration::from_secs(5))
        .await
    {
        Err(QueueError::Failed { reason, .. }) => assert_eq!(reason, "negative input"),
        other => panic!("expected Failed, got {other:?}"),
    }
    stop(token, task).await;
}

#[tokio::test]
async fn enqueue_and_wait_times_out_on_time_without_a_worker() {
    init_tracing();
    let env = TestEnv::new("queue_reply_timeout").await;
    let q = queue::<u8>(env.redis.clone(), &env.namespace, "lonely", |_| {});
    // Warm the subscriber so the measured call is only the wait.
    let _ = q
        .enqueue_and_wait::<u8>(&0, Duration::from_millis(100))
        .await;
    let start = Instant::now();
    let result = q
        .enqueue_and_wait::<u8>(&1, Duration::from_millis(600))
        .await;
    let elapsed = start.elapsed();
    assert!(
        matches!(result, Err(QueueError::Timeout { .. })),
        "got {result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(600),
        "gave up early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(800),
        "gave up late: {elapsed:?}"
    );
    // The job is still there and runs later.
    assert_eq!(q.stats().await.unwrap().backlog, 2);
}

#[tokio::test]
async fn a_result_published_before_the_waiter_listened_is_read_from_storage() {
    init_tracing();
    let env = TestEnv::new("queue_reply_late").await;
    let q = queue::<u8>(env.redis.clone(), &env.namespace, "late", |_| {});
    let opts = EnqueueOptions {
        reply: true,
        ..EnqueueOptions::default()
    };
    let id = q.enqueue_with(&7, opts).await.unwrap();
    let rec = Recorder::<u8>::new(Duration::ZERO, |j| {
        Outcome::Done(serde_json::json!(j.payload + 1))
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    rec.wait_finished(1, Duration::from_secs(5)).await;
    stop(token, task).await;
    let mut conn = env.redis.get().await.unwrap();
    let stored: String = redis::cmd("GET")
        .arg(format!("{}:{{late:0}}:result:{}", env.namespace, id))
        .query_async(&mut conn)
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["value"], serde_json::json!(8));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:{{late:0}}:result:{}", env.namespace, id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 300_000, "result has a TTL: {ttl}");
}
