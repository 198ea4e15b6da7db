//! Pause / resume and purge against the real Redis: a paused queue's workers read nothing new
//! within one read timeout while their in-flight jobs finish; resume restarts them and nothing is
//! lost (each job runs once, counted per id). A purge needs its confirmation token and never
//! removes a job a worker holds.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use queue::admin::PurgeTarget;
use queue::{JobId, QueueError};
use support::*;
use testkit::TestEnv;

fn runs(rec: &Recorder<u32>) -> HashMap<JobId, usize> {
    let mut out = HashMap::new();
    for s in rec.finished() {
        *out.entry(s.id).or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn pause_stops_reading_in_flight_jobs_finish_and_resume_loses_nothing() {
    init_tracing();
    let env = TestEnv::new("admin_pause").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |c| {
        c.partitions = 2
    });
    let rec = Recorder::<u32>::ok(Duration::from_millis(600));
    let mut config = fast_worker("w1");
    config.batch_size = 5;
    let (token, task) = spawn_worker(&q, rec.clone(), config);
    let first = q.enqueue(&0).await.unwrap();
    let start = Instant::now();
    while rec.started_count() < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "first job started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    q.pause().await.unwrap();
    assert!(q.is_paused().await.unwrap());
    // The job in flight when the pause came finishes and settles.
    rec.wait_finished(1, Duration::from_secs(3)).await;
    // One read timeout (block 200 ms) plus the pause check (40 ms): no read after this.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = q
        .enqueue_batch(&(1..=40).collect::<Vec<_>>())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rec.started_count(), 1, "nothing read while paused");
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.backlog, stats.pending), (40, 0), "{stats:?}");

    q.resume().await.unwrap();
    assert!(!q.is_paused().await.unwrap());
    rec.wait_finished(41, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counted = runs(&rec);
    assert_eq!(counted.len(), 41);
    assert_eq!(counted[&first], 1);
    for id in &ids {
        assert_eq!(counted[id], 1, "job {id} ran once");
    }
    stop(token, task).await;
}

#[tokio::test]
async fn a_purge_needs_its_token_and_never_takes_a_held_job() {
    init_tracing();
    let env = TestEnv::new("admin_purge").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    // A consumer group with one held (delivered, unacked) entry, then ten waiting jobs.
    q.enqueue(&100).await.unwrap();
    let mut conn = env.redis.get().await.unwrap();
    let stream = stream_key(&env.namespace, "jobs", 0);
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("workers")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("holder")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    q.enqueue_batch(&(0..10).collect::<Vec<_>>()).await.unwrap();
    q.enqueue_in(&5, Duration::from_secs(600)).await.unwrap();
    q.dead_letter(&6, "given up").await.unwrap();

    let asked = q.purge_request(PurgeTarget::Waiting).await.unwrap();
    assert_eq!(asked.count, 10);
    let wrong = q.purge(PurgeTarget::Waiting, "not-the-token").await;
    assert!(matches!(wrong, Err(QueueError::Refused(_))), "{wrong:?}");
    let other_target = q.purge(PurgeTarget::Delayed, &asked.token).await;
    assert!(matches!(other_target, Err(QueueError::Refused(_))));
    assert_eq!(q.stats().await.unwrap().backlog, 10, "nothing purged");

    assert_eq!(
        q.purge(PurgeTarget::Waiting, &asked.token).await.unwrap(),
        10
    );
    let used = q.purge(PurgeTarget::Waiting, &asked.token).await;
    assert!(
        matches!(used, Err(QueueError::Refused(_))),
        "a token is used once"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backlog, stats.pending),
        (0, 1),
        "the held job stays: {stats:?}"
    );
    assert_eq!(
        waiting_and_pending(&env.redis, &env.namespace, "jobs", 1).await,
        (0, 1),
        "the stream holds exactly the held entry"
    );
    assert_eq!((stats.delayed, stats.dead), (1, 1));

    let asked = q.purge_request(PurgeTarget::Delayed).await.unwrap();
    assert_eq!(
        q.purge(PurgeTarget::Delayed, &asked.token).await.unwrap(),
        1
    );
    let asked = q.purge_request(PurgeTarget::Dead).await.unwrap();
    assert_eq!(asked.count, 1);
    assert_eq!(q.purge(PurgeTarget::Dead, &asked.token).await.unwrap(), 1);
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backlog, stats.pending, stats.delayed, stats.dead),
        (0, 1, 0, 0)
    );
}
