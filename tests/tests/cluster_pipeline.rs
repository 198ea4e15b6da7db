//! The pipeline end to end with the real binaries (consumer, two workers, webhook service,
//! producer) against a real Redis Cluster of 3 masters + 3 replicas (`REDIS_URL` =
//! `redis+cluster://…`), with the queues in 12 partitions as the cluster runs use them
//! (`QUEUE_PARTITIONS=12`, spread over the masters): every message stored exactly once, every complete resource delivered once
//! (one document written once, one file), and `?wait=true` answered through sharded pub/sub.
//! The cluster is `TEST_REDIS_CLUSTER_URL`'s (`./setup.sh test` starts one) or a private one.

use std::time::Duration;

use e2e::es::{all_docs, wait_for_count};
use e2e::Stack;
use serde_json::{json, Value};
use testkit::TestEnv;

#[tokio::test]
async fn the_pipeline_runs_on_a_redis_cluster() {
    let env = TestEnv::new("cluster_pipe").await;
    let (cluster_url, _private) = testkit::cluster_url().await;
    let stack = Stack::builder(&env)
        .redis_url(cluster_url.clone())
        .env("QUEUE_PARTITIONS", "12")
        .workers(2)
        .webhook(true)
        .start()
        .await
        .unwrap();

    let out = stack
        .run_producer(&["--duration-secs", "5", "--producer", "cl"])
        .await
        .unwrap();
    assert!(
        out.contains("total sent=50 ok=50 errors=0"),
        "producer said:\n{out}"
    );
    assert_eq!(
        wait_for_count(&env, "messages", 50, Duration::from_secs(60)).await,
        50
    );
    let docs = all_docs(&env, "messages", "number").await;
    let mut numbers: Vec<u64> = docs
        .iter()
        .map(|(_, d)| d["number"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..50).collect::<Vec<u64>>(), "each number once");

    // Request/reply: the worker's result comes back through SPUBLISH / SSUBSCRIBE.
    let sent_at = chrono::Utc::now().to_rfc3339();
    let answer = env
        .http
        .post(format!(
            "{}/messages?wait=true&timeout_ms=15000",
            stack.consumer_url()
        ))
        .json(
            &json!({"number": 1000, "sent_at": sent_at, "producer": "clwait", "text": "ab cde f"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["word_lengths"], json!([2, 3, 1]), "{body}");

    // Resources: each delivered once — one document at version 1, one file each.
    let start = std::time::Instant::now();
    let resources = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats: Value = env
            .http
            .get(format!("{}/stats", stack.consumer_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let settled = stats["queue"]["backlog"] == 0 && stats["queue"]["pending"] == 0;
        let files = std::fs::read_dir(stack.output_dir()).unwrap().count();
        if settled && files > 0 && start.elapsed() > Duration::from_secs(3) {
            break files;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "resources not delivered: {stats}"
        );
    };
    env.refresh("resources").await;
    let stored = env
        .search(
            "resources",
            json!({"size": 1000, "version": true, "query": {"match_all": {}}}),
        )
        .await;
    let hits = stored["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), resources, "one document per delivered file");
    for hit in hits {
        assert_eq!(hit["_version"], 1, "written once: {hit}");
    }

    // TestEnv cleans the one-node Redis; the stack's keys are on the cluster.
    let pool = queue::RedisPool::open(&cluster_url, 2).unwrap();
    let mut conn = pool.get().await.unwrap();
    let keys = queue::scan_all(&mut conn, &format!("{}:*", stack.namespace()))
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the stack used the cluster");
    // Both queues were created with the stack's 12 partitions, and the jobs spread over them
    // (a partition's stream exists once it took a job; the run's ~17 resources and its
    // request/reply hash to most of the 12).
    let mut conn2 = pool.get().await.unwrap();
    for name in ["messages", "webhooks"] {
        let stored: Option<String> = redis::cmd("GET")
            .arg(format!("{}:{{{name}}}:partitions", stack.namespace()))
            .query_async(&mut conn2)
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), Some("12"), "{name}");
    }
    // The cluster's layout: partition tags spread over the slot space.
    let k = queue::Keys::spread(stack.namespace(), "messages", 12);
    let used = (0..12).filter(|p| keys.contains(&k.stream(*p))).count();
    assert!(
        used >= 6,
        "the jobs spread over the partitions: {used} of 12 used"
    );
    for key in keys {
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
