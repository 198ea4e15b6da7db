//! `REDIS_WAIT_REPLICAS` on a Redis that has no replica (a private server): the enqueue is done
//! on the server but no replica confirms it, so `POST /messages` answers 503 `not-replicated`
//! with `Retry-After` instead of 202; the same packet sent again adds no second job (the natural
//! key is the job id); without the wait the same server answers 202.

use crate::support;

use std::time::{Duration, Instant};

use support::{packet, spawn_on};
use testkit::{assert_problem, RedisServer, TestEnv};

#[tokio::test]
async fn an_enqueue_no_replica_confirms_answers_503_and_its_retry_adds_no_second_job() {
    let env = TestEnv::new("consumer_not_replicated").await;
    let server = RedisServer::start().await;
    let url = server.url();
    let app = spawn_on(
        &env,
        &url,
        &[
            "--redis-wait-replicas",
            "1",
            "--redis-wait-timeout-ms",
            "100",
        ],
    )
    .await;
    for _ in 0..2 {
        let started = Instant::now();
        let resp = app
            .post_json("/messages", &packet(7, serde_json::json!({})))
            .await;
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = assert_problem(resp, 503).await;
        assert_eq!(
            body["type"], "urn:conveyor:problem:not-replicated",
            "{body}"
        );
        assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "WAIT waited"
        );
    }
    let stats = app.queue.stats().await.unwrap();
    assert_eq!(stats.backlog, 1, "one job however often sent: {stats:?}");

    let plain = spawn_on(&env, &url, &[]).await;
    assert_eq!(plain.post_number(8).await, 202);
    assert_eq!(plain.queue.stats().await.unwrap().backlog, 2);
}
