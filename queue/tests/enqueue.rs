//! Enqueue guarantees against the real Redis: `enqueue_and_wait_with` respects the partition key
//! and is bounded by its timeout as a whole even when Redis hangs on the write; batch enqueue is
//! all-or-nothing per partition (a concurrent reader never sees part of a batch) and returns
//! ids in input order.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use queue::{EnqueueOptions, Outcome, QueueError};
use support::*;
use testkit::{xlen, RedisServer, TestEnv};

#[tokio::test]
async fn enqueue_and_wait_with_runs_the_job_on_its_keys_partition() {
    init_tracing();
    let env = TestEnv::new("queue_wait_with").await;
    let q = queue::<String>(env.redis.clone(), &env.namespace, "rpc", |c| {
        c.partitions = 4
    });
    let rec = Recorder::<String>::new(Duration::ZERO, |j| {
        Outcome::Done(serde_json::json!({ "partition": j.partition, "payload": j.payload }))
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    let mut partitions = Vec::new();
    for key in ["res-1", "res-2", "res-3", "res-4", "res-5", "res-6"] {
        let opts = EnqueueOptions {
            partition_key: Some(key.to_string()),
            ..EnqueueOptions::default()
        };
        let got: serde_json::Value = q
            .enqueue_and_wait_with(&format!("for {key}"), opts, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(got["payload"], serde_json::json!(format!("for {key}")));
        assert_eq!(
            got["partition"],
            serde_json::json!(q.partition_of(key)),
            "{key} ran on the partition its key maps to"
        );
        partitions.push(q.partition_of(key));
    }
    partitions.sort_unstable();
    partitions.dedup();
    assert!(partitions.len() > 1, "the keys cover several partitions");
    stop(token, task).await;
}

#[tokio::test]
async fn enqueue_and_wait_with_is_bounded_by_its_timeout_when_redis_hangs() {
    init_tracing();
    // A private server: CLIENT PAUSE would stall everyone's tests on the shared one.
    let server = RedisServer::start().await;
    let pool = server.pool();
    let q = queue::<u32>(pool.clone(), "hang", "rpc", |_| {});
    let rec = Recorder::<u32>::new(Duration::ZERO, |j| {
        Outcome::Done(serde_json::json!(j.payload))
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    // Warm up: the result subscriber is connected and a round trip works.
    let warm: u32 = q
        .enqueue_and_wait(&7, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(warm, 7);
    stop(token, task).await;

    // Redis now accepts connections and reads but holds every write (the XADD) for 5 s.
    let mut conn = pool.get().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(5000)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let start = Instant::now();
    let result = q
        .enqueue_and_wait_with::<u32>(&8, EnqueueOptions::default(), Duration::from_millis(300))
        .await;
    let elapsed = start.elapsed();
    assert!(
        matches!(result, Err(QueueError::Timeout { .. })),
        "got {result:?}"
    );
    // Generous margin for a loaded machine, far below the 5 s the write is held.
    assert!(
        elapsed < Duration::from_millis(2000),
        "held past its timeout: {elapsed:?}"
    );
    let mut conn = pool.get().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_never_seen_half_enqueued() {
    init_tracing();
    let env = TestEnv::new("queue_batch_atomic").await;
    let q = queue::<String>(env.redis.clone(), &env.namespace, "bulk", |_| {});
    let stream = stream_key(&env.namespace, "bulk", 0);
    const BATCH: u64 = 5000;
    const CALLS: u64 = 8;
    // Polls XLEN on its own connection while batches go in.
    let pool = env.redis.clone();
    let key = stream.clone();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut conn = pool.get().await.unwrap();
        loop {
            let n: u64 = redis::cmd("XLEN")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            seen.push(n);
            if n >= BATCH * CALLS {
                return seen;
            }
        }
    });
    let payload = "x".repeat(100);
    for _ in 0..CALLS {
        let jobs = vec![payload.clone(); BATCH as usize];
        let ids = q.enqueue_batch(&jobs).await.unwrap();
        assert_eq!(ids.len(), BATCH as usize);
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .unwrap()
        .unwrap();
    let partial: Vec<u64> = seen.iter().copied().filter(|n| n % BATCH != 0).collect();
    assert!(
        partial.is_empty(),
        "a reader saw part of a batch ({} of {} samples): {:?}",
        partial.len(),
        seen.len(),
        &partial[..partial.len().min(10)]
    );
    assert_eq!(xlen(&env.redis, &stream).await, BATCH * CALLS);
}

#[tokio::test]
async fn a_keyed_batch_over_several_partitions_lands_whole_and_in_order() {
    init_tracing();
    let env = TestEnv::new("queue_batch_keyed").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "keyed", |c| {
        c.partitions = 3
    });
    let items: Vec<(Option<String>, u32)> = (0..300)
        .map(|i| (Some(format!("resource-{}", i % 7)), i))
        .collect();
    let ids = q.enqueue_batch_keyed(&items).await.unwrap();
    assert_eq!(ids.len(), items.len());
    // Each returned id belongs to the item at the same position, on its key's partition.
    let mut conn = env.redis.get().await.unwrap();
    let mut found: HashMap<String, (u16, u32)> = HashMap::new();
    for p in 0..3u16 {
        let mut last = None;
        for (id, n) in jobs_in(&mut conn, &stream_key(&env.namespace, "keyed", p)).await {
            if let Some(prev) = last {
                assert!(n > prev, "partition {p} keeps input order: {prev} then {n}");
            }
            last = Some(n);
            found.insert(id, (p, n));
        }
    }
    assert_eq!(found.len(), items.len(), "every job stored exactly once");
    for (i, ((key, n), id)) in items.iter().zip(&ids).enumerate() {
        let (p, stored) = found[&id.0];
        assert_eq!(stored, *n, "id #{i} is the id of item #{i}");
        assert_eq!(p, q.partition_of(key.as_deref().unwrap()));
    }
}

#[tokio::test]
async fn a_batch_with_ids_stores_each_id_once_in_input_order_even_when_sent_again() {
    init_tracing();
    let env = TestEnv::new("queue_batch_ids").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "ids", |c| {
        c.partitions = 3
    });
    // 1,000 jobs over 3 partitions, every fifth without an id (a plain XADD between runs of
    // enqueue_many.lua), ids 0..199 named twice in the batch.
    let id_of = |i: u32| (i % 5 != 4).then(|| format!("job-{}", i % 800));
    let items: Vec<(Option<String>, Option<String>, u32)> = (0..1000)
        .map(|i| match id_of(i) {
            Some(id) => (None, Some(id), i),
            None => (Some(format!("key-{}", i % 7)), None, i),
        })
        .collect();
    let first = q.enqueue_batch_with_ids(&items).await.unwrap();
    assert_eq!(first.len(), items.len());
    // Sent again, as a caller would after an unknown outcome.
    q.enqueue_batch_with_ids(&items).await.unwrap();

    let mut conn = env.redis.get().await.unwrap();
    let mut runs: HashMap<u32, u32> = HashMap::new();
    let mut checked = 0;
    for p in 0..3u16 {
        let mut last = None;
        for (stored, n) in jobs_in(&mut conn, &stream_key(&env.namespace, "ids", p)).await {
            let seen = runs.entry(n).or_insert(0);
            *seen += 1;
            if *seen == 1 {
                // The first call's jobs, in input order within the partition.
                if let Some(prev) = last {
                    assert!(n > prev, "partition {p}: {prev} stored before {n}");
                }
                last = Some(n);
                checked += 1;
            }
            if let Some(id) = id_of(n) {
                assert_eq!(stored, id, "job {n} carries its caller's id");
                assert_eq!(p, q.partition_of(&id), "job {n} is on its id's partition");
            }
        }
    }
    assert!(checked > 700, "order checked on {checked} jobs");
    for n in 0..1000u32 {
        let expected = match id_of(n) {
            None => 2,               // no id: each call adds it
            Some(_) if n < 800 => 1, // its id's first naming: once over both calls
            Some(_) => 0,            // the id was named earlier in the batch
        };
        assert_eq!(
            runs.get(&n).copied().unwrap_or(0),
            expected,
            "runs of job {n}"
        );
    }
}

/// The `(id, payload)` of every job in `stream`, in stream order (payloads are numbers here).
async fn jobs_in(conn: &mut deadpool_redis::Connection, stream: &str) -> Vec<(String, u32)> {
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    entries
        .ids
        .iter()
        .map(|e| {
            let id: String = e.get("id").unwrap();
            let payload: String = e.get("payload").unwrap();
            (id, payload.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_long_run_of_ids_in_one_partition_spans_several_script_calls_in_order() {
    init_tracing();
    let env = TestEnv::new("queue_batch_long_run").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "run", |_| {});
    // One partition: 700 jobs with ids in a row (more than two calls of 256), one without an id
    // in the middle, and ids 0..49 named a second time at the end.
    let items: Vec<(Option<String>, Option<String>, u32)> = (0..750u32)
        .map(|i| match i {
            350 => (None, None, i),
            700.. => (None, Some(format!("job-{}", i - 700)), i),
            _ => (None, Some(format!("job-{i}")), i),
        })
        .collect();
    q.enqueue_batch_with_ids(&items).await.unwrap();
    let jobs = jobs_in(
        &mut env.redis.get().await.unwrap(),
        &stream_key(&env.namespace, "run", 0),
    )
    .await;
    let stored: Vec<u32> = jobs.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        stored,
        (0..700).collect::<Vec<u32>>(),
        "each id once, in input order"
    );
    for (id, n) in &jobs {
        if *n != 350 {
            assert_eq!(id, &format!("job-{n}"));
        }
    }
}
