//! Operating the real stack with the real `conveyor` binary: a webhook delivery dead-lettered on
//! purpose (the webhook service has another secret: every delivery answered 401, WEBHOOK_MAX_ATTEMPTS 2)
//! is listed by `conveyor dead list`, retried by `conveyor dead retry` once the secrets agree, and
//! then stored (Elasticsearch and the output file); `conveyor pause messages` while messages flow
//! stops the worker from reading (in-flight jobs finish), `conveyor resume` restarts it, and
//! every message is stored, each once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::es::{count_docs, wait_for_count};
use e2e::{Service, Stack, WEBHOOK_SECRET};
use serde_json::{json, Value};
use testkit::{bin_path, free_port, ChildGuard, TestEnv};

/// Runs the real `conveyor` on the test's namespace; expects success, returns standard output.
fn conveyor(env: &TestEnv, args: &[&str]) -> String {
    let out = Command::new(bin_path("conveyor"))
        .args(args)
        .env("REDIS_URL", &env.redis_url)
        .env("QUEUE_NAMESPACE", &env.namespace)
        .output()
        .expect("conveyor runs");
    assert!(
        out.status.success(),
        "conveyor {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `conveyor stats QUEUE --json`'s counts, or `None` while the queue does not exist yet (the
/// worker's queue runners start after its health listener).
fn try_stats(env: &TestEnv, queue: &str) -> Option<Value> {
    let out = Command::new(bin_path("conveyor"))
        .args(["stats", queue, "--json"])
        .env("REDIS_URL", &env.redis_url)
        .env("QUEUE_NAMESPACE", &env.namespace)
        .output()
        .expect("conveyor runs");
    let row: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(row["stats"].clone())
}

fn queue_stats(env: &TestEnv, queue: &str) -> Value {
    let row: Value = serde_json::from_str(&conveyor(env, &["stats", queue, "--json"])).unwrap();
    row["stats"].clone()
}

fn spawn_webhook(env: &TestEnv, port: u16, output: &Path, secret: &str) -> ChildGuard {
    let mut cmd = Command::new(bin_path("webhook"));
    cmd.env("ELASTICSEARCH_URL", &env.elasticsearch_url)
        .env("ES_INDEX_PREFIX", &env.index_prefix)
        .env("WEBHOOK_SECRET", secret)
        .env("WEBHOOK_ADDR", format!("127.0.0.1:{port}"))
        .env("OUTPUT_DIR", output)
        .env("RUST_LOG", "info");
    ChildGuard::spawn("webhook", cmd).unwrap()
}

fn packet(number: u64, resource: Option<(&str, u64, u64)>) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut p =
        json!({"number": number, "sent_at": now, "producer": "ops", "text": "to be or not"});
    if let Some((id, seq, total)) = resource {
        p["resource_id"] = json!(id);
        p["seq"] = json!(seq);
        p["total"] = json!(total);
    }
    p
}

async fn post(env: &TestEnv, consumer: &str, packets: &[Value]) {
    let resp = env
        .http
        .post(format!("{consumer}/messages/batch"))
        .json(&packets)
        .send()
        .await
        .expect("POST /messages/batch");
    assert_eq!(
        resp.status().as_u16(),
        202,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

async fn until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_made_on_purpose_is_retried_by_the_cli_and_stored_and_pause_loses_nothing() {
    let env = TestEnv::new("operate").await;
    let output = std::env::temp_dir().join(testkit::unique_name("ops-out"));
    std::fs::create_dir_all(&output).unwrap();
    let port = free_port();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let mut webhook = spawn_webhook(&env, port, &output, "another-secret-of-at-least-32-bytes!");
    testkit::wait_for_http(&health, Duration::from_secs(30))
        .await
        .unwrap();
    let stack = Stack::builder(&env)
        .workers(1)
        .env_for(
            Service::Worker,
            "WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/webhooks/resources"),
        )
        .env_for(Service::Worker, "WEBHOOK_MAX_ATTEMPTS", "2")
        .start()
        .await
        .unwrap();

    // One resource of two packets: stored, collated, its delivery refused twice → dead.
    post(
        &env,
        &stack.consumer_url(),
        &[
            packet(0, Some(("res-ops", 0, 2))),
            packet(1, Some(("res-ops", 1, 2))),
        ],
    )
    .await;
    until(
        "the delivery dead-lettered",
        Duration::from_secs(30),
        || try_stats(&env, "webhooks").is_some_and(|s| s["dead"] == 1),
    )
    .await;
    // Collation runs beside the `_bulk`: the delivery may be dead before both documents are.
    assert_eq!(
        wait_for_count(&env, "messages", 2, Duration::from_secs(30)).await,
        2
    );
    let listed: Value =
        serde_json::from_str(&conveyor(&env, &["dead", "list", "webhooks", "--json"])).unwrap();
    let letter = &listed.as_array().unwrap()[0];
    assert_eq!(letter["attempts"], 2);
    assert!(
        letter["error"].as_str().unwrap().contains("401"),
        "{letter}"
    );
    assert_eq!(count_docs(&env, "resources").await, 0);

    // Fix the secret, retry from the CLI: delivered and stored once.
    webhook.kill();
    let _webhook = spawn_webhook(&env, port, &output, WEBHOOK_SECRET);
    testkit::wait_for_http(&health, Duration::from_secs(30))
        .await
        .unwrap();
    let retried = conveyor(&env, &["dead", "retry", "webhooks", "--all"]);
    assert!(retried.contains("retried 1 dead letters"), "{retried}");
    assert_eq!(
        wait_for_count(&env, "resources", 1, Duration::from_secs(30)).await,
        1
    );
    // The document is created first, the file right after it (the delivery is answered after
    // both): wait for the file as for the document.
    until("the output file", Duration::from_secs(10), || {
        std::fs::read_dir(&output)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".json"))
    })
    .await;
    let files: Vec<_> = std::fs::read_dir(&output)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].contains("res-ops") && files[0].ends_with(".json"),
        "{files:?}"
    );
    let file: Value =
        serde_json::from_slice(&std::fs::read(output.join(&files[0])).unwrap()).unwrap();
    assert_eq!(
        file["word_lengths"],
        json!([[2, 2, 2, 3], [2, 2, 2, 3]]),
        "{file}"
    );
    assert_eq!(queue_stats(&env, "webhooks")["dead"], 0);

    // Pause while messages flow: the worker finishes what it holds and reads nothing new; the
    // stored count stands still, and what is missing is exactly the backlog. Resume: all stored.
    let batches: Vec<Vec<Value>> = (0..3)
        .map(|b| (0..200).map(|i| packet(2 + b * 200 + i, None)).collect())
        .collect();
    post(&env, &stack.consumer_url(), &batches[0]).await;
    conveyor(&env, &["pause", "messages"]);
    // Reads stop within one read block (1 s) plus the pause check (50 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    post(&env, &stack.consumer_url(), &batches[1]).await;
    post(&env, &stack.consumer_url(), &batches[2]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paused_at = count_docs(&env, "messages").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count_docs(&env, "messages").await,
        paused_at,
        "nothing stored while paused"
    );
    assert!(
        paused_at < 602,
        "the pause held messages back ({paused_at})"
    );
    let stats = queue_stats(&env, "messages");
    assert_eq!(stats["pending"], 0, "in-flight jobs finished: {stats}");
    assert_eq!(stats["backlog"].as_u64(), Some(602 - paused_at), "{stats}");
    // The CLI and the API's /stats agree (the queue stands still while paused).
    let api: Value = env
        .http
        .get(format!("{}/stats", stack.consumer_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in ["backlog", "pending", "delayed", "dead", "workers"] {
        assert!(stats[field].is_u64(), "conveyor stats has {field}: {stats}");
        assert_eq!(
            api["queue"][field], stats[field],
            "{field}: /stats {api} vs conveyor {stats}"
        );
    }
    conveyor(&env, &["resume", "messages"]);
    assert_eq!(
        wait_for_count(&env, "messages", 602, Duration::from_secs(60)).await,
        602
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        count_docs(&env, "messages").await,
        602,
        "every message stored, each once (natural _id)"
    );
    let stats = queue_stats(&env, "messages");
    assert_eq!(
        (stats["backlog"].as_u64(), stats["pending"].as_u64()),
        (Some(0), Some(0))
    );
    let _ = std::fs::remove_dir_all(&output);
}
