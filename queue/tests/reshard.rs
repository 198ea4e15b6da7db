//! Slots of live partitions move while jobs flow, on a private Redis Cluster (3 masters + 3
//! replicas, never the shared one): producers enqueue numbered jobs (single enqueues and
//! batches, their number as job id, an error retried with the same ids), two workers drain
//! them, and meanwhile
//! 1. `redis-cli --cluster reshard` moves the slots of the master of partition 0 up to
//!    partition 0's to another master (the partitions' tags spread over the slot space,
//!    partition 0 in the first twelfth),
//! 2. a second `reshard` moves the third master's slots up to partition 8's,
//! 3. partition 4's slot is migrated by hand, a few keys at a time with pauses, so producers
//!    and workers meet the slot half-moved (`ASK`, `TRYAGAIN`) for a while before it is
//!    handed over (`MOVED`).
//!
//! No enqueue fails; every enqueue answered `Ok` runs, and runs once (counted per number);
//! nothing is stuck: no
//! job waits, is pending or is dead at the end; the moved partitions are served by their new
//! masters.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use queue::{Queue, RedisPool, WorkerConfig};
use support::load::{produce, wait_and_tally, Sent, Tally};
use support::{queue, spawn_worker, stop, Recorder};
use testkit::{node_command, RedisCluster};

const PARTITIONS: u16 = 12;

/// The node id of the node on `port`.
async fn node_id(port: u16) -> String {
    node_command(port, &["CLUSTER", "MYID"])
        .await
        .expect("node answers CLUSTER MYID")
}

/// `redis-cli --cluster reshard` of `slots` slots from node `from` to node `to`.
fn reshard(seed: u16, from: &str, to: &str, slots: u32) {
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "reshard", &format!("127.0.0.1:{seed}")])
        .args(["--cluster-from", from, "--cluster-to", to])
        .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "reshard failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Migrates slot `slot` from the master on `from` to the master on `to` the way
/// `redis-cli` does, but slowly: IMPORTING/MIGRATING, then `MIGRATE` of 3 keys at a time with
/// 40 ms between, then the slot handed to `to` on every master. Returns the keys moved.
async fn migrate_slowly(masters: &[u16], slot: u16, from: u16, to: u16) -> usize {
    let (from_id, to_id) = (node_id(from).await, node_id(to).await);
    let s = slot.to_string();
    let set = |port: u16, args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = node_command(port, &args).await;
        let ok = reply
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case("ok"));
        assert!(ok, "{args:?} on {port}: {reply:?}");
    };
    let cmd = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    set(to, cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id])).await;
    set(from, cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id])).await;
    let client = redis::Client::open(format!("redis://127.0.0.1:{from}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut moved = 0;
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(3)
            .query_async(&mut conn)
            .await
            .unwrap();
        if keys.is_empty() {
            break;
        }
        let _: redis::Value = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
        moved += keys.len();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // The new owner first, then the old one, then the rest (as redis-cli does).
    set(to, cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id])).await;
    set(from, cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id])).await;
    for &m in masters.iter().filter(|&&m| m != from && m != to) {
        set(m, cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id])).await;
    }
    moved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_of_live_partitions_move_under_load_and_every_job_runs_once() {
    let test_start = Instant::now();
    let cluster = RedisCluster::start().await;
    let pool = RedisPool::open(&cluster.url(), 8).unwrap();
    let ns = testkit::unique_name("reshard");
    let q: Queue<u64> = queue(pool, &ns, "rs", |c| c.partitions = PARTITIONS);
    q.check_partitions().await.unwrap();

    let rec = Recorder::<u64>::ok(Duration::ZERO);
    let worker = |name: &str| WorkerConfig {
        consumer: name.to_string(),
        batch_size: 50,
        lease: Duration::from_secs(3),
        block: Duration::from_millis(200),
        shutdown_deadline: Duration::from_secs(5),
        ..WorkerConfig::default()
    };
    let workers = [
        spawn_worker(&q, rec.clone(), worker("w-reshard-1")),
        spawn_worker(&q, rec.clone(), worker("w-reshard-2")),
    ];
    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop_producing = queue::CancellationToken::new();
    let producers = [(0, 1), (1_000_000, 10), (2_000_000, 25)].map(|(from, batch)| {
        tokio::spawn(produce(
            q.clone(),
            sent.clone(),
            from,
            batch,
            stop_producing.clone(),
        ))
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    let master_of = |p: u16| {
        let key = q.keys().stream(p);
        let cluster = &cluster;
        async move { cluster.master_of(&key).await.expect("a master") }
    };
    let before: Vec<usize> = futures::future::join_all((0..PARTITIONS).map(master_of)).await;
    let masters: Vec<u16> = {
        let mut m: Vec<usize> = before.clone();
        m.sort_unstable();
        m.dedup();
        m.into_iter().map(|i| cluster.ports[i]).collect()
    };
    assert_eq!(
        masters.len(),
        3,
        "partitions on all three masters: {before:?}"
    );
    let port = |i: usize| cluster.ports[i];
    let other = |a: usize, b: usize| {
        *masters
            .iter()
            .find(|&&m| m != port(a) && m != port(b))
            .expect("a third master")
    };

    // `redis-cli --cluster reshard` takes a source's slots from its lowest; the three masters
    // own 0-5460, 5461-10922 and 10923-16383 (as `--cluster create` made them).
    let slot_of = |p: u16| u32::from(queue::slot::slot_of(&q.keys().stream(p)));

    // 1. Partition 0's master gives its slots up to partition 0's to partition 4's master.
    let t = Instant::now();
    let (a, b) = (before[0], before[4]);
    reshard(
        port(a),
        &node_id(port(a)).await,
        &node_id(port(b)).await,
        slot_of(0) + 1,
    );
    println!("reshard 1 ({} -> {}): {:?}", port(a), port(b), t.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. Partition 8's master gives its slots up to partition 8's to partition 0's old master.
    let t = Instant::now();
    let c = before[8];
    let n = slot_of(8) - 10923 + 1;
    reshard(port(c), &node_id(port(c)).await, &node_id(port(a)).await, n);
    println!("reshard 2 ({} -> {}): {:?}", port(c), port(a), t.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. Partition 4's slot, by hand and slowly, to the master that is neither a nor b.
    let t = Instant::now();
    let slot = queue::slot::slot_of(&q.keys().stream(4));
    let to = other(a, b);
    let keys = migrate_slowly(&masters, slot, port(b), to).await;
    println!(
        "slot {slot} (partition 4) migrated key by key ({keys} keys, {} -> {to}): {:?}",
        port(b),
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let after: Vec<usize> = futures::future::join_all((0..PARTITIONS).map(master_of)).await;
    println!("masters by partition before {before:?}, after {after:?}");
    stop_producing.cancel();
    for p in producers {
        p.await.unwrap();
    }
    assert_ne!(after[0], before[0], "partition 0 moved");
    assert_ne!(after[8], before[8], "partition 8 moved");
    assert_eq!(cluster.ports[after[4]], to, "partition 4 moved");

    let Tally {
        accepted,
        errors,
        lost,
        twice,
    } = wait_and_tally(&sent, &rec).await;
    let stats = q.stats().await.unwrap();
    for (token, task) in workers {
        stop(token, task).await;
    }
    println!(
        "RESULT queue reshard: acknowledged {}, lost {}, run more than once {}, \
         left waiting {}, pending {}, dead {}",
        accepted.len(),
        lost.len(),
        twice.len(),
        stats.backlog,
        stats.pending,
        stats.dead
    );
    assert!(accepted.len() > 1000, "load flowed: {}", accepted.len());
    // A slot move is a short delay to a caller, never an error (`queue::Fanout` sends a
    // transaction a moving slot refused again; lone commands follow redirects in redis-rs).
    assert!(
        errors.is_empty(),
        "enqueue errors during the moves: {errors:?}"
    );
    assert!(lost.is_empty(), "acknowledged but never run: {lost:?}");
    assert!(twice.is_empty(), "run more than once: {twice:?}");
    assert_eq!(
        (stats.backlog, stats.pending, stats.dead),
        (0, 0, 0),
        "nothing stuck"
    );
    println!("test took {:?}", test_start.elapsed());
}
