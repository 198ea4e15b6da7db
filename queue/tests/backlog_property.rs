//! Property-style check of `Queue::stats`: random sequences of enqueue, read, ack + delete,
//! reclaim, retry (to the delayed set and back), dead-letter and Redis restart (SIGKILL, with
//! or without an AOF rewrite first, or a graceful stop) against a private `redis-server`. After
//! every step the reported backlog, pending, delayed and dead counts must equal two oracles:
//! a model of the sequence (what was enqueued, read, settled) and the entries counted one by one
//! in Redis (`XRANGE` after the group's last-delivered id).
//!
//! The steps use the queue's own Lua scripts (`src/scripts/*.lua`) exactly as the worker calls
//! them, and `Queue::enqueue_batch` for new jobs. Seeds are fixed so a failure replays;
//! `BACKLOG_PROPERTY_SEEDS=7,8,9` runs others. A failure prints the seed and the last steps.

use crate::support;

use std::collections::{HashMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::streams::{StreamAutoClaimReply, StreamRangeReply};
use redis::Script;
use support::*;
use testkit::RedisServer;

const ACK: &str = include_str!("../src/scripts/ack.lua");
const RETRY: &str = include_str!("../src/scripts/retry.lua");
const DEAD: &str = include_str!("../src/scripts/dead.lua");
const PROMOTE: &str = include_str!("../src/scripts/promote.lua");

const NS: &str = "prop";
const PARTITIONS: u16 = 3;
const STEPS: usize = 300;
const CONSUMERS: [&str; 3] = ["a", "b", "c"];

/// What the sequence has done so far, kept by the test.
#[derive(Default)]
struct Model {
    waiting: u64,
    /// Entries each consumer holds (partition, entry id), as Redis's pending lists say.
    held: HashMap<&'static str, Vec<(u16, String)>>,
    delayed: u64,
    dead: u64,
}

impl Model {
    fn pending(&self) -> u64 {
        self.held.values().map(|v| v.len() as u64).sum()
    }
}

fn key(name: &str, p: u16) -> String {
    stream_key(NS, name, p)
}

/// The fields of one entry as the JSON array the delayed set and dead letters carry.
async fn fields(conn: &mut deadpool_redis::Connection, stream: &str, id: &str) -> Vec<String> {
    let range: StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg(id)
        .arg(id)
        .query_async(conn)
        .await
        .unwrap();
    let entry = range
        .ids
        .first()
        .expect("a held entry is still in its stream");
    let mut pairs: Vec<(&String, &redis::Value)> = entry.map.iter().collect();
    pairs.sort_by_key(|(k, _)| k.as_str());
    pairs
        .into_iter()
        .flat_map(|(k, v)| [k.clone(), redis::from_redis_value_ref::<String>(v).unwrap()])
        .collect()
}

/// The fence of a held entry as its holder knows it: (owner consumer, delivery count).
async fn fence(conn: &mut deadpool_redis::Connection, stream: &str, id: &str) -> (String, u64) {
    let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(stream)
        .arg(queue::GROUP)
        .arg(id)
        .arg(id)
        .arg(1)
        .query_async(conn)
        .await
        .unwrap();
    let p = &reply.ids[0];
    (p.consumer.clone(), p.times_delivered as u64)
}

/// Runs a settling script (`retry.lua`, `dead.lua`) on one held entry as its holder does:
/// KEYS = the stream and its `<stream>:<suffix>` key, ARGV = group, owner, entry id, delivery
/// count, then `args`.
async fn settle(
    conn: &mut deadpool_redis::Connection,
    source: &str,
    stream: &str,
    suffix: &str,
    id: &str,
    args: Vec<String>,
) -> u64 {
    let (owner, deliveries) = fence(conn, stream, id).await;
    Script::new(source)
        .key(stream)
        .key(format!("{stream}:{suffix}"))
        .key(format!("{stream}:{suffix}:trimmed")) // dead.lua's trim counter; retry.lua ignores it
        .arg(queue::GROUP)
        .arg(owner)
        .arg(id)
        .arg(deliveries)
        .arg(args)
        .invoke_async(conn)
        .await
        .unwrap()
}

/// Takes `k` random held entries of a random consumer that holds some.
fn take_held(rng: &mut StdRng, model: &mut Model, k: usize) -> Vec<(u16, String)> {
    let holders: Vec<&'static str> = CONSUMERS
        .into_iter()
        .filter(|c| model.held.get(c).is_some_and(|v| !v.is_empty()))
        .collect();
    if holders.is_empty() {
        return Vec::new();
    }
    let held = model
        .held
        .get_mut(holders[rng.random_range(0..holders.len())])
        .unwrap();
    let mut taken = Vec::new();
    for _ in 0..k.min(held.len()) {
        taken.push(held.swap_remove(rng.random_range(0..held.len())));
    }
    taken
}

async fn run_sequence(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = RedisServer::start().await;
    let pool = server.pool();
    let name = format!("seq{seed}");
    let q = queue::<u64>(pool.clone(), NS, &name, |c| c.partitions = PARTITIONS);
    let mut model = Model::default();
    let mut log: VecDeque<String> = VecDeque::new();
    let mut next_payload = 0u64;
    {
        let mut conn = pool.get().await.unwrap();
        for p in 0..PARTITIONS {
            let _: () = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(key(&name, p))
                .arg(queue::GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    for step in 0..STEPS {
        let mut conn = pool.get().await.unwrap();
        let roll = rng.random_range(0..100);
        let what = match roll {
            0..=24 => {
                let n = rng.random_range(1..=30);
                let jobs: Vec<u64> = (next_payload..next_payload + n).collect();
                next_payload += n;
                q.enqueue_batch(&jobs).await.unwrap();
                model.waiting += n;
                format!("enqueue {n}")
            }
            25..=44 => {
                let c = CONSUMERS[rng.random_range(0..CONSUMERS.len())];
                let count = rng.random_range(1..=20);
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(queue::GROUP)
                    .arg(c)
                    .arg("COUNT")
                    .arg(count)
                    .arg("STREAMS");
                for p in 0..PARTITIONS {
                    cmd.arg(key(&name, p));
                }
                for _ in 0..PARTITIONS {
                    cmd.arg(">");
                }
                let reply: Option<redis::streams::StreamReadReply> =
                    cmd.query_async(&mut conn).await.unwrap();
                let mut got = 0;
                for sk in reply.map(|r| r.keys).unwrap_or_default() {
                    let p = (0..PARTITIONS).find(|p| key(&name, *p) == sk.key).unwrap();
                    for e in sk.ids {
                        model.held.entry(c).or_default().push((p, e.id));
                        got += 1;
                    }
                }
                model.waiting -= got;
                format!("{c} reads {got} (count {count} per partition)")
            }
            45..=64 => {
                let k = rng.random_range(1..=25);
                let taken = take_held(&mut rng, &mut model, k);
                for p in 0..PARTITIONS {
                    let ids: Vec<&String> = taken
                        .iter()
                        .filter(|(tp, _)| *tp == p)
                        .map(|(_, id)| id)
                        .collect();
                    if ids.is_empty() {
                        continue;
                    }
                    // The taken entries share one holder: the fences name it.
                    let mut owner = String::new();
                    let mut fenced = Vec::new();
                    for id in &ids {
                        let (o, n) = fence(&mut conn, &key(&name, p), id).await;
                        owner = o;
                        fenced.push(id.to_string());
                        fenced.push(n.to_string());
                    }
                    // ack.lua takes the lowest and highest id first (numeric order).
                    let order = |id: &&String| {
                        let (ms, seq) = id.split_once('-').unwrap();
                        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
                    };
                    let lo = fenced.iter().step_by(2).min_by_key(order).unwrap().clone();
                    let hi = fenced.iter().step_by(2).max_by_key(order).unwrap().clone();
                    let acked: u64 = Script::new(ACK)
                        .key(key(&name, p))
                        .arg(queue::GROUP)
                        .arg(&owner)
                        .arg(&lo)
                        .arg(&hi)
                        .arg(&fenced)
                        .invoke_async(&mut conn)
                        .await
                        .unwrap();
                    assert_eq!(acked, ids.len() as u64, "seed {seed} step {step}: ack");
                }
                format!("ack + delete {}", taken.len())
            }
            65..=76 => {
                let c = CONSUMERS[rng.random_range(0..CONSUMERS.len())];
                let p = rng.random_range(0..PARTITIONS);
                let count = rng.random_range(1..=30);
                let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(key(&name, p))
                    .arg(queue::GROUP)
                    .arg(c)
                    .arg(0)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert!(
                    reply.deleted_ids.is_empty(),
                    "seed {seed} step {step}: pending entries missing from the stream: {:?}",
                    reply.deleted_ids
                );
                for e in &reply.claimed {
                    for held in model.held.values_mut() {
                        held.retain(|(hp, id)| !(*hp == p && *id == e.id));
                    }
                    model.held.entry(c).or_default().push((p, e.id.clone()));
                }
                format!("{c} reclaims {} on partition {p}", reply.claimed.len())
            }
            77..=84 => {
                let k = rng.random_range(1..=5);
                let taken = take_held(&mut rng, &mut model, k);
                for (p, id) in &taken {
                    let stream = key(&name, *p);
                    let member =
                        serde_json::to_string(&fields(&mut conn, &stream, id).await).unwrap();
                    let args = vec!["0".to_string(), member];
                    let moved = settle(&mut conn, RETRY, &stream, "delayed", id, args).await;
                    assert_eq!(moved, 1, "seed {seed} step {step}: retry");
                }
                model.delayed += taken.len() as u64;
                format!("retry {}", taken.len())
            }
            85..=89 => {
                let p = rng.random_range(0..PARTITIONS);
                let stream = key(&name, p);
                let reply: (u64, i64) = Script::new(PROMOTE)
                    .key(format!("{stream}:delayed"))
                    .key(&stream)
                    .arg(rng.random_range(1..=10))
                    .invoke_async(&mut conn)
                    .await
                    .unwrap();
                model.delayed -= reply.0;
                model.waiting += reply.0;
                format!("promote {} on partition {p}", reply.0)
            }
            90..=94 => {
                let k = rng.random_range(1..=3);
                let taken = take_held(&mut rng, &mut model, k);
                for (p, id) in &taken {
                    let stream = key(&name, *p);
                    let mut pairs = fields(&mut conn, &stream, id).await;
                    pairs.extend(["error".to_string(), "boom".to_string()]);
                    pairs.insert(0, "0".to_string()); // dead letters kept: all
                    let moved = settle(&mut conn, DEAD, &stream, "dead", id, pairs).await;
                    assert_eq!(moved, 1, "seed {seed} step {step}: dead");
                }
                model.dead += taken.len() as u64;
                format!("dead-letter {}", taken.len())
            }
            _ => {
                drop(conn);
                let how = rng.random_range(0..3);
                match how {
                    0 => {
                        server.rewrite_aof().await;
                        server.restart().await;
                    }
                    1 => server.restart().await,
                    _ => {
                        server.stop();
                        server.restart().await;
                    }
                }
                [
                    "AOF rewrite + SIGKILL + start",
                    "SIGKILL + start",
                    "stop + start",
                ][how]
                    .to_string()
            }
        };
        log.push_back(format!("step {step}: {what}"));
        if log.len() > 12 {
            log.pop_front();
        }
        let stats = q.stats().await.unwrap();
        let (waiting, pending) = waiting_and_pending(&pool, NS, &name, PARTITIONS).await;
        let context = || {
            format!(
                "seed {seed}, after step {step}; last steps:\n  {}",
                log.iter().cloned().collect::<Vec<_>>().join("\n  ")
            )
        };
        assert_eq!(
            (waiting, pending),
            (model.waiting, model.pending()),
            "the oracles disagree ({})",
            context()
        );
        assert_eq!(
            (stats.backlog, stats.pending, stats.delayed, stats.dead),
            (model.waiting, model.pending(), model.delayed, model.dead),
            "reported (backlog, pending, delayed, dead) vs really there ({})",
            context()
        );
    }
    println!(
        "seed {seed}: {STEPS} steps, all exact; ended with {} waiting, {} pending, {} delayed, {} dead",
        model.waiting,
        model.pending(),
        model.delayed,
        model.dead
    );
}

#[tokio::test]
async fn reported_backlog_equals_entries_waiting_after_every_step() {
    init_tracing();
    let seeds: Vec<u64> = std::env::var("BACKLOG_PROPERTY_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3]);
    for seed in seeds {
        run_sequence(seed).await;
    }
}
