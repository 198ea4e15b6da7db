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
