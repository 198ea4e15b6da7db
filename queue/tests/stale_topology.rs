//! After a master failover, no pooled cluster connection keeps waiting on the dead master.
//!
//! Found as a user on `./setup.sh --cluster`: after SIGKILL of a master and its replica's
//! promotion, `/stats` and POSTs went on taking 0.3–5 s now and then, more than 40 s later
//! (503 when past the response timeout). A cluster transaction refused with `MOVED` teaches
//! redis-rs nothing, so a connection that was idle in the pool during the failover kept the
//! dead master in its slot map. Here, on a private cluster: eight tasks use the pool at once
//! (`stats`, a transaction on every partition, and batch enqueues) before the kill and through
//! the failover, the master of the queue's first partition is SIGKILLed and left dead, and once
//! its replica is promoted and the cluster is ok, eight tasks use the pool again. No call may
//! then fail or a round outlast twice the 1 s response timeout, and the jobs enqueued after
//! the failover are in the queue.

use crate::support;

use std::time::{Duration, Instant};

use queue::Queue;
use support::{cluster_pool, queue};
use testkit::RedisCluster;

const PARTITIONS: u16 = 12;
const TASKS: u64 = 8;
const ROUNDS: u64 = 30;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `ROUNDS` rounds of `stats` and a 5-job batch in each of `TASKS` tasks at once; returns
/// the calls that failed or took longer than the response timeout, the slowest call, and the
/// jobs enqueued.
async fn use_the_pool(q: &Queue<u64>, base: u64) -> (Vec<String>, Duration, u64) {
    let tasks = (0..TASKS).map(|t| {
        let q = q.clone();
        tokio::spawn(async move {
            let mut bad = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut enqueued = 0;
            for r in 0..ROUNDS {
                let started = Instant::now();
                if let Err(e) = q.stats().await {
                    bad.push(format!("stats: {e}"));
                }
                let items: Vec<(Option<String>, Option<String>, u64)> = (0..5)
                    .map(|i| {
                        let n = base + (t * ROUNDS + r) * 5 + i;
                        (None, Some(n.to_string()), n)
                    })
                    .collect();
                match q.enqueue_batch_with_ids(&items).await {
                    Ok(ids) => enqueued += ids.len() as u64,
                    Err(e) => bad.push(format!("enqueue: {e}")),
                }
                let took = started.elapsed();
                slowest = slowest.max(took);
                if took > 2 * RESPONSE_TIMEOUT {
                    bad.push(format!("round {r} of task {t} took {took:?}"));
                }
            }
            (bad, slowest, enqueued)
        })
    });
    let mut all_bad = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut enqueued = 0;
    for task in futures::future::join_all(tasks).await {
        let (bad, slow, n) = task.expect("task");
        all_bad.extend(bad);
        slowest = slowest.max(slow);
        enqueued += n;
    }
    (all_bad, slowest, enqueued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_failover_no_pooled_connection_waits_on_the_dead_master() {
    let mut cluster = RedisCluster::start().await;
    let pool = cluster_pool(&cluster, TASKS as usize, RESPONSE_TIMEOUT);
    let ns = testkit::unique_name("stale");
    let q: Queue<u64> = queue(pool, &ns, "stale", |c| c.partitions = PARTITIONS);
    q.check_partitions().await.unwrap();

    let (bad, slowest, before) = use_the_pool(&q, 0).await;
    assert!(bad.is_empty(), "before the failover: {bad:?}");
    println!("before the failover: {before} jobs enqueued, slowest round {slowest:?}");

    // The pool stays busy through the failover, as a service's does: its connections meet
    // the dead master and the refusals of the failover window (errors are expected here).
    let busy = queue::CancellationToken::new();
    let load = (0..TASKS).map(|t| {
        let (q, busy) = (q.clone(), busy.clone());
        tokio::spawn(async move {
            let mut n = 2_000_000 + t * 1_000_000;
            while !busy.is_cancelled() {
                let _ = tokio::time::timeout(RESPONSE_TIMEOUT, q.stats()).await;
                n += 1;
                let job = [(None, Some(n.to_string()), n)];
                let _ =
                    tokio::time::timeout(RESPONSE_TIMEOUT, q.enqueue_batch_with_ids(&job)).await;
            }
        })
    });
    let load: Vec<_> = load.collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let victim_key = q.keys().stream(0);
    let victim = cluster.master_of(&victim_key).await.expect("a master");
    cluster.kill(victim);
    let killed_at = Instant::now();
    let promoted = cluster.promoted_for(&victim_key, victim).await;
    cluster.wait_until_ok(Duration::from_secs(30)).await;
    busy.cancel();
    for task in load {
        task.await.expect("load task");
    }
    println!(
        "node {victim} killed, node {promoted} promoted after {:?}; node {victim} stays dead",
        killed_at.elapsed()
    );

    let backlog_before = q.stats().await.unwrap().backlog;
    let (bad, slowest, after) = use_the_pool(&q, 1_000_000).await;
    println!(
        "RESULT stale topology: after the failover {} of {} rounds failed or took over {:?}; slowest round {slowest:?}",
        bad.len(),
        TASKS * ROUNDS,
        2 * RESPONSE_TIMEOUT
    );
    assert!(bad.is_empty(), "after the failover: {bad:?}");
    assert_eq!(after, TASKS * ROUNDS * 5, "every batch enqueued");
    let backlog = q.stats().await.unwrap().backlog;
    assert_eq!(
        backlog - backlog_before,
        after,
        "every job enqueued after the failover is in the queue"
    );
}
