//! Request/reply through the queue: `?wait=true` answers 504 on time when nothing processes the
//! job (and the job stays queued), and 200 with the processed result when a worker runs — here a
//! small in-test queue Worker that calls `pipeline::task::process` and the real store. The stored
//! message is then readable through `GET /messages/{producer}/{number}`, `GET /messages` and
//! `GET /stats`.

use crate::support;

use std::time::{Duration, Instant};

use chrono::Utc;
use pipeline::packet::{MessageJob, StoredMessage};
use pipeline::store::Store;
use queue::{Job, Outcome, Worker, WorkerConfig};
use serde_json::json;
use support::{packet, spawn};
use testkit::{assert_problem, TestEnv};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn wait_times_out_with_504_on_time_and_the_job_stays_queued() {
    let env = TestEnv::new("consumer_504").await;
    let app = spawn(&env, &[]).await;
    let timeout_ms = 300;
    let start = Instant::now();
    let resp = app
        .post_json(
            &format!("/messages?wait=true&timeout_ms={timeout_ms}"),
            &packet(1, json!({})),
        )
        .await;
    let elapsed = start.elapsed();
    let v = assert_problem(resp, 504).await;
    assert!(
        elapsed >= Duration::from_millis(timeout_ms)
            && elapsed <= Duration::from_millis(timeout_ms + 100),
        "answered after {elapsed:?}"
    );
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("will still complete"),
        "{v}"
    );
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1, "the job is still queued");
    assert_eq!(jobs[0].1.packet.number, 1);
    app.stop().await;
}

/// Processes messages like the real worker does: compute, bulk-index, reply with the document.
struct Process(Store);

impl queue::Handler<MessageJob> for Process {
    async fn handle(&self, jobs: Vec<Job<MessageJob>>) -> Vec<Outcome> {
        let stored_at = Utc::now();
        let docs: Vec<StoredMessage> = jobs
            .iter()
            .map(|j| pipeline::task::process(&j.payload, stored_at))
            .collect();
        match self.0.index_messages(&docs).await {
            Ok(()) => docs
                .iter()
                .map(|d| Outcome::Done(serde_json::to_value(d).unwrap()))
                .collect(),
            Err(e) => docs
                .iter()
                .map(|_| Outcome::Retry {
                    error: e.to_string(),
                    after: None,
                })
                .collect(),
        }
    }
}

#[tokio::test]
async fn wait_returns_the_processed_message_and_reads_find_it() {
    let env = TestEnv::new("consumer_200").await;
    let app = spawn(&env, &[]).await;
    let store = Store::new(&app.config.common.elastic).unwrap();
    store.ensure_indices().await.unwrap();
    let stop = CancellationToken::new();
    let worker = Worker::new(
        app.queue.clone(),
        Process(store.clone()),
        WorkerConfig::default(),
    );
    let worker = tokio::spawn(worker.run(stop.clone()));

    let sent_at = Utc::now() - chrono::Duration::milliseconds(20);
    let body = json!({"number": 7, "sent_at": sent_at.to_rfc3339(), "producer": "waiter",
        "text": "héllo wörld 日本語 🦀🦀"});
    let resp = app
        .post_json("/messages?wait=true&timeout_ms=10000", &body)
        .await;
    assert_eq!(resp.status(), 200);
    let stored: StoredMessage = resp.json().await.unwrap();
    assert_eq!(stored.word_lengths, [5, 5, 3, 2]);
    assert_eq!((stored.producer.as_str(), stored.number), ("waiter", 7));
    assert!(stored.transit_ms >= 20.0, "{}", stored.transit_ms);
    assert!(stored.stored_at >= stored.received_at);

    // The same document through the read endpoints.
    let got: StoredMessage = app
        .http
        .get(app.at("/messages/waiter/7"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, stored);
    env.refresh("messages").await;
    let page = app.get_json("/messages?producer=waiter&size=5").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    let listed = page["messages"][0].as_object().unwrap();
    assert!(
        !listed.contains_key("word_lengths") && !listed.contains_key("text"),
        "a listing leaves the large fields out unless asked: {page}"
    );
    assert!(page["next_from"].is_null(), "{page}");
    let full = app
        .get_json("/messages?producer=waiter&size=5&fields=word_lengths,text")
        .await;
    assert_eq!(full["messages"][0]["word_lengths"], json!([5, 5, 3, 2]));
    assert_eq!(full["messages"][0]["text"], got.text.as_str());
    let stats = app.get_json("/stats").await;
    assert_eq!(stats["max_number"], 7);
    assert_eq!(stats["total"], 1);
    assert_eq!(stats["count_10s"], 1);
    assert_eq!(
        stats["avg_transit_ms_10s"].as_f64(),
        Some(stored.transit_ms)
    );
    assert_eq!(stats["queue"]["backlog"], 0);
    assert_eq!(stats["queue"]["pending"], 0);
    assert_eq!(stats["queue"]["workers"], 1);

    stop.cancel();
    worker.await.unwrap().unwrap();
    app.stop().await;
}
