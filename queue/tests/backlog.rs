//! The backlog `Queue::stats` reports is the number of entries really waiting, whatever Redis
//! went through: deletes, reclaims, retries, dead letters, and restarts from a rewritten
//! append-only file. Checked against a private `redis-server` (AOF on) and an oracle that counts
//! the waiting entries one by one: the entries after the group's last-delivered id (`XRANGE`).
//!
//! Why the restore matters: Redis derives XINFO's `lag` from two counters (entries-added,
//! entries-read). A restart from a rewritten AOF replays every later read as `XCLAIM … LASTID`,
//! which moves the group's last id but not entries-read, so `lag` then counts entries that
//! were delivered, acked and deleted long ago ("The API refuses every write after a restart").

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use queue::{Queue, QueueStats};
use redis::streams::StreamInfoGroupsReply;
use support::*;
use testkit::{xlen, RedisServer};

const PARTITIONS: u16 = 4;

/// XINFO's `lag` summed over the partitions (what the backlog was read from before): `None`
/// when Redis reports none for some partition.
async fn redis_lag(pool: &Pool, ns: &str, name: &str, partitions: u16) -> Option<u64> {
    let mut conn = pool.get().await.unwrap();
    let mut sum = 0;
    for p in 0..partitions {
        let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream_key(ns, name, p))
            .query_async(&mut conn)
            .await
            .ok()?;
        sum += groups.groups.first()?.lag? as u64;
    }
    Some(sum)
}

async fn assert_exact(q: &Queue<u32>, pool: &Pool, name: &str, when: &str) -> QueueStats {
    let stats = q.stats().await.unwrap();
    let (waiting, pending) = waiting_and_pending(pool, "backlog", name, PARTITIONS).await;
    assert_eq!(
        (stats.backlog, stats.pending),
        (waiting, pending),
        "{when}: reported backlog/pending vs entries really waiting/pending \
         (XINFO lag says {:?})",
        redis_lag(pool, "backlog", name, PARTITIONS).await
    );
    stats
}

/// Drains everything with a fresh worker and stops it.
async fn drain(q: &Queue<u32>, consumer: &str, n: usize) -> Recorder<u32> {
    let rec = Recorder::<u32>::ok(Duration::ZERO);
    let (token, task) = spawn_worker(q, rec.clone(), fast_worker(consumer));
    rec.wait_finished(n, Duration::from_secs(20)).await;
    stop(token, task).await;
    rec
}

/// Runs in a long-lived Redis: a few thousand jobs, an automatic AOF rewrite in between, more
/// jobs, then a restart (SIGKILL) — after which the group's entries-read lags behind.
async fn a_redis_with_history(server: &mut RedisServer, q: &Queue<u32>) {
    q.enqueue_batch(&(0..1000).collect::<Vec<_>>())
        .await
        .unwrap();
    drain(q, "early", 1000).await;
    server.rewrite_aof().await;
    q.enqueue_batch(&(1000..2500).collect::<Vec<_>>())
        .await
        .unwrap();
    drain(q, "later", 1500).await;
    server.restart().await;
}

#[tokio::test]
async fn a_restart_from_a_rewritten_aof_leaves_no_phantom_backlog() {
    init_tracing();
    let mut server = RedisServer::start().await;
    let pool = server.pool();
    let q = queue::<u32>(pool.clone(), "backlog", "restored", |c| {
        c.partitions = PARTITIONS
    });
    a_redis_with_history(&mut server, &q).await;
    let stats = assert_exact(&q, &pool, "restored", "after the restart").await;
    assert_eq!((stats.backlog, stats.pending), (0, 0), "{stats:?}");
    // Redis itself still believes in entries that are long gone: what the old reading showed.
    // (If this Redis stops drifting, the test no longer reproduces the bug: say so loudly.)
    let lag = redis_lag(&pool, "backlog", "restored", PARTITIONS).await;
    println!("XINFO lag after the restart: {lag:?}; reported backlog 0");
    assert!(
        lag.is_some_and(|l| l > 0),
        "precondition: XINFO lag drifts after a restart from a rewritten AOF (got {lag:?})"
    );
    // New work is counted from there, exactly.
    q.enqueue_batch(&(0..77).collect::<Vec<_>>()).await.unwrap();
    let stats = assert_exact(&q, &pool, "restored", "after 77 new jobs").await;
    assert_eq!(stats.backlog, 77);
    drain(&q, "after", 77).await;
    let stats = assert_exact(&q, &pool, "restored", "drained again").await;
    assert_eq!(stats.backlog, 0);
}

#[tokio::test]
async fn deletes_and_reclaims_leave_the_backlog_exact() {
    init_tracing();
    let mut server = RedisServer::start().await;
    let pool = server.pool();
    let name = "reclaimed";
    let q = queue::<u32>(pool.clone(), "backlog", name, |c| c.partitions = PARTITIONS);
    a_redis_with_history(&mut server, &q).await;

    // A worker takes jobs and dies holding them (its runtime is shut down: heartbeat and all).
    q.enqueue_batch(&(0..500).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut cfg = fast_worker("doomed");
    cfg.batch_size = 40;
    cfg.concurrency = 3;
    let (doomed, taken) = spawn_doomed_worker(
        &server.url(),
        "backlog",
        name,
        |c| c.partitions = PARTITIONS,
        cfg,
    );
    wait_taken(&taken, 120, Duration::from_secs(20)).await;
    doomed.shutdown_background();
    let lag = redis_lag(&pool, "backlog", name, PARTITIONS).await;
    let stats = assert_exact(&q, &pool, name, "with a dead worker's jobs pending").await;
    assert_eq!(stats.backlog + stats.pending, 500, "{stats:?}");
    assert!(stats.pending >= 120, "{stats:?}");
    assert!(
        lag.is_some_and(|l| l > stats.backlog),
        "precondition: XINFO lag ({lag:?}) overstates the backlog here ({stats:?})"
    );

    // A live worker reclaims them once the lease runs out, and acks + deletes everything.
    let rec = drain(&q, "survivor", 500).await;
    let mut runs: HashMap<queue::JobId, usize> = HashMap::new();
    for seen in rec.finished() {
        *runs.entry(seen.id).or_default() += 1;
    }
    assert_eq!(runs.len(), 500, "every job ran on the survivor");
    let stats = assert_exact(&q, &pool, name, "after reclaim and drain").await;
    assert_eq!((stats.backlog, stats.pending), (0, 0), "{stats:?}");
    for p in 0..PARTITIONS {
        assert_eq!(xlen(&pool, &stream_key("backlog", name, p)).await, 0);
    }
}

#[tokio::test]
async fn deletes_and_reclaims_on_a_fresh_redis_stay_exact_too() {
    // The same dance without any restart: Redis's own counters happen to stay right here, and
    // the reported backlog must too (a guard, not a reproduction).
    init_tracing();
    let server = RedisServer::start().await;
    let pool = server.pool();
    let name = "fresh";
    let q = queue::<u32>(pool.clone(), "backlog", name, |c| c.partitions = PARTITIONS);
    q.enqueue_batch(&(0..300).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    // Read 100 by hand as a consumer that then vanishes, then let a worker reclaim + drain.
    for p in 0..PARTITIONS {
        let key = stream_key("backlog", name, p);
        let _: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg(queue::GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(queue::GROUP)
            .arg("vanished")
            .arg("COUNT")
            .arg(25)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let stats = assert_exact(&q, &pool, name, "after the vanished reads").await;
    assert_eq!((stats.backlog, stats.pending), (200, 100));
    drain(&q, "survivor", 300).await;
    let stats = assert_exact(&q, &pool, name, "drained").await;
    assert_eq!((stats.backlog, stats.pending), (0, 0));
}
