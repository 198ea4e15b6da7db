//! `Outcome::Wait` against the real Redis: a job whose dependency is down waits and runs again
//! with the same attempt number, however often, without being dead-lettered (neither by
//! `max_attempts` nor as poison), and its entry stays small while it waits.

use crate::support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use queue::{Handler, Job, Outcome};
use support::*;
use testkit::TestEnv;

/// Answers `Wait` for the first `waits` runs (alternating two reasons), then `after_waits`.
/// Records each run's attempt number, the delivery count Redis holds for the entry being run
/// (what poison detection reads) and the size of the job's delayed-set member while it waits.
struct Flaky {
    pool: Pool,
    stream: String,
    delayed: String,
    waits: u32,
    after_waits: fn(u32) -> Outcome,
    runs: AtomicU32,
    attempts: Mutex<Vec<u32>>,
    deliveries: Mutex<Vec<i64>>,
}

impl Flaky {
    fn new(pool: Pool, stream: String, waits: u32, after_waits: fn(u32) -> Outcome) -> Flaky {
        Flaky {
            pool,
            delayed: format!("{stream}:delayed"),
            stream,
            waits,
            after_waits,
            runs: AtomicU32::new(0),
            attempts: Mutex::default(),
            deliveries: Mutex::default(),
        }
    }

    /// Highest `times_delivered` among the stream's pending entries right now.
    async fn delivery_count(&self) -> i64 {
        let mut conn = self.pool.get().await.unwrap();
        let pending: Vec<(String, String, i64, i64)> = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg("workers")
            .arg("-")
            .arg("+")
            .arg(10)
            .query_async(&mut conn)
            .await
            .unwrap();
        pending.iter().map(|p| p.3).max().unwrap_or(0)
    }
}

/// The worker's handle on a [`Flaky`] the test keeps reading.
struct Runs(Arc<Flaky>);

impl Handler<String> for Runs {
    async fn handle(&self, jobs: Vec<Job<String>>) -> Vec<Outcome> {
        self.0.handle(jobs).await
    }
}

impl Flaky {
    async fn handle(&self, jobs: Vec<Job<String>>) -> Vec<Outcome> {
        let delivered = self.delivery_count().await;
        self.deliveries.lock().unwrap().push(delivered);
        let mut out = Vec::new();
        for job in jobs {
            self.attempts.lock().unwrap().push(job.attempt);
            let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            out.push(if run <= self.waits {
                let reason = if run % 2 == 0 {
                    "es down"
                } else {
                    "es timeout"
                };
                Outcome::Wait {
                    reason: reason.into(),
                    after: Duration::from_millis(15),
                }
            } else {
                (self.after_waits)(job.attempt)
            });
        }
        out
    }
}

/// Members of a delayed set (JSON field lists) as they are stored.
async fn delayed_members(pool: &Pool, key: &str) -> Vec<String> {
    let mut conn = pool.get().await.unwrap();
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_that_waits_twenty_times_is_processed_once_and_never_dead_lettered() {
    init_tracing();
    let env = TestEnv::new("queue_wait_done").await;
    let q = queue::<String>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.max_attempts = 3;
        c.backoff_base = Duration::from_millis(10);
    });
    let stream = stream_key(&env.namespace, "jobs", 0);
    let flaky = Arc::new(Flaky::new(env.redis.clone(), stream.clone(), 20, |_| {
        Outcome::Done(serde_json::json!("stored"))
    }));
    let (token, task) = spawn_worker(&q, Runs(flaky.clone()), fast_worker("w1"));
    let answer: String = q
        .enqueue_and_wait(&"message".to_string(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(answer, "stored");

    // Give a wrongly repeated run time to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(flaky.runs.load(Ordering::SeqCst), 21, "20 waits + 1 run");
    let attempts = flaky.attempts.lock().unwrap().clone();
    assert!(
        attempts.iter().all(|a| *a == 1),
        "waiting never uses an attempt: {attempts:?}"
    );
    let deliveries = flaky.deliveries.lock().unwrap().clone();
    assert!(
        deliveries.iter().all(|d| *d == 1),
        "each wait comes back as a fresh entry, delivered once (poison check sees 1): {deliveries:?}"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backlog, stats.pending, stats.delayed, stats.dead),
        (0, 0, 0, 0),
        "done once, nothing dead-lettered, nothing left behind"
    );
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    stop(token, task).await;
}

#[tokio::test]
async fn waiting_keeps_the_history_bounded_and_real_failures_still_count() {
    init_tracing();
    let env = TestEnv::new("queue_wait_history").await;
    let q = queue::<String>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.max_attempts = 3;
        c.backoff_base = Duration::from_millis(10);
    });
    let stream = stream_key(&env.namespace, "jobs", 0);
    let flaky = Arc::new(Flaky::new(env.redis.clone(), stream.clone(), 20, |a| {
        Outcome::Retry {
            error: format!("mapping rejected (attempt {a})"),
            after: None,
        }
    }));
    // Watch the delayed set while the job waits: its member (the whole entry) stays small.
    let delayed = flaky.delayed.clone();
    let pool = env.redis.clone();
    let watcher = tokio::spawn(async move {
        let mut biggest = 0usize;
        let mut seen = 0usize;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            for m in delayed_members(&pool, &delayed).await {
                let fields: Vec<String> = serde_json::from_str(&m).unwrap();
                let history = fields
                    .iter()
                    .position(|f| f == "history")
                    .map(|i| serde_json::from_str::<Vec<String>>(&fields[i + 1]).unwrap())
                    .unwrap_or_default();
                assert!(
                    history.len() <= 3,
                    "history grows while waiting: {history:?}"
                );
                biggest = biggest.max(m.len());
                seen += 1;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        (biggest, seen)
    });
    let (token, task) = spawn_worker(&q, Runs(flaky.clone()), fast_worker("w1"));
    let id = q.enqueue(&"message".to_string()).await.unwrap();
    let start = Instant::now();
    while q.stats().await.unwrap().dead < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        flaky.runs.load(Ordering::SeqCst),
        23,
        "20 waits, then exactly max_attempts (3) real attempts"
    );
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.job_id, id);
    assert_eq!(letter.attempts, 3);
    assert_eq!(
        letter.history,
        vec![
            "waiting: es down",
            "mapping rejected (attempt 1)",
            "mapping rejected (attempt 2)",
            "mapping rejected (attempt 3)",
        ],
        "20 waits leave one note (the latest reason)"
    );
    let (biggest, seen) = watcher.await.unwrap();
    assert!(seen > 0, "the watcher saw the job waiting");
    assert!(
        biggest < 400,
        "a waiting entry stays small: {biggest} bytes"
    );
    stop(token, task).await;
}
