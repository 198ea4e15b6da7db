//! The worker in-process against the real Redis and Elasticsearch: jobs become documents (one
//! per natural id), `enqueue_and_wait` gets the stored document, and jobs enqueued while
//! Elasticsearch is cut off are stored once it is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use chrono::Utc;
use clap::Parser;
use pipeline::packet::{EdgeRules, MessageJob, Packet, StoredMessage};
use queue::{Queue, QueueConfig};
use serde_json::{json, Value};
use testkit::{TcpProxy, TestEnv};
use tokio_util::sync::CancellationToken;

fn job(number: u64, text: &str) -> MessageJob {
    let body = json!({
        "number": number, "sent_at": Utc::now().to_rfc3339(), "producer": "wt", "text": text
    });
    let packet =
        Packet::from_slice(body.to_string().as_bytes(), &EdgeRules::at(Utc::now())).unwrap();
    MessageJob {
        packet,
        received_at: Utc::now(),
    }
}

/// A real local HTTP server standing in for the webhook target; records every body it gets.
async fn webhook_target() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(seen): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>| async move {
                    seen.lock().unwrap().push(body);
                    "ok"
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn config(env: &TestEnv, es_url: &str, hook_url: &str) -> worker::Config {
    config_with(env, es_url, hook_url, &[])
}

fn config_with(env: &TestEnv, es_url: &str, hook_url: &str, extra: &[&str]) -> worker::Config {
    let base = [
        "worker",
        "--webhook-url",
        hook_url,
        "--webhook-secret",
        "store-batches-secret-of-at-least-32-bytes",
        "--redis-url",
        &env.redis_url,
        "--queue-namespace",
        &env.namespace,
        "--elasticsearch-url",
        es_url,
        "--es-index-prefix",
        &env.index_prefix,
        "--batch-size",
        "50",
        "--lease-ms",
        "2000",
    ];
    worker::Config::try_parse_from(base.iter().chain(extra)).unwrap()
}

/// Documents in the test's messages index (0 while the worker has not created it yet).
async fn count(env: &TestEnv) -> u64 {
    let base = format!("{}/{}", env.elasticsearch_url, env.index("messages"));
    let refreshed = env
        .http
        .post(format!("{base}/_refresh"))
        .send()
        .await
        .unwrap();
    if refreshed.status() == 404 {
        return 0;
    }
    let v: serde_json::Value = env
        .http
        .get(format!("{base}/_count"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["count"].as_u64().unwrap()
}

async fn wait_for_count(env: &TestEnv, want: u64, within: Duration) -> u64 {
    let start = std::time::Instant::now();
    loop {
        let n = count(env).await;
        if n >= want || start.elapsed() > within {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn jobs_become_one_document_each_and_waiters_get_the_result() {
    let env = TestEnv::new("worker_store").await;
    let (hook_url, hook) = webhook_target().await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker::run(
        config(&env, &env.elasticsearch_url, &hook_url),
        shutdown.clone(),
    ));
    let q: Queue<MessageJob> = Queue::new(
        env.redis.clone(),
        QueueConfig::new(&env.namespace, "messages"),
    );

    let jobs: Vec<MessageJob> = (0..200).map(|n| job(n, "über alles ok")).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    q.enqueue_batch(&jobs[..20]).await.unwrap(); // re-deliveries overwrite, never duplicate
    let got: StoredMessage = q
        .enqueue_and_wait(&job(500, "naïve café x"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got.word_lengths, vec![5, 4, 1]);
    assert_eq!(got.number, 500);
    assert!(got.received_at <= got.stored_at);

    assert_eq!(
        wait_for_count(&env, 201, Duration::from_secs(15)).await,
        201
    );
    let doc = env
        .search("messages", json!({"query": {"ids": {"values": ["wt:7"]}}}))
        .await;
    let src = &doc["hits"]["hits"][0]["_source"];
    assert_eq!(src["word_lengths"], json!([4, 5, 2]));
    assert_eq!(src["number"], 7);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backlog, stats.pending, stats.dead),
        (0, 0, 0),
        "{stats:?}"
    );

    // A resource's packets, out of order and one twice: exactly one delivery job is enqueued.
    let part = |number: u64, seq: u32| {
        let body = json!({
            "number": number, "sent_at": Utc::now().to_rfc3339(), "producer": "wt",
            "resource_id": "wt-r900", "seq": seq, "total": 3, "text": "a bb"
        });
        let packet =
            Packet::from_slice(body.to_string().as_bytes(), &EdgeRules::at(Utc::now())).unwrap();
        MessageJob {
            packet,
            received_at: Utc::now(),
        }
    };
    q.enqueue_batch(&[part(902, 2), part(900, 0)])
        .await
        .unwrap();
    q.enqueue(&part(900, 0)).await.unwrap();
    assert_eq!(
        wait_for_count(&env, 203, Duration::from_secs(15)).await,
        203
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        hook.lock().unwrap().is_empty(),
        "incomplete resource: no delivery"
    );
    q.enqueue(&part(901, 1)).await.unwrap();
    q.enqueue(&part(901, 1)).await.unwrap();
    assert_eq!(
        wait_for_count(&env, 204, Duration::from_secs(15)).await,
        204
    );
    let start = std::time::Instant::now();
    while hook.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = hook.lock().unwrap().clone();
    assert_eq!(
        delivered.len(),
        1,
        "one delivery per resource: {delivered:?}"
    );
    assert_eq!(delivered[0]["resource_id"], "wt-r900");
    assert_eq!(
        delivered[0]["word_lengths"],
        json!([[1, 2], [1, 2], [1, 2]])
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(12), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn jobs_wait_while_elasticsearch_is_cut_off_and_are_stored_after() {
    let env = TestEnv::new("worker_esdown").await;
    let target = env.elasticsearch_addr();
    let proxy = TcpProxy::start(target).await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker::run(
        config(&env, &proxy.http_url(), "http://127.0.0.1:9/unused"),
        shutdown.clone(),
    ));
    let q: Queue<MessageJob> = Queue::new(
        env.redis.clone(),
        QueueConfig::new(&env.namespace, "messages"),
    );
    q.enqueue_batch(&(0..10).map(|n| job(n, "a b")).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(wait_for_count(&env, 10, Duration::from_secs(10)).await, 10);

    proxy.set_enabled(false);
    q.enqueue_batch(&(10..60).map(|n| job(n, "a b")).collect::<Vec<_>>())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        count(&env).await,
        10,
        "nothing new is stored while ES is unreachable"
    );
    proxy.set_enabled(true);
    assert_eq!(wait_for_count(&env, 60, Duration::from_secs(20)).await, 60);
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.dead, 0, "{stats:?}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(12), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_outage_longer_than_every_attempt_dead_letters_nothing() {
    // MAX_ATTEMPTS 2 and a 100 ms in-place wait: an outage of 4 s outlasts every attempt many
    // times over. Waiting for a dependency must not use attempts up, so nothing is dead-lettered.
    let env = TestEnv::new("worker_long_outage").await;
    let target = env.elasticsearch_addr();
    let proxy = TcpProxy::start(target).await;
    let shutdown = CancellationToken::new();
    let extra = ["--max-attempts", "2", "--es-wait-ms", "100"];
    let cfg = config_with(&env, &proxy.http_url(), "http://127.0.0.1:9/unused", &extra);
    let running = tokio::spawn(worker::run(cfg, shutdown.clone()));
    let q: Queue<MessageJob> = Queue::new(
        env.redis.clone(),
        QueueConfig::new(&env.namespace, "messages"),
    );
    q.enqueue_batch(&[job(0, "warm up")]).await.unwrap();
    assert_eq!(wait_for_count(&env, 1, Duration::from_secs(10)).await, 1);

    proxy.set_enabled(false);
    q.enqueue_batch(&(1..40).map(|n| job(n, "a b c")).collect::<Vec<_>>())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = q.stats().await.unwrap();
    assert_eq!(during.dead, 0, "an outage is not a failure: {during:?}");
    proxy.set_enabled(true);
    assert_eq!(wait_for_count(&env, 40, Duration::from_secs(20)).await, 40);
    let after = q.stats().await.unwrap();
    assert_eq!(after.dead, 0, "{after:?}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(12), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
