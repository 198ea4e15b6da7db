//! The queue's core paths against both kinds of Redis it supports: one node (`REDIS_URL`) and a
//! real Redis Cluster of 3 masters + 3 replicas (`TEST_REDIS_CLUSTER_URL`, which
//! `scripts/test.sh` starts; without it the test starts a private cluster). The same scenarios
//! run on each, with 12 partitions so that a queue's partitions land on every master: enqueue
//! (single, batch, delayed), worker read and settle (ack, retry, dead letter), reclaim of a
//! killed worker's jobs, stats, request/reply (`enqueue_and_wait`) and the admin views. Runs are counted per job
//! id; on the cluster the keys are counted per master.

use crate::support;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use queue::{CancellationToken, Handler, Job, JobId, Outcome, Queue, RedisPool, Worker};
use support::{fast_worker, queue, spawn_worker, stop, wait_taken, Hang, Recorder};

const PARTITIONS: u16 = 12;

fn make<T>(pool: &RedisPool, ns: &str, name: &str, max_attempts: u32) -> Queue<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    queue(pool.clone(), ns, name, |c| {
        c.partitions = PARTITIONS;
        c.max_attempts = max_attempts;
        c.backoff_base = Duration::from_millis(50);
        c.backoff_max = Duration::from_millis(100);
    })
}

/// How often each job id ran (started) in `rec`.
fn runs_per_id<T: Clone + Send + Sync + 'static>(rec: &Recorder<T>) -> HashMap<JobId, usize> {
    let mut runs = HashMap::new();
    for s in rec.started.lock().unwrap().iter() {
        *runs.entry(s.id.clone()).or_insert(0) += 1;
    }
    runs
}

/// Waits until the queue's stats show nothing left anywhere (backlog, pending, delayed).
async fn until_drained<T>(q: &Queue<T>, timeout: Duration)
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let start = Instant::now();
    loop {
        let s = q.stats().await.unwrap();
        if s.backlog == 0 && s.pending == 0 && s.delayed == 0 {
            return;
        }
        assert!(start.elapsed() < timeout, "not drained: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Single, batch and delayed enqueues spread over 12 partitions; every job runs exactly once.
async fn enqueue_and_ack(pool: RedisPool, ns: String) {
    let q = make::<u32>(&pool, &ns, "ack", 3);
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(q.enqueue(&n).await.unwrap());
    }
    let batch: Vec<u32> = (100..136).collect();
    ids.extend(q.enqueue_batch(&batch).await.unwrap());
    for n in 200..203 {
        ids.push(q.enqueue_in(&n, Duration::from_millis(300)).await.unwrap());
    }
    let before = q.stats().await.unwrap();
    assert_eq!((before.backlog, before.delayed), (41, 3), "{before:?}");
    let rec = Recorder::<u32>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w-ack"));
    rec.wait_finished(ids.len(), Duration::from_secs(20)).await;
    until_drained(&q, Duration::from_secs(10)).await;
    stop(token, task).await;
    let runs = runs_per_id(&rec);
    assert_eq!(runs.len(), ids.len());
    for id in &ids {
        assert_eq!(runs.get(id), Some(&1), "job {id:?} runs once");
    }
    let partitions: std::collections::HashSet<u16> =
        rec.finished().iter().map(|s| s.partition).collect();
    assert_eq!(
        partitions.len(),
        usize::from(PARTITIONS),
        "every partition was read"
    );
}

/// Even payloads fail once then succeed (two runs); odd ones are dead-lettered (one run).
async fn retry_and_dead_letter(pool: RedisPool, ns: String) {
    let q = make::<u32>(&pool, &ns, "retry", 3);
    let rec = Recorder::<u32>::new(Duration::ZERO, |job: &Job<u32>| {
        match (job.payload % 2, job.attempt) {
            (0, 1) => Outcome::Retry {
                error: "first try fails".into(),
                after: Some(Duration::from_millis(50)),
            },
            (0, _) => Outcome::Done(serde_json::Value::Null),
            _ => Outcome::Dead {
                reason: "odd".into(),
            },
        }
    });
    let payloads: Vec<u32> = (0..24).collect();
    let ids = q.enqueue_batch(&payloads).await.unwrap();
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w-retry"));
    rec.wait_finished(ids.len(), Duration::from_secs(20)).await;
    let start = Instant::now();
    while rec.started_count() < 36 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "retries did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_drained(&q, Duration::from_secs(10)).await;
    stop(token, task).await;
    let runs = runs_per_id(&rec);
    for (id, n) in ids.iter().zip(&payloads) {
        let want = if n % 2 == 0 { 2 } else { 1 };
        assert_eq!(runs.get(id), Some(&want), "job {n} runs {want} time(s)");
    }
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.dead, 12, "{stats:?}");
    let dead = q.dead_letters(100).await.unwrap();
    assert_eq!(dead.len(), 12, "each odd job dead once");
    let dead_ids: std::collections::HashSet<&JobId> = dead.iter().map(|d| &d.job_id).collect();
    assert_eq!(dead_ids.len(), 12, "each odd job dead once");
}

/// A worker that takes jobs and dies (its runtime is shut down) loses them to a live one,
/// which runs each exactly once.
async fn reclaim_after_kill(pool: RedisPool, ns: String, url: String) {
    let q = make::<u32>(&pool, &ns, "reclaim", 3);
    let taken = Arc::new(AtomicUsize::new(0));
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (dns, counter) = (ns.clone(), taken.clone());
    doomed.spawn(async move {
        // A pool of its own: its connections die with its runtime, like a killed process's.
        let own = RedisPool::open(&url, 4).unwrap();
        let dq = make::<u32>(&own, &dns, "reclaim", 3);
        let _ = Worker::new(dq, Hang(counter), fast_worker("w-doomed"))
            .run(CancellationToken::new())
            .await;
    });
    let payloads: Vec<u32> = (0..24).collect();
    let ids = q.enqueue_batch(&payloads).await.unwrap();
    wait_taken(&taken, 1, Duration::from_secs(10)).await;
    doomed.shutdown_background();
    let rec = Recorder::<u32>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w-live"));
    rec.wait_finished(ids.len(), Duration::from_secs(30)).await;
    until_drained(&q, Duration::from_secs(10)).await;
    stop(token, task).await;
    let runs = runs_per_id(&rec);
    for id in &ids {
        assert_eq!(
            runs.get(id),
            Some(&1),
            "job {id:?} runs once in the live worker"
        );
    }
}

struct Double;
impl Handler<u64> for Double {
    async fn handle(&self, jobs: Vec<Job<u64>>) -> Vec<Outcome> {
        jobs.iter()
            .map(|j| Outcome::Done(serde_json::json!(j.payload * 2)))
            .collect()
    }
}

/// Request/reply over every partition: each waiting call gets its own job's result.
async fn request_reply(pool: RedisPool, ns: String) {
    let q = make::<u64>(&pool, &ns, "reply", 3);
    let (token, task) = spawn_worker(&q, Double, fast_worker("w-reply"));
    let calls = (0..24u64).map(|n| {
        let q = q.clone();
        async move {
            let doubled: u64 = q
                .enqueue_and_wait(&n, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("reply to {n}: {e}"));
            (n, doubled)
        }
    });
    for (n, doubled) in futures::future::join_all(calls).await {
        assert_eq!(doubled, n * 2);
    }
    stop(token, task).await;
}

/// The operator's views over every partition: queues of the namespace, per-partition states,
/// delayed jobs, dead letters (and retrying one), purge of the delayed set.
async fn admin_views(pool: RedisPool, ns: String) {
    let q = make::<u32>(&pool, &ns, "admin", 3);
    q.check_partitions().await.unwrap();
    let payloads: Vec<u32> = (0..24).collect();
    q.enqueue_batch(&payloads).await.unwrap();
    for n in 0..6 {
        q.enqueue_in(&n, Duration::from_secs(3600)).await.unwrap();
    }
    for n in 0..3 {
        q.dead_letter(&n, "by hand").await.unwrap();
    }
    let listed = queue::admin::list_queues(&pool, &ns).await.unwrap();
    let listed: Vec<(&str, u16)> = listed
        .iter()
        .map(|r| (r.name.as_str(), r.partitions))
        .collect();
    assert_eq!(listed, [("admin", PARTITIONS)]);
    let states = q.partition_states().await.unwrap();
    assert_eq!(states.len(), usize::from(PARTITIONS));
    let sum = |f: fn(&queue::admin::PartitionState) -> u64| states.iter().map(f).sum::<u64>();
    assert_eq!(
        (sum(|s| s.backlog), sum(|s| s.delayed), sum(|s| s.dead)),
        (24, 6, 3)
    );
    assert_eq!(q.delayed_jobs(100).await.unwrap().len(), 6);
    let dead = q.dead_entries(100).await.unwrap();
    assert_eq!(dead.len(), 3);
    q.retry_dead(dead[0].partition, &dead[0].entry_id)
        .await
        .unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backlog, stats.delayed, stats.dead),
        (25, 6, 2),
        "{stats:?}"
    );
    let purge = q
        .purge_request(queue::admin::PurgeTarget::Delayed)
        .await
        .unwrap();
    assert_eq!(purge.count, 6);
    let removed = q
        .purge(queue::admin::PurgeTarget::Delayed, &purge.token)
        .await
        .unwrap();
    assert_eq!(removed, 6);
    assert_eq!(q.stats().await.unwrap().delayed, 0);
}

/// Namespace keys on each master of the cluster (by `SCAN` on each).
async fn keys_per_master(pool: &RedisPool, ns: &str) -> Vec<((String, u16), usize)> {
    let mut conn = pool.get().await.unwrap();
    let masters = queue::cluster_masters(&mut conn).await.unwrap();
    let mut out = Vec::new();
    for (host, port) in masters {
        let client = redis::Client::open(format!("redis://{host}:{port}")).unwrap();
        let mut node = client.get_multiplexed_async_connection().await.unwrap();
        let mut count = 0;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{ns}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut node)
                .await
                .unwrap();
            count += keys.len();
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        out.push(((host, port), count));
    }
    out
}

/// Deletes every key of `ns` (on every master of a cluster).
async fn cleanup(pool: &RedisPool, ns: &str) {
    let mut conn = pool.get().await.unwrap();
    for key in queue::scan_all(&mut conn, &format!("{ns}:*"))
        .await
        .unwrap()
    {
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Runs every scenario on `pool`, each in its own namespace, at the same time.
async fn suite(url: &str, label: &str) {
    let pool = RedisPool::open(url, 32).unwrap();
    support::init_tracing();
    let ns = |s: &str| testkit::unique_name(&format!("modes-{s}"));
    let names = [
        ns("ack"),
        ns("retry"),
        ns("reclaim"),
        ns("reply"),
        ns("admin"),
    ];
    let started = Instant::now();
    tokio::join!(
        enqueue_and_ack(pool.clone(), names[0].clone()),
        retry_and_dead_letter(pool.clone(), names[1].clone()),
        reclaim_after_kill(pool.clone(), names[2].clone(), url.to_string()),
        request_reply(pool.clone(), names[3].clone()),
        admin_views(pool.clone(), names[4].clone()),
    );
    println!("{label}: every scenario passed in {:?}", started.elapsed());
    for n in &names {
        cleanup(&pool, n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_works_on_one_redis_node() {
    let url = testkit::redis_url();
    assert!(!RedisPool::open(&url, 1).unwrap().is_cluster());
    suite(&url, "one node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_works_on_a_redis_cluster() {
    let started = Instant::now();
    let (url, _private) = testkit::cluster_url().await;
    println!("cluster ready after {:?}", started.elapsed());
    assert!(RedisPool::open(&url, 1).unwrap().is_cluster());
    suite(&url, "cluster").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_partitions_spread_four_per_master_of_three() {
    let (url, _private) = testkit::cluster_url().await;
    let pool = RedisPool::open(&url, 8).unwrap();
    let ns = testkit::unique_name("modes-spread");
    let q = make::<u32>(&pool, &ns, "spread", 3);
    let payloads: Vec<u32> = (0..120).collect();
    q.enqueue_batch(&payloads).await.unwrap();
    let per_master = keys_per_master(&pool, &ns).await;
    println!("keys per master: {per_master:?}");
    assert_eq!(per_master.len(), 3, "3 masters: {per_master:?}");
    let total: usize = per_master.iter().map(|(_, n)| n).sum();
    assert_eq!(total, usize::from(PARTITIONS), "one stream per partition");
    // The partitions' tags are spread over the slot space (queue::slot), and
    // `redis-cli --cluster create` gives each master a third of it: 4 streams each.
    for (node, n) in &per_master {
        assert_eq!(*n, 4, "master {node:?}: {per_master:?}");
    }
    assert_eq!(q.stats().await.unwrap().backlog, 120);
    cleanup(&pool, &ns).await;
}
