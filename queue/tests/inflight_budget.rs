//! `WorkerConfig::max_inflight_bytes` against the real Redis: a worker of 4 batches of 100 jobs
//! holds at most the budget of large jobs at once (measured in the handler: the payload bytes
//! of all batches running at the same moment), runs each job exactly once, and still reads full
//! batches of small jobs afterwards (the size estimate follows them down). With a large budget
//! the same jobs are held 100 at a time, so the bound is the budget's doing.

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use queue::{Handler, Job, Outcome, Queue, WorkerConfig};
use support::*;
use testkit::TestEnv;

const LARGE: usize = 50_000;
const BUDGET: usize = 512 * 1024;

/// Counts runs per job (the payload's number before `:`), and the most payload bytes and the
/// largest batch in handlers at one moment.
#[derive(Default)]
struct Meter {
    runs: Mutex<HashMap<u32, u32>>,
    now: Mutex<usize>,
    most: Mutex<usize>,
    largest_batch: Mutex<usize>,
}

#[derive(Clone, Default)]
struct Measured(Arc<Meter>);

impl Handler<String> for Measured {
    async fn handle(&self, jobs: Vec<Job<String>>) -> Vec<Outcome> {
        let bytes: usize = jobs.iter().map(|j| j.payload.len()).sum();
        {
            let mut now = self.0.now.lock().unwrap();
            *now += bytes;
            let mut most = self.0.most.lock().unwrap();
            *most = (*most).max(*now);
            let mut largest = self.0.largest_batch.lock().unwrap();
            *largest = (*largest).max(jobs.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut runs = self.0.runs.lock().unwrap();
        for job in &jobs {
            let n: u32 = job.payload.split(':').next().unwrap().parse().unwrap();
            *runs.entry(n).or_default() += 1;
        }
        *self.0.now.lock().unwrap() -= bytes;
        jobs.iter()
            .map(|_| Outcome::Done(serde_json::Value::Null))
            .collect()
    }
}

fn job(n: u32, bytes: usize) -> String {
    let mut s = format!("{n}:");
    s.push_str(&"x".repeat(bytes.saturating_sub(s.len())));
    s
}

/// Enqueues `count` jobs of `bytes` numbered from `from`, runs them through `meter`'s worker
/// and waits until each ran; returns after stopping the worker.
async fn run(
    q: &Queue<String>,
    meter: &Measured,
    config: WorkerConfig,
    from: u32,
    count: u32,
    bytes: usize,
) {
    let jobs: Vec<String> = (from..from + count).map(|n| job(n, bytes)).collect();
    for chunk in jobs.chunks(50) {
        q.enqueue_batch(chunk).await.unwrap();
    }
    let (token, task) = spawn_worker(q, meter.clone(), config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let runs = meter.0.runs.lock().unwrap();
            (from..from + count)
                .filter(|n| runs.contains_key(n))
                .count()
        };
        if done == count as usize {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {count} jobs ran in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(token, task).await;
}

fn worker(consumer: &str, budget: usize) -> WorkerConfig {
    WorkerConfig {
        batch_size: 100,
        concurrency: 4,
        max_inflight_bytes: budget,
        ..fast_worker(consumer)
    }
}

#[tokio::test]
async fn large_jobs_are_held_within_the_byte_budget_and_small_ones_still_fill_batches() {
    init_tracing();
    let env = TestEnv::new("queue_inflight_budget").await;
    let q = queue::<String>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.partitions = 4
    });

    let bounded = Measured::default();
    run(&q, &bounded, worker("bounded", BUDGET), 0, 240, LARGE).await;
    let most = *bounded.0.most.lock().unwrap();
    println!("budget {BUDGET}: at most {most} payload bytes in handlers at once");
    assert!(
        most <= BUDGET,
        "{most} bytes of jobs held at once, over {BUDGET}"
    );
    assert!(
        most >= 4 * LARGE,
        "{most}: the budget still lets several jobs run together"
    );
    // Small jobs afterwards, on the same kind of worker: the estimate comes down to their
    // size within a few reads, so reads ask for whole batches again.
    run(&q, &bounded, worker("bounded-2", BUDGET), 1000, 3000, 100).await;
    let largest = *bounded.0.largest_batch.lock().unwrap();
    assert_eq!(
        largest, 100,
        "small jobs fill the batch size under the budget"
    );
    let runs = bounded.0.runs.lock().unwrap().clone();
    let not_once: Vec<_> = runs.iter().filter(|(_, r)| **r != 1).collect();
    assert_eq!(runs.len(), 3240, "every job ran");
    assert!(
        not_once.is_empty(),
        "jobs not run exactly once: {not_once:?}"
    );

    // The same large jobs under a 64 MiB budget: a read takes 100 of them at once.
    let unbounded = Measured::default();
    run(
        &q,
        &unbounded,
        worker("unbounded", 64 << 20),
        5000,
        240,
        LARGE,
    )
    .await;
    let most = *unbounded.0.most.lock().unwrap();
    println!("budget 64 MiB: at most {most} payload bytes in handlers at once");
    assert!(
        most >= 100 * LARGE,
        "{most}: without a tight budget, whole batches of large jobs"
    );
}
