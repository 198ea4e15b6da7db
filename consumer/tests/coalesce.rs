//! Coalesced single enqueues: many concurrent `POST /messages` share pipelined round trips, yet
//! each answer carries its own job id and every accepted packet is in the stream exactly once; a
//! Redis outage answers 503 to every waiting request and enqueues none of them.

use crate::support;

use std::collections::{BTreeSet, HashMap};

use futures::future::join_all;
use serde_json::json;
use support::{config, packet, spawn, spawn_with, App};
use testkit::{assert_problem, RedisServer, TestEnv};

/// POSTs packets `numbers` all at once; the answers in the same order.
async fn post_all(app: &App, numbers: std::ops::Range<u64>) -> Vec<reqwest::Response> {
    let bodies: Vec<serde_json::Value> = numbers
        .map(|n| packet(n, json!({"producer": "co"})))
        .collect();
    join_all(bodies.iter().map(|b| app.post_json("/messages", b))).await
}

/// Asserts every answer is 202 and returns number → job id.
async fn accepted_ids(
    numbers: std::ops::Range<u64>,
    answers: Vec<reqwest::Response>,
) -> HashMap<u64, String> {
    let mut ids = HashMap::new();
    for (n, resp) in numbers.zip(answers) {
        assert_eq!(resp.status(), 202, "packet {n}");
        let body: serde_json::Value = resp.json().await.unwrap();
        let id = body["id"]
            .as_str()
            .expect("id in the 202 answer")
            .to_string();
        ids.insert(n, id);
    }
    ids
}

/// The stream holds exactly the jobs of `ids`, each once, each under the id its POST was given.
async fn assert_stream_holds(app: &App, ids: &HashMap<u64, String>) {
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), ids.len(), "one stream entry per accepted POST");
    let mut seen = BTreeSet::new();
    for (id, job) in &jobs {
        let n = job.packet.number;
        assert!(seen.insert(n), "packet {n} is in the stream twice");
        assert_eq!(
            ids.get(&n),
            Some(id),
            "packet {n} is stored under its answered id"
        );
    }
}

#[tokio::test]
async fn concurrent_posts_each_get_their_own_id_and_are_stored_once() {
    let env = TestEnv::new("consumer_coalesce").await;
    // One round trip in flight at a time, small batches: 300 concurrent POSTs must queue up and go
    // out together in several pipelined batches.
    let app = spawn(
        &env,
        &["--enqueue-batch-max", "16", "--enqueue-in-flight", "1"],
    )
    .await;
    let answers = post_all(&app, 0..300).await;
    let ids = accepted_ids(0..300, answers).await;
    let distinct: BTreeSet<&String> = ids.values().collect();
    assert_eq!(distinct.len(), 300, "every POST got its own job id");
    assert_stream_holds(&app, &ids).await;
    assert_eq!(app.stats().await.backlog, 300);

    // Idle again: a lone POST is sent at once and answered with its own id.
    let resp = app
        .post_json("/messages", &packet(300, json!({"producer": "co"})))
        .await;
    let mut ids = ids;
    ids.extend(accepted_ids(300..301, vec![resp]).await);
    assert_stream_holds(&app, &ids).await;
    app.stop().await;
}

#[tokio::test]
async fn redis_outage_answers_503_to_every_waiting_post_and_enqueues_nothing() {
    let env = TestEnv::new("consumer_coalesce_down").await;
    let mut redis = RedisServer::start().await;
    // The backlog reading stays cached, so the requests reach the enqueue itself.
    let app = spawn_with(config(
        &env,
        &redis.url(),
        &env.elasticsearch_url,
        &["--backlog-cache-ms", "600000", "--enqueue-in-flight", "1"],
    ))
    .await;
    let mut ids = accepted_ids(0..1, post_all(&app, 0..1).await).await;

    redis.kill();
    for (n, resp) in (1..101).zip(post_all(&app, 1..101).await) {
        assert!(resp.headers().contains_key("retry-after"), "packet {n}");
        let v = assert_problem(resp, 503).await;
        assert!(v["detail"].as_str().unwrap().contains("Redis"), "{v}");
    }

    // Back with its AOF: only the packet accepted before the outage is there.
    redis.restart().await;
    assert_stream_holds(&app, &ids).await;

    // And the coalescer recovers: the same packets are accepted now, each once.
    ids.extend(accepted_ids(1..101, post_all(&app, 1..101).await).await);
    assert_stream_holds(&app, &ids).await;
    app.stop().await;
}
