//! `producer --bench` stops on SIGTERM while the API refuses it: the real consumer with its
//! backlog at a limit of 10 and no worker to drain it answers every POST 429 (Retry-After 1 s),
//! so each request waits to retry (up to 20 times) — the signal must end those waits at once,
//! not after the retries run out. The report then says how many requests were given up.

use std::time::Duration;

use e2e::{Service, Stack};
use testkit::TestEnv;

#[tokio::test]
async fn bench_producer_stops_on_sigterm_while_retrying() {
    let env = TestEnv::new("producer_stop").await;
    let stack = Stack::builder(&env)
        .workers(0)
        .env_for(Service::Consumer, "BACKLOG_LIMIT", "10")
        .start()
        .await
        .unwrap();
    let mut producer = stack
        .spawn_producer(&[
            "--bench",
            "--count",
            "100000",
            "--batch",
            "50",
            "--concurrency",
            "4",
        ])
        .unwrap();
    // The first batches fill the backlog past 10; from then on every POST is answered 429.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats: serde_json::Value = env
            .http
            .get(format!("{}/stats", stack.consumer_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["queue"]["backlog"].as_u64().unwrap_or(0) >= 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backlog never reached its limit: {stats}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        producer.is_running(),
        "still retrying before the signal: {}",
        producer.output()
    );
    assert!(
        producer.terminate(Duration::from_secs(5)),
        "exited within 5 s of SIGTERM (its retries alone would take 20 s): {}",
        producer.output()
    );
    let out = producer.output();
    let bench = out
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("a report after SIGTERM: {out}"));
    let field = |name: &str| -> u64 {
        bench
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {bench}"))
    };
    assert!(
        field("stopped") >= 1,
        "requests waiting to retry were given up: {bench}"
    );
    assert_eq!(field("errors"), 0, "nothing counted as refused: {bench}");
    assert!(field("packets") >= 10, "{bench}");
}
