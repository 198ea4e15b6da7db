//! Redis restarts under a running worker (a private `redis-server` with AOF, restarted while jobs
//! flow): the worker logs, backs off, reconnects and finishes everything without a restart of
//! its own; jobs enqueued before and after the restart all run, and the stream ends empty.

use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::*;
use testkit::{xlen, RedisServer};

#[tokio::test]
async fn the_worker_reconnects_after_a_redis_restart_and_finishes_the_rest() {
    init_tracing();
    let mut server = RedisServer::start().await;
    let pool = server.pool();
    let q = queue::<u32>(pool.clone(), "restart", "jobs", |c| c.partitions = 2);
    q.enqueue_batch(&(0..3000).collect::<Vec<_>>())
        .await
        .unwrap();
    // Slow enough that the restart lands mid-run.
    let rec = Recorder::<u32>::ok(Duration::from_millis(20));
    let mut cfg = fast_worker("survivor");
    cfg.batch_size = 20;
    cfg.concurrency = 2;
    let (token, task) = spawn_worker(&q, rec.clone(), cfg);
    let start = Instant::now();
    while rec.finished_ids().len() < 300 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "worker never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.restart().await;
    let at_restart = rec.finished_ids().len();
    assert!(
        at_restart < 3000,
        "the restart happened mid-run ({at_restart} done)"
    );
    // New work after the restart goes through the same worker.
    let mut late = Vec::new();
    let t = Instant::now();
    while late.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "cannot enqueue after the restart"
        );
        if let Ok(ids) = q.enqueue_batch(&(3000..3100).collect::<Vec<_>>()).await {
            late = ids;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    rec.wait_finished(3100, Duration::from_secs(15)).await;
    let payloads: HashSet<u32> = rec.finished().iter().map(|s| s.payload).collect();
    assert_eq!(
        payloads,
        (0..3100).collect(),
        "nothing lost across the restart"
    );
    assert!(!task.is_finished(), "the worker kept running");
    let t = Instant::now();
    loop {
        let s = q.stats().await.unwrap();
        if s.backlog + s.pending == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "left over after the restart: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in 0..2 {
        assert_eq!(xlen(&pool, &stream_key("restart", "jobs", p)).await, 0);
    }
    // Request/reply also survives: its subscriber reconnected by itself.
    let reply: serde_json::Value = q
        .enqueue_and_wait(&7, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, serde_json::Value::Null);
    server.restart().await;
    let t = Instant::now();
    let reply = loop {
        match q
            .enqueue_and_wait::<serde_json::Value>(&8, Duration::from_secs(2))
            .await
        {
            Ok(v) => break v,
            Err(e) => {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "request/reply never recovered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(reply, serde_json::Value::Null);
    assert!(rec.finished().iter().any(|s| s.payload == 8));
    stop(token, task).await;
}
