//! The pipeline under faults, with the real binaries: a worker killed with SIGKILL mid-stream and
//! Elasticsearch cut off from the workers for a few seconds. Afterwards every number the producer
//! sent is in Elasticsearch exactly once.

use std::time::Duration;

use e2e::es::{all_docs, wait_for_count};
use e2e::{Service, Stack};
use queue::{Queue, QueueConfig};
use testkit::{TcpProxy, TestEnv};

/// Asserts the messages index holds exactly the numbers `0..n`, each once.
async fn assert_exactly_once(env: &TestEnv, n: u64) {
    let stored = wait_for_count(env, "messages", n, Duration::from_secs(60)).await;
    assert_eq!(stored, n, "documents stored");
    let docs = all_docs(env, "messages", "number").await;
    let numbers: Vec<u64> = docs
        .iter()
        .map(|(_, d)| d["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..n).collect::<Vec<_>>());
}

#[tokio::test]
async fn worker_killed_mid_stream_loses_nothing() {
    let env = TestEnv::new("pipe_kill").await;
    // Worker 1 reaches Elasticsearch through a proxy that is switched off mid-stream, so it
    // surely holds leased, unacked jobs when it is killed; worker 0 must reclaim them.
    let proxy = TcpProxy::start(env.elasticsearch_addr()).await;
    let mut stack = Stack::builder(&env)
        .workers(1)
        .env_for(Service::Worker, "LEASE_MS", "2000")
        .start()
        .await
        .unwrap();
    let doomed = stack
        .start_worker_with(&[("ELASTICSEARCH_URL", &proxy.http_url())])
        .await
        .unwrap();
    let producer = tokio::spawn(stack.run_producer(&[
        "--rate",
        "200",
        "--window-ms",
        "900",
        "--duration-secs",
        "5",
        "--resources",
        "off",
    ]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set_enabled(false);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let messages: Queue<serde_json::Value> = Queue::new(
        env.redis.clone(),
        QueueConfig::new(&env.namespace, "messages"),
    );
    let pending = messages.stats().await.unwrap().pending;
    assert!(pending > 0, "the doomed worker holds leased jobs");
    stack.kill_worker(doomed);
    assert_eq!(stack.running_workers(), 1);
    let out = producer.await.unwrap().unwrap();
    assert!(out.contains("total sent=1000 ok=1000 errors=0"), "{out}");
    assert_exactly_once(&env, 1000).await;
    let stats = messages.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn elasticsearch_cut_off_for_a_while_then_every_number_stored_once() {
    let env = TestEnv::new("pipe_esdown").await;
    let proxy = TcpProxy::start(env.elasticsearch_addr()).await;
    let stack = Stack::builder(&env)
        .workers(2)
        .worker_elasticsearch_url(proxy.http_url())
        .start()
        .await
        .unwrap();
    let producer = tokio::spawn(stack.run_producer(&[
        "--rate",
        "50",
        "--window-ms",
        "500",
        "--duration-secs",
        "9",
        "--resources",
        "off",
    ]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set_enabled(false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set_enabled(true);
    let out = producer.await.unwrap().unwrap();
    assert!(out.contains("total sent=450 ok=450 errors=0"), "{out}");
    assert_exactly_once(&env, 450).await;
    drop(stack);
}
