//! `Job::reply_wanted` against the real Redis: true exactly for jobs a caller waits for
//! (`enqueue_and_wait`), and kept when such a job goes through the delayed set (a `Wait`), so a
//! handler may skip building results for every other job without starving a waiting caller.

use crate::support;

use std::sync::Mutex;
use std::time::Duration;

use queue::{Handler, Job, Outcome};
use support::*;
use testkit::TestEnv;

/// Records `(payload, attempt, reply_wanted)` per run; the payload "wait-once" answers `Wait`
/// on its first run. Answers `Done(payload)` only when a reply is wanted, `Done(null)` otherwise
/// — what the message worker does.
#[derive(Default)]
struct Records(Mutex<Vec<(String, bool)>>);

struct Recorder(std::sync::Arc<Records>);

impl Handler<String> for Recorder {
    async fn handle(&self, jobs: Vec<Job<String>>) -> Vec<Outcome> {
        let mut seen = self.0 .0.lock().unwrap();
        jobs.iter()
            .map(|job| {
                let first_run = !seen.iter().any(|(p, _)| *p == job.payload);
                seen.push((job.payload.clone(), job.reply_wanted));
                if job.payload == "wait-once" && first_run {
                    Outcome::Wait {
                        reason: "dependency down".into(),
                        after: Duration::from_millis(20),
                    }
                } else if job.reply_wanted {
                    Outcome::Done(serde_json::json!(job.payload))
                } else {
                    Outcome::Done(serde_json::Value::Null)
                }
            })
            .collect()
    }
}

#[tokio::test]
async fn reply_wanted_marks_exactly_the_jobs_a_caller_waits_for() {
    init_tracing();
    let env = TestEnv::new("queue_reply_flag").await;
    let q = queue::<String>(env.redis.clone(), &env.namespace, "jobs", |_| {});
    let records = std::sync::Arc::new(Records::default());
    let (token, task) = spawn_worker(&q, Recorder(records.clone()), fast_worker("w1"));

    q.enqueue(&"fire-and-forget".to_string()).await.unwrap();
    let answer: String = q
        .enqueue_and_wait(&"waited".to_string(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answer, "waited");
    // Waited for, and handed back once through the delayed set before it completes.
    let answer: String = q
        .enqueue_and_wait(&"wait-once".to_string(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answer, "wait-once");
    stop(token, task).await;

    let seen = records.0.lock().unwrap().clone();
    let flags = |payload: &str| -> Vec<bool> {
        seen.iter()
            .filter(|(p, _)| p == payload)
            .map(|(_, r)| *r)
            .collect()
    };
    assert_eq!(flags("fire-and-forget"), vec![false], "{seen:?}");
    assert_eq!(flags("waited"), vec![true], "{seen:?}");
    assert_eq!(
        flags("wait-once"),
        vec![true, true],
        "the flag survives the delayed set: {seen:?}"
    );
}
