//! Dependencies going away: a killed Redis answers 503 (Retry-After) on ingest and /stats and
//! readiness fails; Elasticsearch cut off by a proxy fails readiness and reads with 503; a
//! consumer started while Elasticsearch is down creates its index once it is back. The shared
//! servers are never touched: a private redis-server and a TCP proxy stand in.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{config, packet, spawn_on, spawn_with};
use testkit::{assert_problem, RedisServer, TcpProxy, TestEnv};

#[tokio::test]
async fn killed_redis_is_503_and_recovers() {
    let env = TestEnv::new("consumer_503").await;
    let mut redis = RedisServer::start().await;
    let app = spawn_on(&env, &redis.url(), &["--backlog-cache-ms", "0"]).await;
    assert_eq!(app.post_number(1).await, 202);
    let ready = app.http.get(app.at("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    redis.kill();
    let resp = app.post_json("/messages", &packet(2, json!({}))).await;
    assert!(resp.headers().contains_key("retry-after"));
    let v = assert_problem(resp, 503).await;
    assert!(v["detail"].as_str().unwrap().contains("Redis"), "{v}");
    assert_problem(
        app.post_json("/messages/batch", &json!([packet(3, json!({}))]))
            .await,
        503,
    )
    .await;
    assert_problem(app.http.get(app.at("/stats")).send().await.unwrap(), 503).await;
    let ready = app.http.get(app.at("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "unavailable", "redis": "down", "elasticsearch": "ok"})
    );

    // Back with its AOF: the one accepted job is there, the rejected ones are not.
    redis.restart().await;
    assert_eq!(app.stats().await.backlog, 1);
    let jobs = app.jobs().await;
    assert_eq!(
        jobs.iter()
            .map(|(_, j)| j.packet.number)
            .collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(
        app.post_json("/messages", &packet(4, json!({})))
            .await
            .status(),
        202
    );
    assert_eq!(app.stats().await.backlog, 2);
    app.stop().await;
}

#[tokio::test]
async fn elasticsearch_cut_off_fails_readiness_and_reads_but_not_ingest() {
    let env = TestEnv::new("consumer_esdown").await;
    let target: SocketAddr = env.elasticsearch_addr();
    let proxy = TcpProxy::start(target).await;
    let app = spawn_with(config(&env, &env.redis_url, &proxy.http_url(), &[])).await;
    assert_eq!(
        app.http
            .get(app.at("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    proxy.set_enabled(false);
    let ready = app.http.get(app.at("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "unavailable", "redis": "ok", "elasticsearch": "down"})
    );
    let v = assert_problem(app.http.get(app.at("/stats")).send().await.unwrap(), 503).await;
    assert!(
        v["detail"].as_str().unwrap().contains("Elasticsearch"),
        "{v}"
    );
    assert_problem(app.http.get(app.at("/messages")).send().await.unwrap(), 503).await;
    assert_problem(
        app.http.get(app.at("/messages/p/1")).send().await.unwrap(),
        503,
    )
    .await;
    // Ingest only needs Redis: packets are still accepted and wait in the queue.
    assert_eq!(
        app.post_json("/messages", &packet(1, json!({})))
            .await
            .status(),
        202
    );
    assert_eq!(app.stats().await.backlog, 1);

    proxy.set_enabled(true);
    assert_eq!(
        app.http
            .get(app.at("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn healthz_answers_while_everything_is_down() {
    let env = TestEnv::new("consumer_live").await;
    let dead_redis = format!("redis://127.0.0.1:{}", testkit::free_port());
    let dead_es = format!("http://127.0.0.1:{}", testkit::free_port());
    let app = spawn_with(config(&env, &dead_redis, &dead_es, &[])).await;
    assert_eq!(
        app.http
            .get(app.at("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.at("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_problem(app.post_json("/messages", &packet(1, json!({}))).await, 503).await;
    app.stop().await;
}

/// HTTP status of `HEAD /<index>` on the real Elasticsearch (200 exists, 404 absent).
async fn index_status(env: &TestEnv, index: &str) -> u16 {
    let url = format!("{}/{index}", env.elasticsearch_url);
    env.http.head(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn messages_index_is_created_once_elasticsearch_comes_back() {
    let env = TestEnv::new("consumer_esstart").await;
    let target: SocketAddr = env.elasticsearch_addr();
    let proxy = TcpProxy::start(target).await;
    proxy.set_enabled(false);
    let app = spawn_with(config(&env, &env.redis_url, &proxy.http_url(), &[])).await;
    let index = env.index("messages");

    // Down at start: the API serves, the background retry has not created anything yet.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(index_status(&env, &index).await, 404);
    assert_eq!(
        app.post_json("/messages", &packet(1, json!({})))
            .await
            .status(),
        202
    );

    proxy.set_enabled(true);
    let deadline = Instant::now() + Duration::from_secs(15);
    while index_status(&env, &index).await != 200 {
        assert!(Instant::now() < deadline, "index {index} never created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mapping: serde_json::Value = env
        .http
        .get(format!("{}/{index}/_mapping", env.elasticsearch_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Through the alias: keyed by the daily index behind it (today's, created at start-up).
    let today = env.index(&format!(
        "messages-{}",
        chrono::Utc::now().format("%Y.%m.%d")
    ));
    assert_eq!(
        mapping[&today]["mappings"]["dynamic"], "strict",
        "{mapping}"
    );
    app.stop().await;
}
