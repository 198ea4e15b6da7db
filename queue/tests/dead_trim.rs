//! Dead-letter streams stay bounded: past `dead_letter_max` per partition the oldest dead letters
//! are trimmed in the same script that adds one, and every trimmed entry is counted, so
//! `dead + dead_trimmed` is exactly the number of jobs that died (counted, not estimated).

use crate::support;

use std::time::Duration;

use queue::Outcome;
use support::*;
use testkit::TestEnv;

#[tokio::test]
async fn dead_letters_are_trimmed_to_the_limit_and_every_trimmed_one_is_counted() {
    init_tracing();
    let env = TestEnv::new("queue_dead_trim").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "doomed", |c| {
        c.partitions = 2;
        c.dead_letter_max = 150;
    });
    let rec = Recorder::<u32>::new(Duration::ZERO, |job| Outcome::Dead {
        reason: format!("job {} refused", job.payload),
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    let jobs: Vec<u32> = (0..1_500).collect();
    for chunk in jobs.chunks(300) {
        q.enqueue_batch(chunk).await.unwrap();
    }
    rec.wait_finished(jobs.len(), Duration::from_secs(30)).await;
    // Queue::dead_letter files more through the same trimming script (partition 0).
    for n in 0..200u32 {
        q.dead_letter(&(10_000 + n), "filed by hand").await.unwrap();
    }
    stop(token, task).await;

    let stats = q.stats().await.unwrap();
    let died = (jobs.len() + 200) as u64;
    assert_eq!(stats.dead + stats.dead_trimmed, died, "{stats:?}");
    assert!(stats.dead_trimmed > 0, "{stats:?}");
    // Approximate trimming removes whole stream nodes (100 entries by default): each partition
    // keeps at least the limit and less than a node more.
    for p in 0..2u16 {
        let len = testkit::xlen(&env.redis, &q.keys().dead(p)).await;
        assert!((150..250).contains(&len), "partition {p} keeps {len}");
    }
    // The newest survive: the last hand-filed letter is still readable.
    let newest = q.dead_letters(1).await.unwrap();
    assert_eq!(newest[0].payload, serde_json::json!(10_199));
    assert_eq!(newest[0].error, "filed by hand");
}

#[tokio::test]
async fn a_limit_of_zero_keeps_every_dead_letter() {
    let env = TestEnv::new("queue_dead_keep").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "kept", |c| {
        c.dead_letter_max = 0;
    });
    for n in 0..450u32 {
        q.dead_letter(&n, "kept").await.unwrap();
    }
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead, stats.dead_trimmed), (450, 0));
}
