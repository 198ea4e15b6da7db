//! The trace context travels in the job against the real Redis: whatever way a job is enqueued
//! (one job with `EnqueueOptions::trace`, a batch sharing one context, the coalescer with one
//! per caller, a request/reply job), its handler sees the `traceparent` it was enqueued with, on
//! every attempt (retries and waits keep it); a job enqueued without one, and an entry written
//! without the field (as older releases wrote them), reads as `None`.

use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use queue::{Coalescer, EnqueueOptions, Outcome};
use support::*;
use testkit::TestEnv;

const A: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const B: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const C: &str = "00-11111111111111111111111111111111-2222222222222222-00";
const D: &str = "00-33333333333333333333333333333333-4444444444444444-01";

/// Every run of every job: payload → [(attempt, trace)], in the order they ran.
type Runs = Arc<Mutex<BTreeMap<u32, Vec<(u32, Option<String>)>>>>;

#[tokio::test]
async fn a_job_carries_its_trace_context_through_every_enqueue_path_and_every_attempt() {
    init_tracing();
    let env = TestEnv::new("queue_trace").await;
    let q = queue::<u32>(env.redis.clone(), &env.namespace, "traced", |_| {});
    let traced = |trace: &str| EnqueueOptions {
        trace: Some(trace.to_string()),
        ..EnqueueOptions::default()
    };
    // Before any worker runs: one job, a batch, the coalescer (two callers in one round trip,
    // one with a context and one without), a plain job, and a raw entry without the field.
    q.enqueue_with(&1, traced(A)).await.unwrap();
    q.enqueue_batch_traced(&[(None, None, 2), (None, Some("job-3".into()), 3)], Some(B))
        .await
        .unwrap();
    let coalescer = Coalescer::new(q.clone(), 10, 1);
    let (c4, c5) = tokio::join!(
        coalescer.enqueue_traced(4, None, None, Some(C.to_string())),
        coalescer.enqueue_traced(5, None, None, None),
    );
    c4.unwrap();
    c5.unwrap();
    q.enqueue(&6).await.unwrap();
    let mut conn = env.redis.get().await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(stream_key(&env.namespace, "traced", 0))
        .arg("*")
        .arg(&[
            "id",
            "legacy-7",
            "payload",
            "7",
            "attempt",
            "1",
            "enqueued_at",
            "0",
        ])
        .query_async(&mut conn)
        .await
        .unwrap();

    let runs: Runs = Arc::default();
    let seen = runs.clone();
    // Job 1 fails once (a retry), job 2 waits once (a wait): both come back as new entries.
    let rec = Recorder::<u32>::new(Duration::ZERO, move |job| {
        let mut seen = seen.lock().unwrap();
        let mine = seen.entry(job.payload).or_default();
        mine.push((job.attempt, job.trace.clone()));
        match (job.payload, mine.len()) {
            (1, 1) => Outcome::Retry {
                error: "first try fails".into(),
                after: Some(Duration::from_millis(20)),
            },
            (2, 1) => Outcome::Wait {
                reason: "dependency down".into(),
                after: Duration::from_millis(20),
            },
            (p, _) => Outcome::Done(serde_json::json!(p)),
        }
    });
    let (token, task) = spawn_worker(&q, rec.clone(), fast_worker("w1"));
    // A request/reply job carries its context too.
    let value: u32 = q
        .enqueue_and_wait_with(&8, traced(D), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(value, 8);
    // 8 jobs, 10 runs (one retry, one wait); then a moment for any run too many to show.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while runs.lock().unwrap().values().map(Vec::len).sum::<usize>() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "runs: {:?}",
            runs.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(token, task).await;

    let runs = runs.lock().unwrap().clone();
    let t = |s: &str| Some(s.to_string());
    let expected: BTreeMap<u32, Vec<(u32, Option<String>)>> = BTreeMap::from([
        (1, vec![(1, t(A)), (2, t(A))]),
        (2, vec![(1, t(B)), (1, t(B))]),
        (3, vec![(1, t(B))]),
        (4, vec![(1, t(C))]),
        (5, vec![(1, None)]),
        (6, vec![(1, None)]),
        (7, vec![(1, None)]),
        (8, vec![(1, t(D))]),
    ]);
    assert_eq!(runs, expected, "runs per job: (attempt, trace)");
}
