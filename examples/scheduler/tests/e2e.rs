//! End to end, with the real Redis and the real `scheduler` binary in five processes: three
//! scheduler replicas, the data service and the API service. Everything is read back from the
//! example's event log (`<ns>:scheduler:events`) and counted per occurrence.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use example_scheduler::events::EventLog;
use example_scheduler::model::{ApiRequest, DataRequest, Decision, Event, Tick};
use example_scheduler::services::now_ms;
use example_scheduler::{API, DATA, TICKS};
use queue::{Queue, QueueConfig};
use testkit::{ChildGuard, TestEnv};

const PERIOD_MS: u64 = 2_000;
const FOLLOW_UP_MS: u64 = 1_000;
const ANSWER_TIMEOUT_MS: u64 = 500;

/// The release binary, as every stack test runs it: from `CONVEYOR_BIN_DIR` (`./setup.sh test`
/// builds it) or from a release build testkit makes on first use.
fn binary() -> PathBuf {
    testkit::bin_path("scheduler")
}

fn spawn(env: &TestEnv, name: &str, args: &[&str]) -> ChildGuard {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env("REDIS_URL", &env.redis_url)
        .env("QUEUE_NAMESPACE", &env.namespace)
        .env("RUST_LOG", "info");
    ChildGuard::spawn(name, cmd).expect("spawn scheduler binary")
}

fn scheduler(env: &TestEnv, name: &str) -> ChildGuard {
    let (p, f, t) = (
        format!("{PERIOD_MS}ms"),
        format!("{FOLLOW_UP_MS}ms"),
        format!("{ANSWER_TIMEOUT_MS}ms"),
    );
    let args = [
        "run",
        "--period",
        &p,
        "--follow-up",
        &f,
        "--answer-timeout",
        &t,
    ];
    spawn(env, name, &args)
}

/// Waits until each queue has the number of live workers given.
async fn wait_for_workers(env: &TestEnv, ticks: u64, data: u64, api: u64) {
    let config = |name| QueueConfig::new(&env.namespace, name);
    let t: Queue<Tick> = Queue::new(env.redis.clone(), config(TICKS));
    let d: Queue<DataRequest> = Queue::new(env.redis.clone(), config(DATA));
    let a: Queue<ApiRequest> = Queue::new(env.redis.clone(), config(API));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = (
            t.stats().await.map(|s| s.workers).unwrap_or(0),
            d.stats().await.map(|s| s.workers).unwrap_or(0),
            a.stats().await.map(|s| s.workers).unwrap_or(0),
        );
        if seen == (ticks, data, api) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "workers (ticks, data, api) = {seen:?}, expected {:?}",
            (ticks, data, api)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sleeps until unix ms `at`.
async fn sleep_until_ms(at: u64) {
    tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
}

/// What happened to one occurrence.
#[derive(Default, Debug)]
struct Seen {
    decisions: Vec<Decision>,
    data: Vec<u64>,
    api: Vec<u64>,
    follow_ups: Vec<u64>,
}

async fn per_occurrence(env: &TestEnv) -> BTreeMap<u64, Seen> {
    let log = EventLog::new(env.redis.clone().into(), &env.namespace);
    let mut map: BTreeMap<u64, Seen> = BTreeMap::new();
    for event in log.read_all().await.expect("read the event log") {
        match event {
            Event::Decision(d) => map.entry(d.occurrence).or_default().decisions.push(d),
            Event::Request {
                service,
                occurrence,
                received_at_ms,
            } => {
                let seen = map.entry(occurrence).or_default();
                match service.as_str() {
                    "data-service" => seen.data.push(received_at_ms),
                    "api-service" => seen.api.push(received_at_ms),
                    other => panic!("unknown service {other}"),
                }
            }
            Event::FollowUp {
                occurrence,
                received_at_ms,
                ..
            } => map
                .entry(occurrence)
                .or_default()
                .follow_ups
                .push(received_at_ms),
        }
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_over_30_s_decide_once_per_period_ask_in_parallel_and_follow_up_on_time() {
    let env = TestEnv::new("sched_e2e").await;
    let _data = spawn(&env, "sched-data", &["data-service"]);
    let _api = spawn(&env, "sched-api", &["api-service"]);
    let _replicas: Vec<ChildGuard> = (0..3)
        .map(|i| scheduler(&env, &format!("scheduler-{i}")))
        .collect();
    wait_for_workers(&env, 3, 1, 1).await;

    // 15 whole periods of 2 s = 30 s, starting with the first occurrence after all are up.
    let first = now_ms() / PERIOD_MS + 1;
    let last = first + 14;
    sleep_until_ms(last * PERIOD_MS + FOLLOW_UP_MS + 800).await;

    let map = per_occurrence(&env).await;
    let mut worst_skew = 0u64;
    let mut worst_follow_up = 0i64;
    let mut replicas = BTreeMap::<String, u32>::new();
    for n in first..=last {
        let seen = map
            .get(&n)
            .unwrap_or_else(|| panic!("occurrence {n}: nothing happened"));
        assert_eq!(seen.decisions.len(), 1, "occurrence {n}: {seen:?}");
        let d = &seen.decisions[0];
        assert!(d.missing.is_empty(), "occurrence {n}: {d:?}");
        assert_eq!(d.action, "buy_at");
        assert!(
            d.decided_at_ms >= d.due_ms && d.decided_at_ms - d.due_ms < ANSWER_TIMEOUT_MS,
            "occurrence {n} decided {} ms after it was due",
            d.decided_at_ms as i64 - d.due_ms as i64
        );
        *replicas.entry(d.decided_by.clone()).or_default() += 1;
        assert_eq!(
            seen.data.len(),
            1,
            "occurrence {n}: data asked once: {seen:?}"
        );
        assert_eq!(
            seen.api.len(),
            1,
            "occurrence {n}: api asked once: {seen:?}"
        );
        let skew = seen.data[0].abs_diff(seen.api[0]);
        assert!(skew <= 10, "occurrence {n}: questions {skew} ms apart");
        worst_skew = worst_skew.max(skew);
        assert_eq!(seen.follow_ups.len(), 1, "occurrence {n}: {seen:?}");
        let late = seen.follow_ups[0] as i64 - (d.decided_at_ms + FOLLOW_UP_MS) as i64;
        assert!(
            late.abs() <= 200,
            "occurrence {n}: follow-up {late} ms off x"
        );
        worst_follow_up = worst_follow_up.max(late.abs());
    }
    eprintln!(
        "15 occurrences: 1 decision each; questions at most {worst_skew} ms apart; \
         follow-ups at most {worst_follow_up} ms off; decided by {replicas:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_data_service_killed_occurrences_complete_on_time_and_report_it_missing() {
    let env = TestEnv::new("sched_degraded").await;
    let mut data = spawn(&env, "sched-data", &["data-service"]);
    let _api = spawn(&env, "sched-api", &["api-service"]);
    let _replicas: Vec<ChildGuard> = (0..2)
        .map(|i| scheduler(&env, &format!("scheduler-{i}")))
        .collect();
    wait_for_workers(&env, 2, 1, 1).await;

    // One occurrence with both services, then kill -9 the data service.
    let healthy = now_ms() / PERIOD_MS + 1;
    sleep_until_ms(healthy * PERIOD_MS + ANSWER_TIMEOUT_MS + 200).await;
    data.kill();

    let first = now_ms() / PERIOD_MS + 1;
    let last = first + 2;
    sleep_until_ms(last * PERIOD_MS + FOLLOW_UP_MS + 800).await;

    let map = per_occurrence(&env).await;
    let ok = &map[&healthy].decisions;
    assert_eq!(ok.len(), 1);
    assert!(ok[0].missing.is_empty(), "{ok:?}");
    for n in first..=last {
        let seen = map
            .get(&n)
            .unwrap_or_else(|| panic!("occurrence {n}: nothing happened"));
        assert_eq!(seen.decisions.len(), 1, "occurrence {n}: {seen:?}");
        let d = &seen.decisions[0];
        assert_eq!(d.missing, ["data-service"], "occurrence {n}: {d:?}");
        assert_eq!((d.action.as_str(), d.price), ("hold", None));
        let took = d.decided_at_ms - d.due_ms;
        assert!(
            (ANSWER_TIMEOUT_MS - 50..ANSWER_TIMEOUT_MS + 300).contains(&took),
            "occurrence {n}: decided {took} ms after it was due (answer timeout {ANSWER_TIMEOUT_MS} ms)"
        );
        assert!(seen.data.is_empty(), "occurrence {n}: {seen:?}");
        assert_eq!(seen.api.len(), 1, "occurrence {n}: {seen:?}");
        assert_eq!(seen.follow_ups.len(), 1, "occurrence {n}: {seen:?}");
    }
}
