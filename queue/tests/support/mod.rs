//! Helpers shared by the queue's integration tests: a recording handler whose behaviour each
//! test chooses, worker start-up, and Redis assertions (stream lengths, pending counts).

pub mod load;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use queue::{
    CancellationToken, Handler, Job, JobId, Outcome, Queue, QueueConfig, Worker, WorkerConfig,
};

/// The one-node pool of these tests (testkit's, for the shared Redis or a private server);
/// `Queue::new` takes it as it is.
pub type Pool = deadpool_redis::Pool;
use redis::streams::{StreamInfoGroupsReply, StreamRangeReply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinHandle;

/// What a handler saw of one job.
#[derive(Clone, Debug)]
pub struct Seen<T> {
    pub id: JobId,
    pub payload: T,
    pub attempt: u32,
    pub partition: u16,
    pub at: Instant,
    pub wall: SystemTime,
}

type Decide<T> = Arc<dyn Fn(&Job<T>) -> Outcome + Send + Sync>;

/// Records every job it gets (on entry and on completion), sleeps `delay`, then answers with
/// `decide(job)` for each job.
#[derive(Clone)]
pub struct Recorder<T> {
    pub started: Arc<Mutex<Vec<Seen<T>>>>,
    pub finished: Arc<Mutex<Vec<Seen<T>>>>,
    decide: Decide<T>,
    delay: Duration,
}

impl<T: Clone + Send + Sync + 'static> Recorder<T> {
    pub fn new(
        delay: Duration,
        decide: impl Fn(&Job<T>) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        Recorder {
            started: Arc::default(),
            finished: Arc::default(),
            decide: Arc::new(decide),
            delay,
        }
    }

    /// Answers `Done(null)` for every job.
    pub fn ok(delay: Duration) -> Self {
        Self::new(delay, |_| Outcome::Done(serde_json::Value::Null))
    }

    pub fn finished(&self) -> Vec<Seen<T>> {
        self.finished.lock().unwrap().clone()
    }

    pub fn started_count(&self) -> usize {
        self.started.lock().unwrap().len()
    }

    pub fn finished_ids(&self) -> HashSet<JobId> {
        self.finished
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.id.clone())
            .collect()
    }

    /// Waits until `n` distinct jobs finished, or panics after `timeout`.
    pub async fn wait_finished(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        while self.finished_ids().len() < n {
            assert!(
                start.elapsed() < timeout,
                "only {} of {n} jobs finished within {timeout:?}",
                self.finished_ids().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn seen<T: Clone>(job: &Job<T>) -> Seen<T> {
    Seen {
        id: job.id.clone(),
        payload: job.payload.clone(),
        attempt: job.attempt,
        partition: job.partition,
        at: Instant::now(),
        wall: SystemTime::now(),
    }
}

impl<T: Clone + Send + Sync + 'static> Handler<T> for Recorder<T> {
    async fn handle(&self, jobs: Vec<Job<T>>) -> Vec<Outcome> {
        self.started.lock().unwrap().extend(jobs.iter().map(seen));
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let outcomes = jobs.iter().map(|j| (self.decide)(j)).collect();
        self.finished.lock().unwrap().extend(jobs.iter().map(seen));
        outcomes
    }
}

/// Takes jobs and never finishes them (a worker that hangs, then is killed); counts what it took.
pub struct Hang(pub Arc<AtomicUsize>);

impl Handler<u32> for Hang {
    async fn handle(&self, jobs: Vec<Job<u32>>) -> Vec<Outcome> {
        self.0.fetch_add(jobs.len(), Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Vec::new()
    }
}

/// Starts a [`Hang`] worker on a runtime of its own, with its own pool, on queue `name` of
/// namespace `ns` at `redis_url`. Shutting the returned runtime down stops every task of that
/// worker at once, heartbeat included — like a killed process. Also returns the count of jobs it
/// took.
pub fn spawn_doomed_worker(
    redis_url: &str,
    ns: &str,
    name: &str,
    tweak: impl FnOnce(&mut QueueConfig) + Send + 'static,
    config: WorkerConfig,
) -> (tokio::runtime::Runtime, Arc<AtomicUsize>) {
    let taken = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, ns, name, counter) = (
        redis_url.to_string(),
        ns.to_string(),
        name.to_string(),
        taken.clone(),
    );
    runtime.spawn(async move {
        let pool = testkit::redis_pool(&url);
        let q = queue::<u32>(pool, &ns, &name, tweak);
        let _ = Worker::new(q, Hang(counter), config)
            .run(CancellationToken::new())
            .await;
    });
    (runtime, taken)
}

/// Waits until `taken` reaches `n`, or panics after `timeout`.
pub async fn wait_taken(taken: &AtomicUsize, n: usize, timeout: Duration) {
    let start = Instant::now();
    while taken.load(Ordering::SeqCst) < n {
        assert!(
            start.elapsed() < timeout,
            "the doomed worker took too little"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the streams of queue `name` really hold, counted entry by entry and summed over
/// `partitions`: `(waiting, pending)`. Waiting = the entries after the `workers` group's
/// last-delivered id (`XRANGE (<id> +`), the definition of "not yet delivered"; pending = the
/// group's pending list. No derived counter of Redis is trusted.
pub async fn waiting_and_pending(pool: &Pool, ns: &str, name: &str, partitions: u16) -> (u64, u64) {
    let mut conn = pool.get().await.unwrap();
    let (mut waiting, mut pending) = (0, 0);
    for p in 0..partitions {
        let key = stream_key(ns, name, p);
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !exists {
            continue;
        }
        let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let from = match groups.groups.iter().find(|g| g.name == queue::GROUP) {
            Some(g) => {
                pending += g.pending as u64;
                format!("({}", g.last_delivered_id)
            }
            None => "-".to_string(),
        };
        let after: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg(&from)
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        waiting += after.ids.len() as u64;
    }
    (waiting, pending)
}

/// Short timings so tests stay fast: lease 1 s, block 200 ms.
pub fn fast_worker(consumer: &str) -> WorkerConfig {
    WorkerConfig {
        consumer: consumer.to_string(),
        batch_size: 50,
        lease: Duration::from_secs(1),
        block: Duration::from_millis(200),
        shutdown_deadline: Duration::from_secs(5),
        ..WorkerConfig::default()
    }
}

/// A pool of `size` connections on a private test cluster, each command bounded by `timeout`.
pub fn cluster_pool(
    cluster: &testkit::RedisCluster,
    size: usize,
    timeout: Duration,
) -> queue::RedisPool {
    let seeds = cluster
        .ports
        .iter()
        .map(|p| redis::IntoConnectionInfo::into_connection_info(format!("redis://127.0.0.1:{p}")))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    queue::RedisPool::cluster(seeds, size, Some(timeout)).unwrap()
}

/// A queue in the test's namespace.
pub fn queue<T>(
    pool: impl Into<queue::RedisPool>,
    ns: &str,
    name: &str,
    tweak: impl FnOnce(&mut QueueConfig),
) -> Queue<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let mut cfg = QueueConfig::new(ns, name);
    tweak(&mut cfg);
    Queue::new(pool, cfg)
}

/// Spawns a worker; returns its shutdown token and task.
pub fn spawn_worker<T, H>(
    queue: &Queue<T>,
    handler: H,
    config: WorkerConfig,
) -> (CancellationToken, JoinHandle<Result<(), queue::QueueError>>)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    let token = CancellationToken::new();
    let worker = Worker::new(queue.clone(), handler, config);
    let task = tokio::spawn(worker.run(token.clone()));
    (token, task)
}

/// Cancels a worker and waits for it to return.
pub async fn stop(token: CancellationToken, task: JoinHandle<Result<(), queue::QueueError>>) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("worker stops within 10 s")
        .expect("worker task does not panic")
        .expect("worker returns Ok");
}

/// `<ns>:{<name>:<p>}`: the stream key layout the crate documents.
pub fn stream_key(ns: &str, name: &str, p: u16) -> String {
    format!("{ns}:{{{name}:{p}}}")
}

/// Pending count of the `workers` group on `key` (0 if the group does not exist).
pub async fn pending(pool: &Pool, key: &str) -> u64 {
    let mut conn = pool.get().await.unwrap();
    let reply: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(key)
        .arg("workers")
        .query_async(&mut conn)
        .await;
    match reply {
        Ok(redis::Value::Array(items)) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "queue=info".into()),
        )
        .with_test_writer()
        .try_init();
}
