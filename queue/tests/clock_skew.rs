//! Issue 15, finding 8 (promotion): delayed jobs are due by Redis's clock (`TIME`), the clock
//! `retry.lua` schedules them with — never the worker's. A worker whose clock is an hour behind
//! Redis's still runs a retry after its delay (not an hour late), and one an hour ahead does not
//! run it early. The skew is this test process's (`queue::skew_clock_for_tests`), so this test
//! has a binary of its own.

use crate::support;

use std::time::{Duration, Instant};

use queue::{Job, JobId, Outcome, Queue};
use support::*;
use testkit::TestEnv;

const HOUR_MS: i64 = 3_600_000;

/// Retries attempt 1 after the payload's milliseconds; attempt 2 is done.
fn retry_once(job: &Job<u64>) -> Outcome {
    match job.attempt {
        1 => Outcome::Retry {
            error: "once more".into(),
            after: Some(Duration::from_millis(job.payload)),
        },
        _ => Outcome::Done(serde_json::Value::Null),
    }
}

/// Start times of the runs of `id` once there are two, or what there is after `within`.
async fn two_runs(rec: &Recorder<u64>, id: &JobId, within: Duration) -> Vec<Instant> {
    let start = Instant::now();
    loop {
        let runs: Vec<Instant> = rec
            .started
            .lock()
            .unwrap()
            .iter()
            .filter(|s| &s.id == id)
            .map(|s| s.at)
            .collect();
        if runs.len() >= 2 || start.elapsed() > within {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_worker_with_a_skewed_clock_runs_retries_on_redis_time() {
    let env = TestEnv::new("clock_skew").await;
    let q: Queue<u64> = queue(env.redis.clone(), &env.namespace, "skew", |_| {});
    let rec = Recorder::new(Duration::ZERO, retry_once);
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("skewed"));

    // An hour behind Redis: the retry (due 300 ms after the first run, by Redis's clock) runs.
    queue::skew_clock_for_tests(-HOUR_MS);
    let behind = q.enqueue(&300).await.expect("enqueue");
    let runs = two_runs(&rec, &behind, Duration::from_secs(10)).await;
    assert_eq!(
        runs.len(),
        2,
        "a worker an hour behind Redis ran the retry within 10 s (runs: {})",
        runs.len()
    );
    let gap = runs[1] - runs[0];
    assert!(gap >= Duration::from_millis(250), "not early: {gap:?}");

    // An hour ahead: the retry due 1.5 s after the first run does not run at once.
    queue::skew_clock_for_tests(HOUR_MS);
    let ahead = q.enqueue(&1500).await.expect("enqueue");
    let runs = two_runs(&rec, &ahead, Duration::from_secs(10)).await;
    assert_eq!(runs.len(), 2, "the retry ran within 10 s");
    let gap = runs[1] - runs[0];
    assert!(
        gap >= Duration::from_millis(1400),
        "a worker an hour ahead of Redis ran a retry due in 1.5 s after {gap:?}"
    );
    queue::skew_clock_for_tests(0);
    stop(token, task).await;
    // Each job ran exactly twice (its first attempt and its one retry).
    for id in [behind, ahead] {
        let n = rec
            .started
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.id == id)
            .count();
        assert_eq!(n, 2, "runs of {id}");
    }
}
