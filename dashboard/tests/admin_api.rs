//! The admin API against the real Redis, with a real queue worker of the queue library: dead
//! letters made on purpose are listed with their error history and attempts; every POST without
//! an admin Bearer key (none, unknown, a read key, the admin key as Basic) is refused with
//! problem+json and changes nothing; bad input is a 4xx problem; a retry from the API makes the
//! job run exactly once more (runs counted per job id), delete removes one, retry all the rest;
//! pause stops the worker from reading and resume restarts it.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use queue::{CancellationToken, Handler, Job, JobId, Outcome, Queue, QueueConfig, Worker};
use serde_json::{json, Value};
use support::start_dashboard_with;
use testkit::TestEnv;

const ADMIN: &str = "admin-key-for-the-admin-api-test";
const READER: &str = "read-key-for-the-admin-api-test0";

/// Fails every job while `failing`; counts runs per job id.
#[derive(Clone, Default)]
struct Flaky {
    failing: Arc<AtomicBool>,
    runs: Arc<Mutex<HashMap<JobId, usize>>>,
}

impl Handler<Value> for Flaky {
    async fn handle(&self, jobs: Vec<Job<Value>>) -> Vec<Outcome> {
        let mut runs = self.runs.lock().unwrap();
        jobs.into_iter()
            .map(|job| {
                *runs.entry(job.id.clone()).or_insert(0) += 1;
                match self.failing.load(Ordering::SeqCst) {
                    true => Outcome::Retry {
                        error: format!("refused attempt {} of {}", job.attempt, job.payload),
                        after: None,
                    },
                    false => Outcome::Done(Value::Null),
                }
            })
            .collect()
    }
}

impl Flaky {
    fn runs_of(&self, id: &str) -> usize {
        let runs = self.runs.lock().unwrap();
        runs.get(&JobId(id.to_string())).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.runs.lock().unwrap().values().sum()
    }
}

async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a POST; returns status, headers and JSON body.
async fn post(
    http: &reqwest::Client,
    url: &str,
    auth: Option<String>,
    body: Option<&[u8]>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http.post(url);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_vec());
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn bearer(key: &str) -> Option<String> {
    Some(format!("Bearer {key}"))
}

fn assert_problem(got: &(u16, reqwest::header::HeaderMap, Value), status: u16, what: &str) {
    assert_eq!(got.0, status, "{what}: {}", got.2);
    assert_eq!(got.1["content-type"], "application/problem+json", "{what}");
    assert_eq!(got.2["status"], status, "{what}: {}", got.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_shown_and_only_an_admin_key_retries_deletes_pauses_and_resumes() {
    let env = TestEnv::new("dash_admin").await;
    let mut config = QueueConfig::new(&env.namespace, "jobs");
    config.partitions = 2;
    config.max_attempts = 2;
    config.backoff_base = Duration::from_millis(10);
    let q: Queue<Value> = Queue::new(env.redis.clone(), config);
    let handler = Flaky::default();
    handler.failing.store(true, Ordering::SeqCst);
    let worker_config = queue::WorkerConfig {
        consumer: "w1".into(),
        lease: Duration::from_secs(1),
        block: Duration::from_millis(200),
        shutdown_deadline: Duration::from_secs(5),
        ..queue::WorkerConfig::default()
    };
    let stop = CancellationToken::new();
    let worker =
        tokio::spawn(Worker::new(q.clone(), handler.clone(), worker_config).run(stop.clone()));
    let ids = q
        .enqueue_batch(&[json!({"n": 1}), json!({"n": 2}), json!({"n": 3})])
        .await
        .unwrap();
    until("three dead letters", Duration::from_secs(15), async || {
        q.stats().await.unwrap().dead == 3
    })
    .await;
    assert_eq!(handler.total(), 6, "two attempts each");

    let keys = format!("{ADMIN} admin;{READER} read");
    let dash = start_dashboard_with(&env, &env.elasticsearch_url, &["--api-keys", &keys]).await;
    let http = env.http.clone();
    let base = format!("{}/api/admin/queues", dash.base);
    testkit::wait_for_http(&format!("{}/healthz", dash.base), Duration::from_secs(10))
        .await
        .unwrap();

    // Reads: the list agrees with the library's stats; the detail shows the letters in full.
    // Besides `jobs`: the stack's `messages` and `webhooks`, whose partition count the dashboard
    // checks (and so stores) at start (QUEUE_PARTITIONS), empty. That check runs beside the
    // server, one queue after the other: /healthz can answer before it has stored both.
    let mut list = Value::Null;
    until(
        "the stack's two queues listed",
        Duration::from_secs(10),
        async || {
            list = http.get(&base).send().await.unwrap().json().await.unwrap();
            list["queues"].as_array().is_some_and(|q| q.len() >= 3)
        },
    )
    .await;
    let queues = list["queues"].as_array().expect("queues");
    let names: Vec<&str> = queues.iter().filter_map(|q| q["queue"].as_str()).collect();
    assert_eq!(names, ["jobs", "messages", "webhooks"], "{list}");
    assert_eq!(queues[0]["partitions"], 2);
    assert_eq!(queues[0]["paused"], false);
    let stats = serde_json::to_value(q.stats().await.unwrap()).unwrap();
    assert_eq!(queues[0]["stats"], stats, "{list}");
    let detail: Value = http
        .get(format!("{base}/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dead = detail["dead"].as_array().expect("dead letters");
    assert_eq!(dead.len(), 3, "{detail}");
    for d in dead {
        assert!(ids.iter().any(|id| d["job_id"] == id.0.as_str()), "{d}");
        assert_eq!(d["attempts"], 2, "{d}");
        assert_eq!(d["history"].as_array().map(Vec::len), Some(2), "{d}");
        assert!(
            d["error"]
                .as_str()
                .unwrap()
                .starts_with("refused attempt 2"),
            "{d}"
        );
        assert_eq!(
            d["handle"],
            format!("{}/{}", d["partition"], d["entry_id"].as_str().unwrap())
        );
    }
    assert_eq!(detail["by_partition"].as_array().map(Vec::len), Some(2));
    let w = &detail["workers"][0];
    assert_eq!(
        (w["name"].as_str(), w["live"].as_bool()),
        (Some("w1"), Some(true)),
        "{detail}"
    );
    assert_eq!(w["in_flight"], 0);
    let limited: Value = http
        .get(format!("{base}/jobs?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(limited["dead"].as_array().map(Vec::len), Some(1));
    // Viewers share reads: two answers within FRESH_FOR are one read.
    let again: Value = http
        .get(format!("{base}/jobs?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (first_read, second_read) = (
        limited["read_at_ms"].as_i64().unwrap(),
        again["read_at_ms"].as_i64().unwrap(),
    );
    assert!(
        second_read == first_read || second_read - first_read >= 500,
        "one shared read unless the first was 500 ms old: {first_read} then {second_read}"
    );

    // Refusals: each a problem, none changes anything.
    let first = dead[0]["handle"].as_str().unwrap().to_string();
    let first_job = dead[0]["job_id"].as_str().unwrap().to_string();
    let one = json!({"handle": first}).to_string();
    let retry = format!("{base}/jobs/dead/retry");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{ADMIN}"));
    for (auth, status, what) in [
        (None, 401, "no key"),
        (bearer("an-unknown-key-0123456789abc"), 401, "unknown key"),
        (
            Some(format!("Basic {basic}")),
            401,
            "the admin key as Basic",
        ),
        (bearer(READER), 403, "a read key"),
    ] {
        let got = post(&http, &retry, auth, Some(one.as_bytes())).await;
        assert_problem(&got, status, what);
        if status == 401 {
            assert_eq!(
                got.1["www-authenticate"], "Bearer realm=\"conveyor-admin\"",
                "{what}"
            );
        }
        let got = post(&http, &format!("{base}/jobs/pause"), None, None).await;
        assert_problem(&got, 401, "pause without a key");
    }
    let admin = || bearer(ADMIN);
    for (url, body, status, what) in [
        (
            format!("{base}/nope/dead/retry"),
            one.clone(),
            404,
            "unknown queue",
        ),
        (
            retry.clone(),
            r#"{"handle":"0/1-0"}"#.into(),
            404,
            "no such letter",
        ),
        (
            retry.clone(),
            r#"{"handle":"zero"}"#.into(),
            422,
            "bad handle",
        ),
        (retry.clone(), r#"{}"#.into(), 422, "neither handle nor all"),
        (
            retry.clone(),
            r#"{"all":"yes"}"#.into(),
            422,
            "all not a boolean",
        ),
        (retry.clone(), "{".into(), 400, "malformed JSON"),
        (
            retry.clone(),
            format!(r#"{{"handle":"{}"}}"#, "9".repeat(5000)),
            413,
            "oversized body",
        ),
    ] {
        let got = post(&http, &url, admin(), Some(body.as_bytes())).await;
        assert_problem(&got, status, what);
    }
    let got = post(&http, &format!("{base}/nope/pause"), admin(), None).await;
    assert_problem(&got, 404, "pause an unknown queue");
    assert!(
        !queue::admin::exists(&env.redis.clone().into(), &env.namespace, "nope")
            .await
            .unwrap()
    );
    let got = http
        .post(&retry)
        .header("authorization", admin().unwrap())
        .header("content-type", "text/plain")
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 415);
    let bad_limit = http
        .get(format!("{base}/jobs?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_limit.status(), 422);
    assert_eq!(
        http.get(format!("{base}/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(q.stats().await.unwrap().dead, 3, "nothing changed");
    assert_eq!(handler.total(), 6, "nothing ran");

    // Retry one: it runs exactly once more and is done; the others stay dead.
    handler.failing.store(false, Ordering::SeqCst);
    let got = post(&http, &retry, admin(), Some(one.as_bytes())).await;
    assert_eq!((got.0, &got.2["count"]), (200, &json!(1)), "{}", got.2);
    until("the retried job ran", Duration::from_secs(10), async || {
        handler.runs_of(&first_job) == 3
    })
    .await;
    let got = post(&http, &retry, admin(), Some(one.as_bytes())).await;
    assert_problem(&got, 404, "a letter retried already");
    // Delete the second, retry all (the third).
    let second = dead[1]["handle"].as_str().unwrap();
    let got = post(
        &http,
        &format!("{base}/jobs/dead/delete"),
        admin(),
        Some(json!({"handle": second}).to_string().as_bytes()),
    )
    .await;
    assert_eq!((got.0, &got.2["count"]), (200, &json!(1)), "{}", got.2);
    let got = post(&http, &retry, admin(), Some(br#"{"all":true}"#)).await;
    assert_eq!((got.0, &got.2["count"]), (200, &json!(1)), "{}", got.2);
    let third = dead[2]["job_id"].as_str().unwrap().to_string();
    until("the third job ran", Duration::from_secs(10), async || {
        handler.runs_of(&third) == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second_job = dead[1]["job_id"].as_str().unwrap();
    assert_eq!(
        (
            handler.runs_of(&first_job),
            handler.runs_of(second_job),
            handler.runs_of(&third)
        ),
        (3, 2, 3),
        "each retried job ran once more, the deleted one never"
    );
    assert_eq!(q.stats().await.unwrap().dead, 0);

    // Pause: the worker reads nothing new; resume: it does.
    let got = post(&http, &format!("{base}/jobs/pause"), admin(), None).await;
    assert_eq!((got.0, &got.2["paused"]), (200, &json!(true)), "{}", got.2);
    let paused: Value = http.get(&base).send().await.unwrap().json().await.unwrap();
    assert_eq!(paused["queues"][0]["paused"], true, "{paused}");
    tokio::time::sleep(Duration::from_millis(600)).await; // one read block and the pause check
    let before = handler.total();
    q.enqueue_batch(&[json!({"n": 4}), json!({"n": 5})])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(handler.total(), before, "nothing read while paused");
    assert_eq!(q.stats().await.unwrap().backlog, 2);
    let got = post(&http, &format!("{base}/jobs/resume"), admin(), None).await;
    assert_eq!((got.0, &got.2["paused"]), (200, &json!(false)), "{}", got.2);
    until(
        "both ran after resume",
        Duration::from_secs(10),
        async || handler.total() == before + 2,
    )
    .await;

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    dash.stop().await;
}
