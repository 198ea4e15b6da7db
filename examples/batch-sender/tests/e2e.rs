//! End to end, with the real Redis and real `batch-sender front` / `executor` processes; the
//! HTTP clients are in this test, so every answer is checked against the order that asked.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use example_batch_sender::model::Order;
use example_batch_sender::ORDERS;
use queue::{Queue, QueueConfig};
use serde_json::{json, Value};
use testkit::{assert_problem, free_port, wait_for_http, xlen, ChildGuard, TestEnv};

/// The release binary, as every stack test runs it: from `CONVEYOR_BIN_DIR` (`./setup.sh test`
/// builds it) or from a release build testkit makes on first use.
fn binary() -> PathBuf {
    testkit::bin_path("batch-sender")
}

fn spawn(env: &TestEnv, name: &str, args: &[String]) -> ChildGuard {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env("REDIS_URL", &env.redis_url)
        .env("QUEUE_NAMESPACE", &env.namespace)
        .env("RUST_LOG", "warn");
    ChildGuard::spawn(name, cmd).expect("spawn batch-sender")
}

fn args(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_string).collect()
}

/// A front end on a free port, answering `/healthz`; returns it and its base URL.
async fn front(env: &TestEnv, name: &str, flags: &str) -> (ChildGuard, String) {
    let port = free_port();
    let mut a = args(&format!("front --addr 127.0.0.1:{port}"));
    a.extend(args(flags));
    let child = spawn(env, name, &a);
    let url = format!("http://127.0.0.1:{port}");
    wait_for_http(&format!("{url}/healthz"), Duration::from_secs(30))
        .await
        .expect("front end up");
    (child, url)
}

fn orders_queue(env: &TestEnv) -> Queue<Order> {
    Queue::new(env.redis.clone(), QueueConfig::new(&env.namespace, ORDERS))
}

async fn wait_for_executors(env: &TestEnv, n: u64) {
    let q = orders_queue(env);
    for _ in 0..300 {
        if q.stats().await.map(|s| s.workers).unwrap_or(0) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} executors did not start");
}

/// POSTs `order` and returns the status and the JSON body.
async fn post(http: &reqwest::Client, url: &str, order: &Value) -> (u16, Value, Option<String>) {
    let resp = http
        .post(format!("{url}/orders"))
        .json(order)
        .send()
        .await
        .expect("POST /orders");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

/// The executors' linger in the thousand-order test.
const LINGER_MS: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_from_three_clients_through_two_fronts_and_two_executors() {
    let env = TestEnv::new("batch_e2e").await;
    let executors: Vec<String> = (0..2).map(|i| format!("{}-e{i}", env.namespace)).collect();
    let _executors: Vec<ChildGuard> = executors
        .iter()
        .map(|name| {
            let flags =
                format!("executor --batch-size 7 --linger-ms 50 --exec-ms 10 --name {name}");
            spawn(&env, name, &args(&flags))
        })
        .collect();
    let (_f0, url0) = front(&env, "front0", "--max-in-flight 1000").await;
    let (_f1, url1) = front(&env, "front1", "--max-in-flight 1000").await;
    wait_for_executors(&env, 2).await;

    // Three HTTP clients, 1,000 orders in flight at once, alternating between the front ends.
    let clients: Vec<reqwest::Client> = (0..3).map(|_| reqwest::Client::new()).collect();
    let urls = [url0, url1];
    let sends = (0..1000u32).map(|i| {
        let http = clients[i as usize % 3].clone();
        let url = urls[i as usize % 2].clone();
        async move {
            let order = json!({"order_id": format!("c{}-{i}", i % 3), "item": "widget", "quantity": 1 + i % 9});
            let (status, body, _) = post(&http, &url, &order).await;
            (order["order_id"].as_str().unwrap_or_default().to_string(), status, body)
        }
    });
    let answers = futures::future::join_all(sends).await;

    let mut per_order = HashMap::<String, u32>::new();
    let mut batches = BTreeMap::<String, (u64, u64, u64)>::new();
    let mut by_executor = BTreeMap::<String, u64>::new();
    for (sent, status, body) in &answers {
        assert_eq!(*status, 200, "order {sent}: {body}");
        assert_eq!(
            body["order_id"],
            sent.as_str(),
            "an answer reached another request"
        );
        *per_order.entry(sent.clone()).or_default() += 1;
        let batch = batches
            .entry(body["batch_id"].as_str().unwrap().to_string())
            .or_default();
        batch.0 = body["batch_size"].as_u64().unwrap();
        batch.1 += 1;
        batch.2 = body["batch_waited_ms"].as_u64().unwrap();
        *by_executor
            .entry(body["executor"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_order.len(), 1000);
    assert!(per_order.values().all(|c| *c == 1));
    // Every order of every batch came back to its own request, and the sizes are the flag's.
    let mut sizes = BTreeMap::<u64, u64>::new();
    for (id, (size, answered, waited_ms)) in &batches {
        assert_eq!(
            size, answered,
            "batch {id}: size {size}, answers {answered}"
        );
        assert!((1..=7).contains(size), "batch {id} of {size}");
        // A short batch is a linger-flushed tail: its oldest order waited the linger (50 ms)
        // for more orders that did not come.
        assert!(
            *size == 7 || *waited_ms >= LINGER_MS - 5,
            "batch {id} of {size} ran after {waited_ms} ms, before the linger was over"
        );
        *sizes.entry(*size).or_default() += 1;
    }
    eprintln!("batches by size: {sizes:?}; orders by executor: {by_executor:?}");
    let full = sizes.get(&7).copied().unwrap_or(0);
    assert!(
        full * 4 >= batches.len() as u64 * 3,
        "most batches are full: {sizes:?}"
    );
    assert_eq!(by_executor.keys().cloned().collect::<Vec<_>>(), executors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_executor_gets_429s_and_a_failed_batch_answers_its_orders_with_the_error() {
    let env = TestEnv::new("batch_backpressure").await;
    let _executor = spawn(
        &env,
        "slow-executor",
        &args("executor --batch-size 2 --linger-ms 5 --exec-ms 300"),
    );
    let (_front, url) = front(&env, "front", "--max-in-flight 8 --backlog-limit 4").await;
    wait_for_executors(&env, 1).await;
    let http = reqwest::Client::new();

    // Bad input answers 4xx problem+json and enqueues nothing.
    let bad = json!({"order_id": "bad id", "item": "", "quantity": 0});
    let resp = http
        .post(format!("{url}/orders"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, 422).await;
    assert_eq!(
        problem["errors"].as_array().map(Vec::len),
        Some(3),
        "{problem}"
    );
    let resp = http
        .post(format!("{url}/orders"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400).await;
    let extra = json!({"order_id": "x", "item": "a", "quantity": 1, "price": 3});
    let resp = http
        .post(format!("{url}/orders"))
        .json(&extra)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422).await;

    // A failing batch: the order gets its batch's error.
    let (status, body, _) = post(
        &http,
        &url,
        &json!({"order_id": "f-1", "item": "fail", "quantity": 1}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["type"], "urn:conveyor:problem:batch-failed");
    assert!(body["detail"].as_str().unwrap().contains("f-1"), "{body}");

    // 100 orders at once against a slow executor: most are refused with 429, Redis never holds
    // more than the front end's in-flight bound, every accepted order gets its own answer.
    let stream = orders_queue(&env).stream_keys().remove(0);
    let watcher = {
        let pool = env.redis.clone();
        tokio::spawn(async move {
            let mut max = 0;
            for _ in 0..150 {
                max = max.max(xlen(&pool, &stream).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            max
        })
    };
    let sends = (0..100).map(|i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let id = format!("o-{i}");
            let answer = post(
                &http,
                &url,
                &json!({"order_id": id, "item": "widget", "quantity": 1}),
            )
            .await;
            (id, answer)
        }
    });
    let answers = futures::future::join_all(sends).await;
    let max_in_redis = watcher.await.unwrap();
    let (mut ok, mut refused) = (0, 0);
    for (id, (status, body, retry_after)) in &answers {
        match status {
            200 => {
                assert_eq!(body["order_id"], id.as_str());
                ok += 1;
            }
            429 => {
                assert_eq!(body["type"], "urn:conveyor:problem:backpressure", "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"));
                refused += 1;
            }
            other => panic!("order {id}: {other} {body}"),
        }
    }
    eprintln!("{ok} accepted, {refused} refused with 429, at most {max_in_redis} orders in Redis");
    assert_eq!(ok + refused, 100);
    assert!(ok >= 1 && refused >= 50, "accepted {ok}, refused {refused}");
    assert!(max_in_redis <= 8, "Redis held {max_in_redis} orders");
}
