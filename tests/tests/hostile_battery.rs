//! The hostile-request battery against the whole stack (real binaries through the launcher,
//! real Redis and Elasticsearch): well over 60 hostile requests across every endpoint of the
//! consumer, the worker's HTTP port, the webhook service and the dashboard — wrong types,
//! out-of-range numbers, bad dates, huge and deep bodies, bad encodings, duplicate keys, wrong
//! content types, bad query strings and path ids, oversized heads, slow and partial requests —
//! each answered with its documented status and problem `type` (the table is in
//! `hostile/rows.rs`). Meanwhile `/healthz` of every service answers throughout; afterwards the
//! queue, every index and the webhook's output directory hold exactly what they held before,
//! and the figures of the consumer's `/stats` and the dashboard's `/api/stats` are unchanged.

mod hostile;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::es::wait_for_count;
use e2e::{Service, Stack, WEBHOOK_SECRET};
use hostile::rows::{self, Expect, To};
use hostile::{exchange, holdings, HealthPoller, Outcome};
use serde_json::{json, Value};
use testkit::TestEnv;

/// Short connection timeouts, so the slow and partial rows are answered within seconds.
const HEADER_TIMEOUT: &str = "2s";
const BODY_TIMEOUT: &str = "2s";
/// Good messages sent first, so the figures compared afterwards are not trivial.
const GOOD: u64 = 12;

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().expect("ip:port")
}

async fn get_json(url: &str) -> Value {
    let resp = reqwest::get(url).await.expect(url);
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.expect("JSON")
}

/// Sends the good messages (the last one completes a one-packet resource, so the webhook's
/// output directory holds a file) and waits until all are stored and delivered.
async fn send_good_messages(env: &TestEnv, stack: &Stack) {
    let now = chrono::Utc::now();
    let packets: Vec<Value> = (0..GOOD)
        .map(|n| {
            let sent = now - chrono::TimeDelta::milliseconds(5 + n as i64);
            let mut p = json!({"number": n, "sent_at": sent.to_rfc3339(), "producer": "good",
                               "text": "some honest words"});
            if n == GOOD - 1 {
                p["resource_id"] = json!("good-resource");
                p["seq"] = json!(0);
                p["total"] = json!(1);
            }
            p
        })
        .collect();
    let resp = env
        .http
        .post(format!("{}/messages/batch", stack.consumer_url()))
        .json(&packets)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    let stored = wait_for_count(env, "messages", GOOD, Duration::from_secs(30)).await;
    assert_eq!(stored, GOOD);
    let start = Instant::now();
    while std::fs::read_dir(stack.output_dir()).unwrap().count() == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "no webhook file");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the queue has nothing waiting or in flight (the worker acked everything).
async fn settled(stack: &Stack) -> Value {
    let start = Instant::now();
    loop {
        let stats = get_json(&format!("{}/stats", stack.consumer_url())).await;
        let q = &stats["queue"];
        if q["backlog"] == 0 && q["pending"] == 0 && q["delayed"] == 0 {
            return stats;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "queue never settled: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one row got, or why it is wrong.
fn judge(row: &rows::Row, outcome: &Outcome) -> Result<(), String> {
    match (row.expect, outcome) {
        (Expect::Closed, Outcome::Closed) => Ok(()),
        (Expect::Problem(status, slug), Outcome::Answer(a)) => {
            let body = String::from_utf8_lossy(&a.body);
            let shown: String = body.chars().take(300).collect();
            if a.status != status {
                return Err(format!("status {} (want {status}): {shown}", a.status));
            }
            if a.header("content-type") != Some("application/problem+json") {
                return Err(format!(
                    "content type {:?}: {shown}",
                    a.header("content-type")
                ));
            }
            let v: Value = serde_json::from_slice(&a.body).map_err(|e| format!("{e}: {shown}"))?;
            let want = format!("urn:conveyor:problem:{slug}");
            if v["type"] != want.as_str() || v["status"] != status {
                return Err(format!("problem {v} (want type {want})"));
            }
            Ok(())
        }
        (want, got) => Err(format!("want {want:?}, got {}", describe(got))),
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Answer(a) => format!(
            "{} {}",
            a.status,
            String::from_utf8_lossy(&a.body)
                .chars()
                .take(200)
                .collect::<String>()
        ),
        Outcome::TimedOut(bytes) => format!("no answer in time ({} bytes)", bytes.len()),
        other => format!("{other:?}"),
    }
}

/// The figures of `/stats` (or the dashboard's `/api/stats`) that hostile input must not move.
fn figures(stats: &Value) -> (Value, Value, Value) {
    (
        stats["max_number"].clone(),
        stats["total"].clone(),
        stats["queue"]["dead"].clone(),
    )
}

/// The 10-s average is either gone (the window emptied while the battery ran) or an average of
/// the good messages' transit times (all a few ms), never moved by a hostile `sent_at`.
fn average_is_sane(stats: &Value, what: &str) {
    let count = stats["count_10s"].as_u64().unwrap_or(0);
    assert!(count <= GOOD, "{what}: count_10s {count}: {stats}");
    match stats["avg_transit_ms_10s"].as_f64() {
        None => assert_eq!(count, 0, "{what}: {stats}"),
        Some(avg) => assert!((0.0..60_000.0).contains(&avg), "{what}: {stats}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_request_gets_its_documented_problem_and_changes_nothing() {
    let env = TestEnv::new("hostile_battery").await;
    let stack = Stack::builder(&env)
        .workers(1)
        .webhook(true)
        .dashboard(true)
        .env_for(Service::Dashboard, "API_KEYS", rows::dashboard::api_keys())
        .env("HTTP_HEADER_TIMEOUT", HEADER_TIMEOUT)
        .env("HTTP_BODY_TIMEOUT", BODY_TIMEOUT)
        .start()
        .await
        .unwrap();
    let worker_url = format!("http://127.0.0.1:{}", stack.worker(0).unwrap().metrics_port);
    let services = [
        ("consumer", stack.consumer_url()),
        ("worker", worker_url.clone()),
        ("webhook", stack.webhook_url()),
        ("dashboard", stack.dashboard_url()),
    ];

    send_good_messages(&env, &stack).await;
    let stats_before = settled(&stack).await;
    // The dashboard has polled since the last write: it shows the one delivered resource
    // (Elasticsearch's refresh and the poll may take a few seconds under load).
    let start = Instant::now();
    let dash_before = loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let dash = get_json(&format!("{}/api/stats", stack.dashboard_url())).await;
        if dash["resources_completed"] == 1 && figures(&dash) == figures(&stats_before) {
            break dash;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the dashboard never caught up: {dash}"
        );
    };
    assert_eq!(stats_before["max_number"], GOOD - 1, "{stats_before}");
    assert_eq!(stats_before["total"], GOOD, "{stats_before}");
    assert_eq!(
        figures(&dash_before),
        figures(&stats_before),
        "{dash_before}"
    );
    let before = holdings(&env, stack.output_dir()).await;
    assert_eq!(before.files.len(), 1, "{before:?}");

    let poller = HealthPoller::start(&services);
    let table = rows::all(chrono::Utc::now(), WEBHOOK_SECRET.as_bytes());
    let count = table.len();
    assert!(count >= 60, "only {count} rows");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, row) in table.into_iter().enumerate() {
        let to = match row.to {
            To::Consumer => addr(&stack.consumer_url()),
            To::Worker => addr(&worker_url),
            To::Webhook => addr(&stack.webhook_url()),
            To::Dashboard => addr(&stack.dashboard_url()),
        };
        tasks.spawn(async move {
            let outcome = exchange(to, &row.request, Duration::from_secs(15)).await;
            (
                i,
                judge(&row, &outcome).map_err(|e| format!("{:?} {}: {e}", row.to, row.name)),
            )
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (_, verdict) = done.expect("row task");
        failures.extend(verdict.err());
    }
    let took = started.elapsed();
    let health = poller.finish().await;
    println!("{count} hostile requests answered in {took:?}");
    assert!(
        failures.is_empty(),
        "{} of {count} rows wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for (service, ok, failed) in &health {
        println!(
            "{service}: /healthz answered {ok} times during the battery, {} failures",
            failed.len()
        );
        assert!(failed.is_empty(), "{service} /healthz failed: {failed:?}");
        assert!(*ok > 0, "{service} /healthz never polled");
    }

    // Nothing got in: the queue, every index and the output directory are as they were.
    let stats_after = settled(&stack).await;
    let after = holdings(&env, stack.output_dir()).await;
    assert_eq!(after, before, "the stack's holdings changed");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dash_after = get_json(&format!("{}/api/stats", stack.dashboard_url())).await;
    assert_eq!(
        figures(&stats_after),
        figures(&stats_before),
        "{stats_after}"
    );
    assert_eq!(figures(&dash_after), figures(&dash_before), "{dash_after}");
    assert_eq!(
        dash_after["resources_completed"],
        dash_before["resources_completed"]
    );
    average_is_sane(&stats_after, "consumer /stats");
    average_is_sane(&dash_after, "dashboard /api/stats");
}
