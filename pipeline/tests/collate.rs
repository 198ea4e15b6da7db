//! Collation against the real Redis: out-of-order and duplicate packets complete a resource exactly
//! once (one delivery job XADDed atomically, consumed by a real `queue::Worker`), the collated body
//! is in seq order, timed-out resources are claimed and dead-lettered by exactly one sweeper in the
//! sweep script, and a fresh server (empty script cache) works too. Size limit and data lifetimes
//! are in `collate_lifecycle.rs`.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use pipeline::collate::{Fetched, RETENTION};
use pipeline::resource::DeliveryJob;
use queue::{CancellationToken, Handler, Job, Outcome, Worker, WorkerConfig};
use support::{collator, key, packet};
use testkit::{xlen, TestEnv};

#[tokio::test]
async fn out_of_order_and_duplicate_packets_complete_once_in_seq_order() {
    let env = TestEnv::new("collate_order").await;
    let (c, q) = collator(&env.redis, &env.namespace, 1);
    let t0 = Utc::now();
    let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    let texts = ["alpha be", "", "xyzzy 12 héllo", "a"];
    let p = |s: u32| packet("res:1", s, 4, texts[s as usize], at(i64::from(s) * 10));
    // Seq 2, 0, duplicate 0, 3 → incomplete; then 1 completes; duplicates afterwards do nothing.
    assert_eq!(c.record(&[p(2), p(0), p(0)]).await.unwrap(), 0);
    assert_eq!(c.record(&[p(3)]).await.unwrap(), 0);
    assert!(
        c.load(&key("res:1")).await.unwrap().is_none(),
        "incomplete resources are not loadable"
    );
    let stream = q.stream_key(Some("p@res:1"));
    assert_eq!(xlen(&env.redis, &stream).await, 0);
    assert_eq!(c.record(&[p(1), p(1)]).await.unwrap(), 1);
    assert_eq!(c.record(&[p(0), p(1), p(2), p(3)]).await.unwrap(), 0);
    assert_eq!(
        xlen(&env.redis, &stream).await,
        1,
        "exactly one delivery job"
    );

    let r = c.load(&key("res:1")).await.unwrap().expect("complete");
    assert_eq!(r.packets, 4);
    assert_eq!(
        r.word_lengths,
        vec![vec![5, 2], vec![], vec![5, 2, 5], vec![1]]
    );
    assert_eq!(r.first_received_at, at(0));
    assert_eq!(r.last_received_at, at(30));
    assert!(r.completed_at >= t0);

    // The job carries the queue's wire fields and the resource id.
    let mut conn = env.redis.get().await.unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let fields = &entries.ids[0].map;
    let payload: String = redis::from_redis_value(fields[queue::wire::PAYLOAD].clone()).unwrap();
    assert_eq!(
        serde_json::from_str::<DeliveryJob>(&payload).unwrap().key,
        key("res:1")
    );
    assert_eq!(payload, r#"{"resource_id":"p@res:1"}"#);
    let attempt: String = redis::from_redis_value(fields[queue::wire::ATTEMPT].clone()).unwrap();
    assert_eq!(attempt, "1");
    assert!(fields.contains_key(queue::wire::ID) && fields.contains_key(queue::wire::ENQUEUED_AT));

    // Undelivered data is kept for the retention; once released it expires after the TTL, and
    // the small tombstone outlives it.
    let ttl_of = |k: String| {
        let pool = env.redis.clone();
        async move {
            let mut c = pool.get().await.unwrap();
            redis::cmd("TTL")
                .arg(&k)
                .query_async::<i64>(&mut c)
                .await
                .unwrap()
        }
    };
    let prefix = format!("{stream}:collate:res:p@res:1:");
    let retention = RETENTION.as_secs() as i64;
    for k in ["parts", "meta"] {
        let ttl = ttl_of(format!("{prefix}{k}")).await;
        assert!(ttl > retention - 60 && ttl <= retention, "{k} ttl {ttl}");
    }
    // The tombstone is a field of a bucket hash that lives at least the retention.
    let tombstone = || {
        let pool = env.redis.clone();
        let pattern = format!("{stream}:collate:done:*");
        async move {
            let mut c = pool.get().await.unwrap();
            let buckets: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut c)
                .await
                .unwrap();
            let mut found = Vec::new();
            for b in buckets {
                let state: Option<String> = redis::cmd("HGET")
                    .arg(&b)
                    .arg("p@res:1")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let ttl: i64 = redis::cmd("TTL").arg(&b).query_async(&mut c).await.unwrap();
                found.extend(state.map(|s| (s, ttl)));
            }
            found
        }
    };
    let found = tombstone().await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "complete");
    assert!(found[0].1 >= retention, "bucket ttl {}", found[0].1);
    c.release(&key("res:1")).await.unwrap();
    for k in ["parts", "meta"] {
        let ttl = ttl_of(format!("{prefix}{k}")).await;
        assert!(ttl > 0 && ttl <= 60, "released {k} ttl {ttl}");
    }
    let found = tombstone().await;
    assert_eq!(found.len(), 1, "same bucket, state overwritten: {found:?}");
    assert_eq!(found[0].0, "delivered");
    assert!(found[0].1 >= retention);
    assert_eq!(c.fetch(&key("res:1")).await.unwrap(), Fetched::Delivered);
    drop(conn);
}

#[tokio::test]
async fn concurrent_recorders_enqueue_one_job_per_resource() {
    let env = TestEnv::new("collate_race").await;
    let (c, q) = collator(&env.redis, &env.namespace, 4);
    let now = Utc::now();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for r in 0..50 {
                let id = format!("r{r}");
                let batch: Vec<_> = (0..3)
                    .map(|s| packet(&id, (s + worker) % 3, 3, "w w", now))
                    .collect();
                done += c.record(&batch).await.unwrap();
            }
            done
        }));
    }
    let mut completed = 0;
    for t in tasks {
        completed += t.await.unwrap();
    }
    assert_eq!(completed, 50);
    let mut jobs = 0;
    let mut streams: Vec<String> = (0..50)
        .map(|r| q.stream_key(Some(&format!("r{r}"))))
        .collect();
    streams.sort();
    streams.dedup();
    assert!(streams.len() > 1, "resources spread over partitions");
    for s in &streams {
        jobs += xlen(&env.redis, s).await;
    }
    assert_eq!(jobs, 50);
}

#[tokio::test]
async fn timed_out_resources_are_claimed_once_and_late_packets_ignored() {
    let env = TestEnv::new("collate_sweep").await;
    let (c, q) = collator(&env.redis, &env.namespace, 2);
    let now = Utc::now();
    c.record(&[
        packet("slow", 0, 5, "a", now),
        packet("slow", 3, 5, "b", now),
    ])
    .await
    .unwrap();
    c.record(&[packet("fresh", 0, 2, "a", now)]).await.unwrap();
    assert!(
        c.sweep(Duration::from_secs(60), 100)
            .await
            .unwrap()
            .is_empty(),
        "nothing is old yet"
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (a, b) = tokio::join!(
        c.sweep(Duration::from_millis(10), 100),
        c.sweep(Duration::from_millis(10), 100)
    );
    let mut claimed = a.unwrap();
    claimed.extend(b.unwrap());
    claimed.sort_by(|x, y| x.resource_id.cmp(&y.resource_id));
    assert_eq!(
        claimed.len(),
        2,
        "each resource claimed by one sweeper: {claimed:?}"
    );
    assert_eq!(claimed[1].resource_id, "p@slow");
    assert_eq!(claimed[1].received, vec![0, 3]);
    assert_eq!(claimed[1].missing(), vec![1, 2, 4]);
    assert_eq!(claimed[0].missing(), vec![1]);
    // Late packets of a reported resource do not complete it.
    let late: Vec<_> = [1, 2, 4]
        .iter()
        .map(|s| packet("slow", *s, 5, "c", now))
        .collect();
    assert_eq!(c.record(&late).await.unwrap(), 0);
    assert_eq!(xlen(&env.redis, &q.stream_key(Some("p@slow"))).await, 0);
    assert!(c.load(&key("slow")).await.unwrap().is_none());

    // The sweep script itself wrote each dead letter, in the resource's own partition, in the
    // queue's format; no separate step could lose it.
    let dead_key = format!("{}:dead", q.stream_key(Some("p@slow")));
    assert!(xlen(&env.redis, &dead_key).await >= 1);
    let mut dead = q.dead_letters(10).await.unwrap();
    dead.sort_by(|x, y| x.error.cmp(&y.error));
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(
        dead[1].error,
        "resource p@slow timed out after 10 ms: received 2 of 5 packets; missing seqs [1, 2, 4]"
    );
    assert_eq!(
        dead[1].payload,
        serde_json::json!({"resource_id": "p@slow"})
    );
    assert_eq!(dead[1].history, vec![dead[1].error.clone()]);
    assert_eq!(dead[1].attempts, 0);
    assert!(dead[1].dead_at_ms >= u64::try_from(now.timestamp_millis()).unwrap());
    assert_eq!(
        dead[0].error,
        "resource p@fresh timed out after 10 ms: received 1 of 2 packets; missing seqs [1]"
    );

    // Long lists of missing seqs are cut after 50.
    c.record(&[packet("many", 0, 200, "a", now)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        c.sweep(Duration::from_millis(10), 100).await.unwrap().len(),
        1
    );
    let dead = q.dead_letters(1).await.unwrap();
    assert!(
        dead[0].error.starts_with(
            "resource p@many timed out after 10 ms: received 1 of 200 packets; missing seqs [1, 2, "
        ) && dead[0].error.ends_with(", 49, 50, … (149 more)]"),
        "{}",
        dead[0].error
    );
}

#[tokio::test]
async fn works_on_a_fresh_server_with_an_empty_script_cache() {
    let server = testkit::RedisServer::start().await;
    let pool = testkit::redis_pool(&server.url());
    let (c, _q) = collator(&pool, "fresh", 1);
    let now = Utc::now();
    assert_eq!(
        c.record(&[packet("x", 0, 1, "hello world", now)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        c.load(&key("x")).await.unwrap().unwrap().word_lengths,
        vec![vec![5, 5]]
    );
}

/// Collects the resource ids of the delivery jobs it runs.
struct Collect(Arc<Mutex<Vec<(String, u32)>>>);

impl Handler<DeliveryJob> for Collect {
    async fn handle(&self, jobs: Vec<Job<DeliveryJob>>) -> Vec<Outcome> {
        let mut seen = self.0.lock().unwrap();
        jobs.iter()
            .map(|j| {
                seen.push((j.payload.key.id().to_string(), j.attempt));
                Outcome::Done(serde_json::Value::Null)
            })
            .collect()
    }
}

#[tokio::test]
async fn collate_enqueued_jobs_are_consumed_by_a_queue_worker() {
    let env = TestEnv::new("collate_wire").await;
    let (c, q) = collator(&env.redis, &env.namespace, 3);
    let now = Utc::now();
    let ids: Vec<String> = (0..6).map(|i| format!("wire-{i}")).collect();
    let batch: Vec<_> = ids
        .iter()
        .flat_map(|id| [packet(id, 1, 2, "b", now), packet(id, 0, 2, "a", now)])
        .collect();
    assert_eq!(c.record(&batch).await.unwrap(), 6);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let config = WorkerConfig {
        block: Duration::from_millis(50),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(q.clone(), Collect(seen.clone()), config);
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let start = std::time::Instant::now();
    while seen.lock().unwrap().len() < 6 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    let want: Vec<(String, u32)> = ids.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(
        got, want,
        "every job decoded with its payload and attempt 1"
    );
    for stream in q.stream_keys() {
        assert_eq!(xlen(&env.redis, &stream).await, 0, "{stream} acked");
    }
    assert!(q.dead_letters(10).await.unwrap().is_empty());
}

/// A large batch over several partitions (more packets than one script call takes, so each
/// partition's packets span several calls of the same round trip), with every packet sent twice
/// and the resources' packets interleaved: each resource completes exactly once (its delivery
/// jobs are counted per resource id), reads back whole in seq order in one `fetch_many`, and
/// after one `release_many` every one of them reads as delivered.
#[tokio::test]
async fn a_large_batch_over_partitions_completes_each_resource_once_and_reads_back_in_one_trip() {
    let env = TestEnv::new("collate_many").await;
    let (c, q) = collator(&env.redis, &env.namespace, 4);
    large_batch(c, q, env.redis.clone().into()).await;
}

/// The same on a real Redis Cluster (3 masters): the batch's partitions live in different slots,
/// so each script call and each read goes to its partition's master (`queue::Fanout`).
#[tokio::test]
async fn a_large_batch_over_partitions_works_on_a_redis_cluster() {
    let (url, _private) = testkit::cluster_url().await;
    let pool = queue::RedisPool::open(&url, 8).unwrap();
    let ns = format!("collate_cluster_{}", uuid::Uuid::new_v4().simple());
    let mut cfg = queue::QueueConfig::new(&ns, "webhooks");
    cfg.partitions = 6;
    let q = queue::Queue::new(pool.clone(), cfg);
    let c = pipeline::collate::Collator::new(pool.clone(), &ns, &q, Duration::from_secs(60));
    large_batch(c, q, pool).await;
}

async fn large_batch(
    c: pipeline::collate::Collator,
    q: queue::Queue<DeliveryJob>,
    pool: queue::RedisPool,
) {
    let now = Utc::now();
    let resources = 300u32;
    let text = |r: u32, s: u32| {
        format!(
            "{} {}",
            "x".repeat((r % 7 + 1) as usize),
            "y".repeat((s + 1) as usize)
        )
    };
    // seq-major order: every resource's seq 2, then 0, then 1; each packet twice.
    let mut batch = Vec::new();
    for s in [2u32, 0, 1] {
        for r in 0..resources {
            let p = packet(&format!("m{r}"), s, 3, &text(r, s), now);
            batch.push(p.clone());
            batch.push(p);
        }
    }
    assert_eq!(batch.len(), 1800);
    assert_eq!(c.record(&batch).await.unwrap(), resources as usize);
    assert_eq!(
        c.record(&batch).await.unwrap(),
        0,
        "a repeated batch changes nothing"
    );

    // Delivery jobs per resource id, over every partition's stream.
    let mut streams: Vec<String> = (0..resources)
        .map(|r| q.stream_key(Some(&format!("p@m{r}"))))
        .collect();
    streams.sort();
    streams.dedup();
    assert!(
        streams.len() >= 3,
        "resources spread over partitions: {streams:?}"
    );
    let mut per_resource = std::collections::HashMap::<String, u32>::new();
    let mut conn = pool.get().await.unwrap();
    for s in &streams {
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(s)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        for e in entries.ids {
            let payload: String = e.get("payload").expect("payload field");
            let job: DeliveryJob = serde_json::from_str(&payload).unwrap();
            *per_resource.entry(job.key.to_string()).or_default() += 1;
        }
    }
    assert_eq!(per_resource.len(), resources as usize);
    assert!(
        per_resource.values().all(|&n| n == 1),
        "one job per resource"
    );

    let keys: Vec<_> = (0..resources).map(|r| key(&format!("m{r}"))).collect();
    let fetched = c.fetch_many(&keys).await.unwrap();
    assert_eq!(fetched.len(), keys.len());
    for (r, f) in fetched.into_iter().enumerate() {
        let r = r as u32;
        match f.unwrap() {
            Fetched::Ready(res) => {
                let expected: Vec<Vec<u32>> = (0..3)
                    .map(|s| pipeline::task::word_lengths(&text(r, s)))
                    .collect();
                assert_eq!(res.word_lengths, expected, "resource m{r}");
                assert_eq!(res.packets, 3);
            }
            other => panic!("resource m{r}: {other:?}"),
        }
    }
    c.release_many(&keys).await.unwrap();
    let after = c.fetch_many(&keys).await.unwrap();
    let delivered = after
        .into_iter()
        .filter(|f| matches!(f, Ok(Fetched::Delivered)))
        .count();
    assert_eq!(delivered, resources as usize);
}
