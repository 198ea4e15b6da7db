//! A stop and start of the whole stack, as a user does with `./setup.sh stop` and `./setup.sh`:
//! the real consumer, two workers and the dashboard on a private Redis with AOF. A load run of
//! more than `BACKLOG_LIMIT` messages (with the AOF rewrite Redis makes by itself on long runs),
//! everything stopped with SIGTERM, Redis too, then started again. Afterwards writes must be
//! accepted and `/stats` and the dashboard must show the backlog the streams really hold: none.

use std::time::{Duration, Instant};

use e2e::es::wait_for_count;
use e2e::{Service, Stack};
use serde_json::Value;
use testkit::{RedisServer, TestEnv};

const LIMIT: &str = "300";

async fn start(env: &TestEnv, server: &RedisServer) -> Stack {
    Stack::builder(env)
        .redis_url(server.url())
        .workers(2)
        .dashboard(true)
        .env_for(Service::Consumer, "BACKLOG_LIMIT", LIMIT)
        .env_for(Service::Consumer, "BACKLOG_CACHE_MS", "0")
        .start()
        .await
        .unwrap()
}

async fn produce(stack: &Stack, start: u64, count: u64) {
    let (start, count) = (start.to_string(), count.to_string());
    let out = stack
        .run_producer(&[
            "--bench",
            "--start",
            &start,
            "--count",
            &count,
            "--batch",
            "50",
            "--concurrency",
            "4",
            "--resources",
            "off",
        ])
        .await
        .unwrap();
    assert!(out.contains("errors=0"), "{out}");
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn after_a_stop_and_start_writes_are_accepted_and_the_backlog_is_real() {
    let env = TestEnv::new("stack_restart").await;
    let mut server = RedisServer::start().await;
    let mut stack = start(&env, &server).await;
    produce(&stack, 0, 1000).await;
    wait_for_count(&env, "messages", 1000, Duration::from_secs(60)).await;
    server.rewrite_aof().await;
    produce(&stack, 1000, 1000).await;
    assert_eq!(
        wait_for_count(&env, "messages", 2000, Duration::from_secs(60)).await,
        2000
    );

    assert!(
        stack.stop(Duration::from_secs(15)),
        "every service stopped on SIGTERM"
    );
    server.stop();
    server.restart().await;
    let stack = start(&env, &server).await;

    let resp = reqwest::Client::new()
        .post(format!("{}/messages", stack.consumer_url()))
        .json(&serde_json::json!({
            "number": 2000,
            "sent_at": chrono::Utc::now().to_rfc3339(),
            "producer": "default",
        }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 202, "{}", resp.text().await.unwrap());
    assert_eq!(
        wait_for_count(&env, "messages", 2001, Duration::from_secs(30)).await,
        2001
    );

    // Both figures a user reads settle on the truth: nothing waits.
    let started = Instant::now();
    loop {
        let stats = get_json(&format!("{}/stats", stack.consumer_url())).await;
        let page = get_json(&format!("{}/api/stats", stack.dashboard_url())).await;
        let backlogs = (&stats["queue"]["backlog"], &page["queue"]["backlog"]);
        if backlogs == (&Value::from(0), &Value::from(0)) && page["stale"] == false {
            assert_eq!(stats["queue"]["pending"], 0, "{stats}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "backlog after the restart: /stats {stats}, dashboard {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
