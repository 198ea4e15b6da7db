//! Redis at `maxmemory` (policy `noeviction`, as native mode and compose run it) under a stream
//! of writes: the API answers 503 + Retry-After ("storage-full") instead of 500, every packet it
//! accepted is in the stream exactly once, and writes are accepted again once memory returns.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{packet, spawn_on};
use testkit::{assert_problem, RedisServer, TestEnv};

async fn config_set(url: &str, key: &str, value: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn used_memory(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

#[tokio::test]
async fn a_full_redis_answers_503_loses_nothing_and_recovers() {
    let env = TestEnv::new("consumer_storage_full").await;
    let server = RedisServer::start().await;
    let url = server.url();
    let app = spawn_on(&env, &url, &["--backlog-cache-ms", "0"]).await;
    assert_eq!(app.post_number(0).await, 202);

    // Room for a few hundred 4 KB packets, then Redis refuses writes.
    let limit = used_memory(&url).await + 2 * 1024 * 1024;
    config_set(&url, "maxmemory-policy", "noeviction").await;
    config_set(&url, "maxmemory", &limit.to_string()).await;

    let text = "word ".repeat(800);
    let (mut accepted, mut full) = (vec![0u64], 0);
    let start = Instant::now();
    let mut n = 1;
    while full < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Redis never filled up"
        );
        let resp = app
            .post_json("/messages", &packet(n, json!({ "text": text })))
            .await;
        match resp.status().as_u16() {
            202 => accepted.push(n),
            503 => {
                let retry_after = resp.headers().get("retry-after").cloned();
                let v = assert_problem(resp, 503).await;
                assert_eq!(v["type"], "urn:conveyor:problem:storage-full", "{v}");
                assert!(retry_after.is_some(), "503 carries Retry-After");
                full += 1;
            }
            other => panic!("packet {n}: {other} {}", resp.text().await.unwrap()),
        }
        n += 1;
    }
    println!(
        "{} packets accepted, then 20 answered 503 storage-full",
        accepted.len()
    );
    assert!(accepted.len() > 10, "precondition: some packets fit");

    // Every accepted packet waits exactly once; no refused one does.
    let mut runs = BTreeMap::<u64, usize>::new();
    config_set(&url, "maxmemory", "0").await; // reading is allowed, but be safe
    for (_, job) in app.jobs().await {
        *runs.entry(job.packet.number).or_default() += 1;
    }
    for number in &accepted {
        assert_eq!(runs.get(number), Some(&1), "accepted packet {number}");
    }
    assert_eq!(
        runs.len(),
        accepted.len(),
        "nothing refused was stored: {runs:?}"
    );

    // Memory returned: writes are accepted again.
    assert_eq!(app.post_number(n).await, 202);
    app.stop().await;
}
