//! A master failover under load with the replication wait on (`wait_replicas` = 1), on a private
//! Redis Cluster (3 masters + 3 replicas, never the shared one): producers enqueue numbered jobs
//! with their number as job id (single enqueues and batches), retrying an error with the same id
//! as a real producer does; a worker drains them; the master of the queue's partition 0 is
//! SIGKILLed mid-load, its replica takes over, the killed node is started again (it rejoins as a
//! replica, so `WAIT 1` can be met again). Every enqueue answered `Ok` runs, and runs once —
//! counted per number — and the recovery time (kill → first `Ok` of an enqueue begun after the
//! kill on a partition of the killed master) is printed and bounded.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use queue::{EnqueueOptions, Queue, QueueError, RedisPool};
use support::load::{produce, wait_and_tally, Sent, Tally};
use support::{cluster_pool, fast_worker, queue, spawn_worker, stop, Recorder};
use testkit::{RedisCluster, CLUSTER_NODE_TIMEOUT_MS};

const PARTITIONS: u16 = 6;

#[tokio::test]
async fn every_acknowledged_enqueue_survives_a_master_failover_and_runs_once() {
    let test_start = Instant::now();
    let mut cluster = RedisCluster::start().await;
    let pool = cluster_pool(&cluster, 8, Duration::from_secs(5));
    let ns = testkit::unique_name("failover");
    let q: Queue<u64> = queue(pool, &ns, "fo", |c| {
        c.partitions = PARTITIONS;
        c.wait_replicas = 1;
        c.wait_timeout = Duration::from_millis(500);
    });
    q.check_partitions().await.unwrap();

    let rec = Recorder::<u64>::ok(Duration::ZERO);
    let (worker_token, worker) = spawn_worker(&q, rec.clone(), fast_worker("w-failover"));
    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop_producing = queue::CancellationToken::new();
    let producers = [
        tokio::spawn(produce(
            q.clone(),
            sent.clone(),
            0,
            1,
            stop_producing.clone(),
        )),
        tokio::spawn(produce(
            q.clone(),
            sent.clone(),
            1_000_000,
            10,
            stop_producing.clone(),
        )),
    ];

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim_key = q.keys().stream(0);
    let victim = cluster.master_of(&victim_key).await.expect("a master");
    let mut killed_partitions = Vec::new();
    for p in 0..PARTITIONS {
        if cluster.master_of(&q.keys().stream(p)).await == Some(victim) {
            killed_partitions.push(p);
        }
    }
    let before = sent.lock().unwrap().ok.len();
    cluster.kill(victim);
    let killed_at = Instant::now();
    println!(
        "killed master node {victim} (partitions {killed_partitions:?}) after {before} Ok enqueues"
    );

    // Its replica is promoted; then the killed node comes back (as a replica of the new master).
    let promoted = cluster.promoted_for(&victim_key, victim).await;
    let promoted_after = killed_at.elapsed();
    cluster.restart(victim);
    println!("node {promoted} promoted after {promoted_after:?}; node {victim} restarted");

    // Writes on the promoted master are acknowledged again (WAIT 1 met by the rejoined node).
    let recovered = loop {
        let first = sent
            .lock()
            .unwrap()
            .ok
            .iter()
            .filter(|(_, p, began, _)| *began > killed_at && killed_partitions.contains(p))
            .map(|(_, _, _, at)| *at)
            .min();
        if let Some(at) = first {
            break at - killed_at;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no enqueue on the promoted master was acknowledged within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let target = Duration::from_millis(CLUSTER_NODE_TIMEOUT_MS) + Duration::from_secs(3);
    println!(
        "RESULT queue failover: recovery (kill -> first acknowledged enqueue on the promoted master) \
         {:.2} s (target cluster-node-timeout + 3 s = {:.1} s)",
        recovered.as_secs_f64(),
        target.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_producing.cancel();
    for p in producers {
        p.await.unwrap();
    }

    let Tally {
        accepted,
        lost,
        twice,
        ..
    } = wait_and_tally(&sent, &rec).await;
    stop(worker_token, worker).await;
    println!(
        "RESULT queue failover: acknowledged {}, lost {}, run more than once {}",
        accepted.len(),
        lost.len(),
        twice.len()
    );
    assert!(
        accepted.len() > before,
        "enqueues went on after the failover"
    );
    assert!(lost.is_empty(), "acknowledged but never run: {lost:?}");
    assert!(twice.is_empty(), "run more than once: {twice:?}");
    assert!(
        recovered < target + Duration::from_secs(12),
        "recovery took {recovered:?}"
    );
    println!("test took {:?}", test_start.elapsed());
}

/// With no replica to confirm them, writes are not `Ok`: a single enqueue and a batch answer
/// `NotReplicated` (their jobs stand on the master, so a retry with the same ids adds nothing);
/// once the replica is back, the same calls are `Ok` and each job runs once.
#[tokio::test]
async fn an_enqueue_no_replica_confirms_is_not_ok_and_its_retry_adds_nothing() {
    let mut cluster = RedisCluster::start().await;
    let pool = RedisPool::open(&cluster.url(), 4).unwrap();
    let ns = testkit::unique_name("notrepl");
    let q: Queue<u64> = queue(pool, &ns, "nr", |c| {
        c.wait_replicas = 1;
        c.wait_timeout = Duration::from_millis(300);
    });
    let one = |n: u64| EnqueueOptions {
        job_id: Some(n.to_string()),
        ..EnqueueOptions::default()
    };
    // Right after the cluster is created a replica may still be in its first sync.
    let first = Instant::now();
    while let Err(e) = q.enqueue_with(&1, one(1)).await {
        assert!(e.is_not_replicated(), "{e:?}");
        assert!(
            first.elapsed() < Duration::from_secs(20),
            "no replica in sync"
        );
    }

    let master = cluster.master_of(&q.keys().stream(0)).await.unwrap();
    let replicas = cluster.replicas_of(master).await;
    assert_eq!(replicas.len(), 1, "one replica per master");
    cluster.kill(replicas[0]);
    let started = Instant::now();
    let err = q.enqueue_with(&2, one(2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::NotReplicated {
                wanted: 1,
                acked: 0
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "WAIT waited"
    );
    let batch: Vec<(Option<String>, Option<String>, u64)> =
        (3..6).map(|n| (None, Some(n.to_string()), n)).collect();
    let err = q.enqueue_batch_with_ids(&batch).await.unwrap_err();
    assert!(err.is_not_replicated(), "{err:?}");

    cluster.restart(replicas[0]);
    let again = Instant::now();
    loop {
        match q.enqueue_with(&2, one(2)).await {
            Ok(_) => break,
            Err(e) if e.is_not_replicated() => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(
            again.elapsed() < Duration::from_secs(30),
            "the replica never came back"
        );
    }
    // The rejoined replica may drop its first link once (a second sync): not replicated, retried.
    while let Err(e) = q.enqueue_batch_with_ids(&batch).await {
        assert!(e.is_not_replicated(), "{e:?}");
        assert!(
            again.elapsed() < Duration::from_secs(30),
            "the replica never came back"
        );
    }
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.backlog, 5, "each job once: {stats:?}");

    let rec = Recorder::<u64>::ok(Duration::ZERO);
    let (token, worker) = spawn_worker(&q, rec.clone(), fast_worker("w-notrepl"));
    rec.wait_finished(5, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(token, worker).await;
    let mut runs: Vec<u64> = rec
        .started
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.payload)
        .collect();
    runs.sort_unstable();
    assert_eq!(runs, vec![1, 2, 3, 4, 5], "each job ran once");
}

/// One node: the WAIT goes on the connection that wrote. With no replica attached, `WAIT 1`
/// answers 0 after its timeout: a single enqueue and a batch are `NotReplicated`, their jobs
/// stand (once each, however often retried); without the wait the same server answers `Ok`.
#[tokio::test]
async fn on_one_node_without_replicas_a_replicated_enqueue_is_refused_but_stored_once() {
    let server = testkit::RedisServer::start().await;
    let ns = testkit::unique_name("onenode");
    let q: Queue<u64> = queue(server.pool(), &ns, "nr1", |c| {
        c.wait_replicas = 1;
        c.wait_timeout = Duration::from_millis(100);
    });
    let opts = EnqueueOptions {
        job_id: Some("a".into()),
        ..EnqueueOptions::default()
    };
    for _ in 0..2 {
        let err = q.enqueue_with(&1, opts.clone()).await.unwrap_err();
        assert!(
            matches!(
                err,
                QueueError::NotReplicated {
                    wanted: 1,
                    acked: 0
                }
            ),
            "{err:?}"
        );
    }
    let batch: Vec<(Option<String>, Option<String>, u64)> =
        (2..5).map(|n| (None, Some(n.to_string()), n)).collect();
    for _ in 0..2 {
        let err = q.enqueue_batch_with_ids(&batch).await.unwrap_err();
        assert!(err.is_not_replicated(), "{err:?}");
    }
    assert_eq!(q.stats().await.unwrap().backlog, 4, "each job stored once");

    let plain: Queue<u64> = queue(server.pool(), &ns, "nr1", |_| {});
    plain.enqueue(&5).await.unwrap();
    assert_eq!(plain.stats().await.unwrap().backlog, 5);
}
