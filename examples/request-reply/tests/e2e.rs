//! End to end, with the real Redis and real `request-reply server` processes; the client is the
//! crate's own [`Client`] in this test process, so every request is checked against its reply
//! (counted per request id).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use example_request_reply::client::{run_load, Client, Outcome};
use example_request_reply::model::{CalcError, Request};
use example_request_reply::REQUESTS;
use queue::{Queue, QueueConfig};
use testkit::{ChildGuard, TestEnv};
use tokio_util::sync::CancellationToken;

/// The release binary, as every stack test runs it: from `CONVEYOR_BIN_DIR` (`./setup.sh test`
/// builds it) or from a release build testkit makes on first use.
fn binary() -> PathBuf {
    testkit::bin_path("request-reply")
}

fn server(env: &TestEnv, name: &str, work_ms: u64, lease_ms: u64) -> ChildGuard {
    let mut cmd = Command::new(binary());
    cmd.args(["server", "--name", name, "--concurrency", "4"])
        .args(["--work-ms", &work_ms.to_string()])
        .args(["--lease-ms", &lease_ms.to_string()])
        .env("REDIS_URL", &env.redis_url)
        .env("QUEUE_NAMESPACE", &env.namespace)
        .env("RUST_LOG", "warn");
    ChildGuard::spawn(name, cmd).expect("spawn a server replica")
}

fn queue(env: &TestEnv) -> Queue<Request> {
    Queue::new(
        env.redis.clone(),
        QueueConfig::new(&env.namespace, REQUESTS),
    )
    .with_redis_connection(
        redis::IntoConnectionInfo::into_connection_info(env.redis_url.as_str()).unwrap(),
    )
}

async fn wait_for_replicas(queue: &Queue<Request>, n: u64) {
    for _ in 0..300 {
        if queue.stats().await.map(|s| s.workers).unwrap_or(0) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} server replicas did not start within 30 s");
}

/// Requests with ids `0..n`: every 21st divides by zero, id 5 overflows, the rest divide.
fn requests(n: u64) -> Vec<Request> {
    (0..n)
        .map(|id| match id {
            5 => Request {
                id,
                a: i64::MIN,
                b: -1,
            },
            _ => Request {
                id,
                a: id as i64 * 7 + 3,
                b: (id % 21) as i64 - 10,
            },
        })
        .collect()
}

/// Every request got exactly one reply, its own, with the right answer; replies per replica.
fn check_every_reply(n: u64, outcomes: &[Outcome]) -> BTreeMap<String, u64> {
    let mut per_id = HashMap::<u64, u32>::new();
    let mut per_replica = BTreeMap::<String, u64>::new();
    for o in outcomes {
        let reply = o
            .reply
            .as_ref()
            .unwrap_or_else(|e| panic!("request {} has no reply: {e}", o.request.id));
        assert_eq!(reply.id, o.request.id, "a reply reached another request");
        assert_eq!(reply.result, o.request.evaluate(), "{:?}", o.request);
        *per_id.entry(reply.id).or_default() += 1;
        *per_replica.entry(reply.served_by.clone()).or_default() += 1;
    }
    assert_eq!(per_id.len() as u64, n, "requests with a reply");
    assert!(per_id.values().all(|c| *c == 1), "a request replied twice");
    per_replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_over_three_replicas_balanced_with_typed_errors() {
    let env = TestEnv::new("rr_balance").await;
    let q = queue(&env);
    let names: Vec<String> = (0..3).map(|i| format!("{}-r{i}", env.namespace)).collect();
    let _servers: Vec<ChildGuard> = names.iter().map(|n| server(&env, n, 2, 5_000)).collect();
    wait_for_replicas(&q, 3).await;

    let client = Client::new(q, Duration::from_secs(20));
    let outcomes = run_load(&client, requests(10_000), 48, &CancellationToken::new()).await;
    let per_replica = check_every_reply(10_000, &outcomes);

    let typed: Vec<&CalcError> = outcomes
        .iter()
        .filter_map(|o| o.reply.as_ref().ok()?.result.as_ref().err())
        .collect();
    let by_zero = typed
        .iter()
        .filter(|e| **e == &CalcError::DivisionByZero)
        .count();
    assert_eq!(by_zero, (0..10_000u64).filter(|i| i % 21 == 10).count());
    assert_eq!(typed.len(), by_zero + 1, "and the one overflow: {typed:?}");

    let mean = 10_000.0 / 3.0;
    eprintln!("replies per replica: {per_replica:?}");
    assert_eq!(per_replica.len(), 3, "{per_replica:?}");
    for (name, count) in &per_replica {
        let off = (*count as f64 - mean) / mean;
        assert!(
            off.abs() <= 0.15,
            "{name} served {count} ({:+.1} %)",
            off * 100.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_replica_mid_run_loses_no_request() {
    let env = TestEnv::new("rr_kill").await;
    let q = queue(&env);
    let lease_ms = 1_000;
    let victim_name = format!("{}-victim", env.namespace);
    // A slow victim (200 ms per request) surely holds requests (4 slots) when it is killed.
    let mut victim = server(&env, &victim_name, 200, lease_ms);
    let _others: Vec<ChildGuard> = (0..2)
        .map(|i| server(&env, &format!("{}-r{i}", env.namespace), 5, lease_ms))
        .collect();
    wait_for_replicas(&q, 3).await;

    let client = Client::new(q, Duration::from_secs(20));
    let load = tokio::spawn(async move {
        run_load(&client, requests(4_000), 24, &CancellationToken::new()).await
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    victim.kill();
    let outcomes = load.await.expect("load run");
    assert!(!victim.is_running());

    let per_replica = check_every_reply(4_000, &outcomes);
    eprintln!("replies per replica: {per_replica:?}");
    assert!(
        per_replica.get(&victim_name).copied().unwrap_or(0) > 0,
        "the victim took work before it was killed: {per_replica:?}"
    );
    // The requests the victim held when it died were answered by another replica once their
    // lease expired: those took at least the lease.
    let taken_over = outcomes
        .iter()
        .filter(|o| o.latency >= Duration::from_millis(lease_ms - 100))
        .filter(|o| o.reply.as_ref().is_ok_and(|r| r.served_by != victim_name))
        .count();
    assert!(taken_over >= 1, "no request was taken over after the lease");
    eprintln!("{taken_over} requests answered after the victim's lease expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_gets_less_work() {
    let env = TestEnv::new("rr_slow").await;
    let q = queue(&env);
    let slow = format!("{}-slow", env.namespace);
    let _servers = [
        server(&env, &format!("{}-fast0", env.namespace), 2, 5_000),
        server(&env, &format!("{}-fast1", env.namespace), 2, 5_000),
        server(&env, &slow, 100, 5_000),
    ];
    wait_for_replicas(&q, 3).await;

    let client = Client::new(q, Duration::from_secs(20));
    let outcomes = run_load(&client, requests(2_000), 24, &CancellationToken::new()).await;
    let per_replica = check_every_reply(2_000, &outcomes);
    eprintln!("replies per replica: {per_replica:?}");
    let slow_count = per_replica.get(&slow).copied().unwrap_or(0);
    for (name, count) in per_replica.iter().filter(|(n, _)| **n != slow) {
        assert!(
            slow_count * 3 < *count,
            "slow replica served {slow_count}, fast {name} only {count}"
        );
    }
}
