//! Time against the real Redis: delayed jobs run on time (not early, within 200 ms), and a
//! recurring job run by three concurrent schedulers is enqueued exactly once per occurrence.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use queue::{CancellationToken, Recurring};
use support::*;
use testkit::TestEnv;

#[tokio::test]
async fn delayed_jobs_do_not_run_early_and_run_within_200_ms_of_their_time() {
    init_tracing();
    let env = TestEnv::new("queue_delayed").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "later", |c| {
        c.partitions = 2
    });
    let rec = Recorder::<u32>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    let now = SystemTime::now();
    let mut due = HashMap::new();
    for (i, ms) in [300u64, 700, 1100, 1500].into_iter().enumerate() {
        let at = now + Duration::from_millis(ms);
        q.enqueue_at(&(i as u32), at).await.unwrap();
        due.insert(i as u32, at);
    }
    q.enqueue_in(&99, Duration::from_millis(900)).await.unwrap();
    due.insert(99, now + Duration::from_millis(900));
    assert_eq!(q.stats().await.unwrap().delayed, 5);
    // A job whose time has passed runs at once.
    q.enqueue_at(&100, now - Duration::from_secs(1))
        .await
        .unwrap();
    due.insert(100, now);

    rec.wait_finished(6, Duration::from_secs(4)).await;
    for s in rec.finished() {
        let at = due[&s.payload];
        let late = s
            .wall
            .duration_since(at)
            .unwrap_or_else(|e| panic!("job {} ran {:?} early", s.payload, e.duration()));
        assert!(
            late <= Duration::from_millis(200),
            "job {} ran {late:?} late",
            s.payload
        );
    }
    assert_eq!(q.stats().await.unwrap().delayed, 0);
    stop(token, task).await;
}

#[tokio::test]
async fn a_recurring_job_with_three_schedulers_runs_exactly_once_per_occurrence() {
    init_tracing();
    let env = TestEnv::new("queue_recurring").await;
    let every = Duration::from_millis(250);
    let rec = Recorder::<u64>::ok(Duration::ZERO);
    let q = queue::<u64>(env.redis.clone(), &env.namespace, "ticks", |c| {
        c.partitions = 3
    });
    let (wtoken, wtask) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    let stop_schedulers = CancellationToken::new();
    let mut schedulers = Vec::new();
    for _ in 0..3 {
        // Each scheduler has its own pool, as separate processes would.
        let pool = testkit::redis_pool(&env.redis_url);
        let q = queue::<u64>(pool, &env.namespace, "ticks", |c| c.partitions = 3);
        let r = Recurring::new(q, "tick", every, |n| n);
        schedulers.push(tokio::spawn(r.run(stop_schedulers.clone())));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    stop_schedulers.cancel();
    for s in schedulers {
        s.await.unwrap().unwrap();
    }
    let ran = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let occurrences: Vec<u64> = rec.finished().iter().map(|s| s.payload).collect();
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for n in &occurrences {
        *counts.entry(*n).or_default() += 1;
    }
    assert!(
        counts.values().all(|c| *c == 1),
        "an occurrence ran twice: {counts:?}"
    );
    let expected = (ran.as_millis() / every.as_millis()) as usize;
    assert!(
        occurrences.len() + 1 >= expected && occurrences.len() <= expected + 1,
        "{} occurrences in {ran:?} (expected about {expected})",
        occurrences.len()
    );
    let (lo, hi) = (counts.keys().min().unwrap(), counts.keys().max().unwrap());
    assert_eq!(
        (hi - lo + 1) as usize,
        counts.len(),
        "no occurrence skipped: {counts:?}"
    );
    stop(wtoken, wtask).await;
}
