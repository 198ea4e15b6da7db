//! A node without the queue's scripts — a restarted Redis, or a replica promoted by a failover
//! (Redis does not replicate the script cache) — costs callers nothing: every pipeline that runs
//! a script by `EVALSHA` (stats, partition states, settling a batch, batch enqueue with ids)
//! loads what it needs on the node that answered NOSCRIPT and goes on, over the connection it
//! holds (with every pooled connection in use, none waits for another).
//!
//! Found by `.ci/run` on b5eb558: after a failover a POST answered 500 with `Pipeline failure:
//! [(Index 0, NoScript)]` from the stats pipeline, which reloaded scripts only on a lone
//! command's NOSCRIPT. Here `SCRIPT FLUSH` empties the caches of one node, and on a private
//! cluster every master is failed over to its replica (scripts never reach replicas) and then
//! flushed, while a worker holds a batch and every pooled connection is busy.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use queue::Queue;
use support::*;
use testkit::{node_command, RedisCluster, RedisServer};

const PARTITIONS: u16 = 4;
const TASKS: usize = 6;

/// `TASKS` tasks at once, each: stats, partition states and a batch enqueue with ids. Returns
/// what failed (or took over 5 s) and the jobs enqueued.
async fn use_the_pool(q: &Queue<u64>, base: u64) -> (Vec<String>, u64) {
    let tasks = (0..TASKS as u64).map(|t| {
        let q = q.clone();
        tokio::spawn(async move {
            let mut bad = Vec::new();
            let started = Instant::now();
            let call = async {
                if let Err(e) = q.stats().await {
                    bad.push(format!("stats: {e}"));
                }
                if let Err(e) = q.partition_states().await {
                    bad.push(format!("partition states: {e}"));
                }
                let items: Vec<(Option<String>, Option<String>, u64)> = (0..5)
                    .map(|i| {
                        let n = base + t * 5 + i;
                        (None, Some(format!("job-{n}")), n)
                    })
                    .collect();
                match q.enqueue_batch_with_ids(&items).await {
                    Ok(ids) => ids.len() as u64,
                    Err(e) => {
                        bad.push(format!("enqueue: {e}"));
                        0
                    }
                }
            };
            match tokio::time::timeout(Duration::from_secs(5), call).await {
                Ok(n) => (bad, n),
                Err(_) => (
                    vec![format!("task {t} hung for {:?}", started.elapsed())],
                    0,
                ),
            }
        })
    });
    let mut all_bad = Vec::new();
    let mut enqueued = 0;
    for task in futures::future::join_all(tasks).await {
        let (bad, n) = task.expect("task");
        all_bad.extend(bad);
        enqueued += n;
    }
    (all_bad, enqueued)
}

/// Runs the scenario on `q`; `flush` empties the script cache of every node.
async fn scenario<F, Fut>(q: &Queue<u64>, flush: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    q.check_partitions().await.unwrap();
    let (bad, _) = use_the_pool(q, 0).await;
    assert!(bad.is_empty(), "with the scripts loaded: {bad:?}");

    // A worker takes a batch and holds it for 1.5 s; the caches are emptied meanwhile, so its
    // settle meets NOSCRIPT.
    let rec = Recorder::<u64>::ok(Duration::from_millis(1500));
    let (token, task) = spawn_worker(q, rec.clone(), fast_worker("flushed"));
    let started = Instant::now();
    while rec.started_count() < TASKS * 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker took {} of {} jobs",
            rec.started_count(),
            TASKS * 5
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    flush().await;

    let (bad, enqueued) = use_the_pool(q, 1000).await;
    println!(
        "RESULT script cache: after SCRIPT FLUSH {} of {} tasks failed; {enqueued} jobs enqueued",
        bad.len(),
        TASKS
    );
    assert!(bad.is_empty(), "after SCRIPT FLUSH: {bad:?}");
    assert_eq!(enqueued, (TASKS * 5) as u64);

    flush().await;
    // The first batch (flushed mid-run) and the second: every job runs once and is settled.
    let total = 2 * TASKS * 5;
    rec.wait_finished(total, Duration::from_secs(20)).await;
    let settled = Instant::now();
    loop {
        let stats = q.stats().await.unwrap();
        if stats.pending == 0 && stats.backlog == 0 {
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(10),
            "jobs left unsettled: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Longer than two leases: an unsettled batch would have been reclaimed and run again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut runs: HashMap<u64, u32> = HashMap::new();
    for seen in rec.finished() {
        *runs.entry(seen.payload).or_default() += 1;
    }
    assert_eq!(runs.len(), total, "distinct jobs run");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "jobs not run exactly once: {twice:?}");
    stop(token, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_node_without_scripts() {
    init_tracing();
    let server = RedisServer::start().await;
    let url = server.url();
    let q = queue::<u64>(server.pool(), "scripts", "one", |c| {
        c.partitions = PARTITIONS
    });
    scenario(&q, || async {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_without_scripts() {
    init_tracing();
    let cluster = RedisCluster::start().await;
    // As many connections as tasks: every one of them is in use when the caches are emptied.
    let pool = cluster_pool(&cluster, TASKS, Duration::from_secs(2));
    let q = queue::<u64>(pool, "scripts", "cluster", |c| c.partitions = PARTITIONS);
    let ports = cluster.ports.clone();
    let cluster = &cluster;
    scenario(&q, || async {
        // Every master hands over to its replica, which has no scripts (Redis does not
        // replicate the script cache), while every pooled connection's slot map still names the
        // old masters; then no node keeps any script.
        for master in cluster.masters().await {
            cluster.fail_over(master).await;
        }
        cluster.wait_until_ok(Duration::from_secs(30)).await;
        for port in &ports {
            let answer = node_command(*port, &["SCRIPT", "FLUSH"]).await;
            let ok = answer
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("ok"));
            assert!(ok, "SCRIPT FLUSH on {port}: {answer:?}");
        }
    })
    .await;
}

/// The race `.ci/run` met: calls in flight while a master is SIGKILLed. A call whose
/// transaction waits out the failover (sent again while refused) reaches the promoted replica
/// after any reload the caller did before; it must load the scripts there itself. Errors of
/// the failover window (unavailable) are allowed; NOSCRIPT never.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_through_a_failover_never_answer_noscript() {
    init_tracing();
    let mut cluster = RedisCluster::start().await;
    let pool = cluster_pool(&cluster, TASKS, Duration::from_secs(2));
    let q = queue::<u64>(pool, "scripts", "killed", |c| c.partitions = PARTITIONS);
    q.check_partitions().await.unwrap();
    let (bad, _) = use_the_pool(&q, 0).await;
    assert!(bad.is_empty(), "before the failover: {bad:?}");

    let busy = queue::CancellationToken::new();
    let load: Vec<_> = (0..TASKS)
        .map(|_| {
            let (q, busy) = (q.clone(), busy.clone());
            tokio::spawn(async move {
                let (mut calls, mut errors) = (0u64, Vec::new());
                let limit = Duration::from_secs(30);
                while !busy.is_cancelled() {
                    calls += 2;
                    match tokio::time::timeout(limit, q.stats()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => errors.push(format!("stats: {e}")),
                        Err(_) => errors.push("stats: no answer within 30 s".to_string()),
                    }
                    match tokio::time::timeout(limit, q.partition_states()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => errors.push(format!("partition states: {e}")),
                        Err(_) => errors.push("partition states: no answer within 30 s".into()),
                    }
                }
                (calls, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let key = q.keys().stream(0);
    let victim = cluster.master_of(&key).await.expect("a master");
    cluster.kill(victim);
    cluster.promoted_for(&key, victim).await;
    cluster.wait_until_ok(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    busy.cancel();
    let (mut calls, mut errors) = (0, Vec::new());
    for task in load {
        let (c, e) = task.await.expect("load task");
        calls += c;
        errors.extend(e);
    }
    let noscript: Vec<_> = errors
        .iter()
        .filter(|e| e.to_ascii_lowercase().contains("noscript"))
        .collect();
    println!(
        "RESULT script cache through a failover: {calls} calls, {} failed, {} of them NOSCRIPT",
        errors.len(),
        noscript.len()
    );
    assert!(
        noscript.is_empty(),
        "NOSCRIPT through a failover: {noscript:?}"
    );
    let hung: Vec<_> = errors
        .iter()
        .filter(|e| e.contains("within 30 s"))
        .collect();
    assert!(hung.is_empty(), "calls that hung: {hung:?}");
    let (bad, _) = use_the_pool(&q, 1000).await;
    assert!(bad.is_empty(), "after the failover: {bad:?}");
}
