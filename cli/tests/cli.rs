//! The real `conveyor` binary against the real Redis, next to a real worker (the queue
//! library's, in this process): a dead letter made on purpose is listed, `dead retry` makes it
//! run once more (runs counted per job id), `stats --json` (once and with --watch) agrees with
//! the library's stats, `enqueue --json` / `pause` / `resume` act on the workers, and every bad
//! request exits non-zero with a clear message.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use queue::{CancellationToken, Handler, Job, Outcome, Queue, QueueConfig, Worker, WorkerConfig};
use serde_json::{json, Value};
use testkit::TestEnv;

/// Runs `conveyor` with the test's Redis and namespace (bounded: the commands used here return
/// at once or after `--count` prints).
fn conveyor(env: &TestEnv, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(args)
        .env("REDIS_URL", &env.redis_url)
        .env("QUEUE_NAMESPACE", &env.namespace)
        .output()
        .expect("conveyor runs");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .find("panicked")
            .is_none(),
        "conveyor {args:?} panicked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `conveyor` and expects success; returns its standard output.
fn ok(env: &TestEnv, args: &[&str]) -> String {
    let out = conveyor(env, args);
    assert!(
        out.status.success(),
        "conveyor {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Counts runs per job id; fails every job (dead at once) while `fail` is set.
#[derive(Clone, Default)]
struct Counting {
    runs: Arc<Mutex<HashMap<String, usize>>>,
    payloads: Arc<Mutex<Vec<Value>>>,
    fail: Arc<AtomicBool>,
}

impl Handler<Value> for Counting {
    async fn handle(&self, jobs: Vec<Job<Value>>) -> Vec<Outcome> {
        let mut runs = self.runs.lock().unwrap();
        jobs.iter()
            .map(|j| {
                *runs.entry(j.id.0.clone()).or_insert(0) += 1;
                self.payloads.lock().unwrap().push(j.payload.clone());
                match self.fail.load(Ordering::SeqCst) {
                    true => Outcome::Dead {
                        reason: format!("refused {}", j.payload),
                    },
                    false => Outcome::Done(Value::Null),
                }
            })
            .collect()
    }
}

impl Counting {
    fn runs_of(&self, id: &str) -> usize {
        self.runs.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

fn start_worker(q: &Queue<Value>, h: Counting) -> CancellationToken {
    let token = CancellationToken::new();
    let config = WorkerConfig {
        consumer: "cli-test-worker".into(),
        block: Duration::from_millis(200),
        lease: Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    tokio::spawn(Worker::new(q.clone(), h, config).run(token.clone()));
    token
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_shown_and_retried_once_by_the_cli() {
    let env = TestEnv::new("cli_dead").await;
    let q: Queue<Value> = Queue::new(env.redis.clone(), QueueConfig::new(&env.namespace, "jobs"));
    let h = Counting::default();
    h.fail.store(true, Ordering::SeqCst);
    let token = start_worker(&q, h.clone());
    let id = q.enqueue(&json!({"order": 7})).await.unwrap().0;
    let other = q.enqueue(&json!({"order": 8})).await.unwrap().0;
    wait_until("two dead letters", || h.runs.lock().unwrap().len() == 2).await;
    let start = Instant::now();
    while q.stats().await.unwrap().dead < 2 {
        assert!(start.elapsed() < Duration::from_secs(5), "dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let listed: Value =
        serde_json::from_str(&ok(&env, &["dead", "list", "jobs", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let mine = listed.iter().find(|d| d["job_id"] == id.as_str()).unwrap();
    assert_eq!(mine["error"], r#"refused {"order":7}"#);
    assert_eq!(mine["attempts"], 1);
    assert_eq!(mine["payload"], json!({"order": 7}));
    let table = ok(&env, &["dead", "list", "jobs"]);
    assert!(table.starts_with("HANDLE"), "{table}");
    assert!(table.contains(&id) && table.contains("refused"), "{table}");
    let shown = ok(&env, &["dead", "show", "jobs", &id]);
    assert!(shown.contains(r#"payload:  {"order":7}"#), "{shown}");

    h.fail.store(false, Ordering::SeqCst);
    let retried = ok(&env, &["dead", "retry", "jobs", &id]);
    assert!(
        retried.contains(&format!("retried dead letter of job {id}")),
        "{retried}"
    );
    wait_until("the retried job ran", || h.runs_of(&id) == 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.runs_of(&id), 2, "one failed run + one retried run");
    assert_eq!(h.runs_of(&other), 1, "the other letter was not retried");
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead, stats.backlog, stats.pending), (1, 0, 0));

    // Retrying it again is refused (exit 2), by job id and by a made-up handle.
    let again = conveyor(&env, &["dead", "retry", "jobs", &id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no dead letter"));
    assert_eq!(
        conveyor(&env, &["dead", "delete", "jobs", "0/1-1"])
            .status
            .code(),
        Some(2)
    );

    // The other one, by its handle from `dead list`.
    let handle = format!(
        "0/{}",
        listed
            .iter()
            .find(|d| d["job_id"] == other.as_str())
            .unwrap()["entry_id"]
            .as_str()
            .unwrap()
    );
    let deleted: Value =
        serde_json::from_str(&ok(&env, &["dead", "delete", "jobs", &handle, "--json"])).unwrap();
    assert_eq!(deleted, json!({"deleted": 1, "job": other}));
    assert_eq!(q.stats().await.unwrap().dead, 0);
    assert_eq!(h.runs_of(&other), 1, "a deleted letter never runs again");
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_json_agrees_with_the_library_and_watch_repeats_it() {
    let env = TestEnv::new("cli_stats").await;
    let mut config = QueueConfig::new(&env.namespace, "jobs");
    config.partitions = 3;
    let q: Queue<Value> = Queue::new(env.redis.clone(), config);
    q.check_partitions().await.unwrap();
    q.enqueue_batch(&(0..7).map(|n| json!(n)).collect::<Vec<_>>())
        .await
        .unwrap();
    q.enqueue_in(&json!("later"), Duration::from_secs(600))
        .await
        .unwrap();
    q.dead_letter(&json!("gone"), "given up").await.unwrap();
    let library = serde_json::to_value(q.stats().await.unwrap()).unwrap();
    assert_eq!(library["backlog"], 7);

    let once: Value = serde_json::from_str(&ok(&env, &["stats", "jobs", "--json"])).unwrap();
    assert_eq!(once["stats"], library);
    assert_eq!(once["partitions"], 3);
    let parts = once["by_partition"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    let sum: u64 = parts.iter().map(|p| p["backlog"].as_u64().unwrap()).sum();
    assert_eq!(sum, 7);

    let watched = ok(
        &env,
        &[
            "stats",
            "--watch",
            "--interval",
            "100ms",
            "--count",
            "3",
            "--json",
        ],
    );
    let lines: Vec<&str> = watched.lines().collect();
    assert_eq!(lines.len(), 3, "{watched}");
    for line in lines {
        let rows: Value = serde_json::from_str(line).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["queue"] == "jobs")
            .unwrap();
        assert_eq!(row["stats"], library);
    }
    let queues: Value = serde_json::from_str(&ok(&env, &["queues", "--json"])).unwrap();
    assert_eq!(queues[0]["queue"], "jobs");
    assert_eq!(queues[0]["stats"], library);
    let table = ok(&env, &["stats", "jobs"]);
    assert!(
        table.contains("all        7        0        1        1"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_pause_resume_and_workers_through_the_cli() {
    let env = TestEnv::new("cli_pause").await;
    let q: Queue<Value> = Queue::new(env.redis.clone(), QueueConfig::new(&env.namespace, "jobs"));
    let h = Counting::default();
    let token = start_worker(&q, h.clone());
    let id = ok(&env, &["enqueue", "jobs", "--json", r#"{"hello":"world"}"#]);
    let id = id.trim();
    wait_until("the enqueued job ran", || h.runs_of(id) == 1).await;
    assert_eq!(h.payloads.lock().unwrap()[0], json!({"hello": "world"}));
    let workers: Value = serde_json::from_str(&ok(&env, &["workers", "jobs", "--json"])).unwrap();
    assert_eq!(workers[0]["name"], "cli-test-worker");
    assert_eq!(workers[0]["live"], true);

    assert!(ok(&env, &["pause", "jobs"]).contains("paused"));
    assert!(q.is_paused().await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = ok(&env, &["enqueue", "jobs", "--json", "2"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(h.runs_of(later.trim()), 0, "a paused queue runs nothing");
    let paused: Value = serde_json::from_str(&ok(&env, &["queues", "--json"])).unwrap();
    assert_eq!(paused[0]["paused"], true);
    assert_eq!(paused[0]["stats"]["backlog"], 1);
    ok(&env, &["resume", "jobs"]);
    wait_until("the job ran after resume", || h.runs_of(later.trim()) == 1).await;
    token.cancel();
}

#[tokio::test]
async fn bad_requests_exit_non_zero_with_a_clear_message() {
    let env = TestEnv::new("cli_errors").await;
    let cases: [(&[&str], i32, &str); 5] = [
        (&["stats", "nosuch"], 2, "no queue \"nosuch\""),
        (&["dead", "list", "nosuch"], 2, "no queue"),
        (&["enqueue", "jobs", "--json", "{not json"], 2, "not JSON"),
        (&["dead", "retry", "jobs"], 2, "--all"),
        (&["purge", "jobs", "everything"], 2, "unknown purge target"),
    ];
    for (args, code, says) in cases {
        let out = conveyor(&env, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let unreachable = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["queues"])
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("not reachable"));
}
