//! Issue 15, finding 4 (second half): results announced while a waiter's subscriber was away
//! are read back by the sweep after it reconnects — and a sweep that fails is retried, not only
//! logged, so such a result still reaches its waiter. A private `redis-server` with an ACL user
//! for the waiting side: the test takes its channels away (the subscriber is cut off while a
//! worker stores and announces the result), gives them back with GET still refused (the
//! subscriber reconnects and its first sweep fails), then gives GET back.

use crate::support;

use std::time::{Duration, Instant};

use queue::{Job, Outcome, Queue, QueueConfig};
use support::*;
use testkit::RedisServer;

async fn acl(admin: &mut deadpool_redis::Connection, rules: &[&str]) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("waiter")
        .arg(rules)
        .query_async(admin)
        .await
        .expect("ACL SETUSER");
}

/// Waits until `check` holds, or panics with `what` after `within`.
async fn until<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_failed_result_sweep_after_a_reconnect_is_retried() {
    let redis = RedisServer::start().await;
    let admin_pool = redis.pool();
    let mut admin = admin_pool.get().await.expect("admin");
    acl(&mut admin, &["on", ">waiter-pass", "~*", "&*", "+@all"]).await;
    let url = format!("redis://waiter:waiter-pass@127.0.0.1:{}", redis.port);
    let ns = testkit::unique_name("sweep");
    let waiting: Queue<u64> = Queue::new(testkit::redis_pool(&url), QueueConfig::new(&ns, "sweep"))
        .with_redis_connection(
            redis::IntoConnectionInfo::into_connection_info(url.as_str()).unwrap(),
        );
    let channel = waiting.keys().results_channel();
    let stream = waiting.keys().stream(0);
    let wait = tokio::spawn(async move {
        waiting
            .enqueue_and_wait::<u64>(&7, Duration::from_secs(15))
            .await
    });
    until(Duration::from_secs(5), "the job is enqueued", || async {
        testkit::xlen(&admin_pool, &stream).await == 1
    })
    .await;

    // The waiting side loses its channels (its subscriber is disconnected and cannot subscribe
    // again) and GET; a worker stores and announces the result meanwhile: nobody hears it.
    acl(&mut admin, &["resetchannels", "-get"]).await;
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg("waiter")
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    let working: Queue<u64> = Queue::new(redis.pool(), QueueConfig::new(&ns, "sweep"));
    let rec = Recorder::new(Duration::ZERO, |j: &Job<u64>| {
        Outcome::Done(serde_json::json!(j.payload * 6))
    });
    let (token, task) = spawn_worker(&working, rec.clone(), fast_worker("sweeper"));
    rec.wait_finished(1, Duration::from_secs(10)).await;
    until(Duration::from_secs(5), "the job is settled", || async {
        pending(&admin_pool, &stream).await == 0
    })
    .await;

    // Channels back, GET still refused: the subscriber comes back and its sweep fails.
    acl(&mut admin, &["allchannels"]).await;
    let pool = admin_pool.clone();
    until(Duration::from_secs(8), "the subscriber is back", || {
        let (pool, channel) = (pool.clone(), channel.clone());
        async move {
            let (_, n): (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut pool.get().await.unwrap())
                .await
                .unwrap();
            n == 1
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!wait.is_finished(), "no result can have arrived yet");

    // GET back: the retried sweep reads the stored result and hands it to the waiter.
    acl(&mut admin, &["+get"]).await;
    let regained = Instant::now();
    let answer = wait.await.expect("waiter task");
    assert_eq!(
        answer.as_ref().ok(),
        Some(&42),
        "the result announced while the subscriber was away reached its waiter: {answer:?}"
    );
    assert!(
        regained.elapsed() < Duration::from_secs(4),
        "delivered {:?} after GET was allowed again",
        regained.elapsed()
    );
    stop(token, task).await;
    assert_eq!(rec.started_count(), 1, "the job ran once");
}
