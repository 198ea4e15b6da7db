//! The chaos suite (issue 15): the real binaries under producer load, one fault per test, every
//! handler run counted per job id (the workers' `conveyor::run` trace events, JSON logs), every
//! message counted per natural key in Elasticsearch, every resource per file at the webhook
//! service. Each test ends with the invariants — every message answered 2xx stored exactly once,
//! every complete resource delivered exactly once (no `duplicate` delivery at the webhook), no
//! job dead-lettered (so none both dead and done), no handler run of a live worker's job by
//! another worker (`chaos/runs.rs` defines it), the queue's backlog, pending and delayed back
//! to zero — and appends its row to `target/chaos/rows-<pid>.jsonl`; the last row to finish
//! prints the table (and writes `target/chaos/table.md`). Rows run in parallel, as the test
//! harness runs tests; each is bounded (≤ 90 s of waiting after its fault).
//!
//! `cargo test -p e2e --test chaos -- --nocapture` (release binaries in `CONVEYOR_BIN_DIR`).

#[path = "chaos/mod.rs"]
mod harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_of_three_workers_mid_batch() {
    harness::rows::sigkill_one_worker().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_consumer_mid_request_and_restart_it() {
    harness::rows::sigkill_consumer().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_for_twice_the_lease() {
    harness::rows::redis_paused().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_pending_delayed_and_retrying_jobs() {
    harness::rows::redis_restarted().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_black_hole_between_a_worker_and_redis() {
    harness::rows::black_hole().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_down_for_20_seconds() {
    harness::rows::elasticsearch_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_target_down_for_15_seconds() {
    harness::rows::webhook_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_replaced_one_by_one() {
    harness::rows::rolling_replacement().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_partitions_handlers_slower_than_the_lease_concurrency_one() {
    harness::rows::partitions_slow_handlers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slower_than_the_response_timeout() {
    harness::rows::redis_slow().await;
}

/// The overlap check itself, on runs made up for it: it counts a live worker's run taken over,
/// and nothing once that worker was cut off or its run had ended.
#[test]
fn overlap_check_counts_a_live_workers_job_run_elsewhere() {
    use chrono::{TimeZone, Utc};
    use harness::runs::{overlaps, CutOff, Run};
    let at = |ms: i64| Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap();
    let run = |worker: usize, start: i64, end: Option<i64>| Run {
        worker,
        queue: "messages".into(),
        job: "default:1".into(),
        entry: "1-0".into(),
        deliveries: 1,
        start: at(start),
        end: end.map(at),
    };
    let taken = [run(0, 0, Some(5000)), run(1, 3000, Some(3100))];
    assert_eq!(
        overlaps(&taken, &[], &[]).len(),
        1,
        "live A, B starts inside"
    );
    let hole = CutOff {
        worker: 0,
        from: at(1000),
        to: Some(at(2000)),
    };
    assert_eq!(
        overlaps(&taken, &[hole], &[]).len(),
        0,
        "A cut off meanwhile"
    );
    let after = [run(0, 0, Some(2000)), run(1, 3000, None)];
    assert_eq!(overlaps(&after, &[], &[]).len(), 0, "A ended first");
    let unended = [run(0, 0, None), run(1, 3000, None)];
    assert_eq!(
        overlaps(&unended, &[], &[]).len(),
        1,
        "A never ended, never cut off"
    );
    assert_eq!(
        overlaps(&unended, &[], &[(0, at(2500))]).len(),
        0,
        "A's end unknown, its process gone before B started"
    );
}
