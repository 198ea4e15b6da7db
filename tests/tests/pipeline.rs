//! The pipeline end to end with the real binaries (consumer, workers, producer) against the real
//! Redis and Elasticsearch: the producer's default schedule, exactly-once storage, timestamps
//! and word lengths, `/stats` against Elasticsearch, duplicate POSTs and `?wait=true`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use e2e::es::{all_docs, count_docs, wait_for_count};
use e2e::Stack;
use serde_json::{json, Value};
use testkit::TestEnv;

/// Word lengths computed here, independently of the pipeline crate.
fn expected_lengths(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .map(|w| w.chars().count() as u64)
        .collect()
}

fn time(doc: &Value, field: &str) -> DateTime<Utc> {
    doc[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{field} is a timestamp in {doc}"))
}

/// The /stats figures computed straight from Elasticsearch with the same 10 s window.
async fn stats_from_es(env: &TestEnv) -> (Option<u64>, Option<f64>, u64, u64) {
    let answer = env
        .search(
            "messages",
            json!({
                "size": 0,
                "track_total_hits": true,
                "aggs": {
                    "max_number": {"max": {"field": "number"}},
                    "recent": {
                        "filter": {"range": {"received_at": {"gte": "now-10s"}}},
                        "aggs": {"avg": {"avg": {"field": "transit_ms"}}}
                    }
                }
            }),
        )
        .await;
    let aggs = &answer["aggregations"];
    (
        aggs["max_number"]["value"].as_f64().map(|v| v as u64),
        aggs["recent"]["avg"]["value"].as_f64(),
        aggs["recent"]["doc_count"].as_u64().unwrap_or(0),
        answer["hits"]["total"]["value"].as_u64().unwrap_or(0),
    )
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6 * a.abs().max(1.0),
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test]
async fn default_producer_for_10s_is_stored_exactly_once_and_stats_match_elasticsearch() {
    let env = TestEnv::new("pipe_default").await;
    let stack = Stack::builder(&env).workers(2).start().await.unwrap();
    let out = stack
        .run_producer(&["--duration-secs", "10", "--producer", "e2e"])
        .await
        .unwrap();
    assert!(
        out.contains("total sent=100 ok=100 errors=0"),
        "producer said:\n{out}"
    );
    let summaries = out.lines().filter(|l| l.starts_with("t=")).count();
    assert!(summaries >= 9, "one summary line per second:\n{out}");

    // /stats equals Elasticsearch asked directly (stable reading: ES, /stats, ES agree).
    assert_eq!(
        wait_for_count(&env, "messages", 100, Duration::from_secs(30)).await,
        100
    );
    let http = reqwest::Client::new();
    let mut matched = false;
    for _ in 0..10 {
        let before = stats_from_es(&env).await;
        let stats: Value = http
            .get(format!("{}/stats", stack.consumer_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let after = stats_from_es(&env).await;
        if before.2 != after.2 || !close(before.1, after.1) {
            continue; // the 10 s window moved between the readings: read again
        }
        assert!(after.2 > 0, "the window still holds the run's messages");
        assert_eq!(stats["max_number"].as_u64(), after.0, "{stats}");
        assert_eq!(after.0, Some(99));
        assert_eq!(stats["count_10s"].as_u64(), Some(after.2), "{stats}");
        assert_eq!(stats["total"].as_u64(), Some(after.3), "{stats}");
        assert!(
            close(stats["avg_transit_ms_10s"].as_f64(), after.1),
            "{stats} vs {after:?}"
        );
        matched = true;
        break;
    }
    assert!(matched, "never got a stable reading of the 10 s window");

    let docs = all_docs(&env, "messages", "number").await;
    let numbers: Vec<u64> = docs
        .iter()
        .map(|(_, d)| d["number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..100).collect::<Vec<_>>(),
        "every number exactly once"
    );
    let mut per_second: BTreeMap<i64, u32> = BTreeMap::new();
    for (id, doc) in &docs {
        assert_eq!(id, &format!("e2e:{}", doc["number"]));
        let (sent, received, stored) = (
            time(doc, "sent_at"),
            time(doc, "received_at"),
            time(doc, "stored_at"),
        );
        assert!(
            sent <= received && received <= stored,
            "timestamps out of order: {doc}"
        );
        let text = doc["text"].as_str().unwrap();
        assert!(!text.is_empty());
        let lengths: Vec<u64> = doc["word_lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(lengths, expected_lengths(text), "{doc}");
        let transit = (received - sent).num_microseconds().unwrap() as f64 / 1000.0;
        assert!(
            (doc["transit_ms"].as_f64().unwrap() - transit).abs() < 0.01,
            "{doc}"
        );
        let ms = sent.nanosecond() / 1_000_000;
        assert!(ms < 100, "sent at ms {ms} of its second: {doc}");
        *per_second.entry(sent.timestamp()).or_default() += 1;
        assert!(doc["resource_id"].as_str().unwrap().starts_with("e2e-r"));
    }
    assert_eq!(per_second.len(), 10, "{per_second:?}");
    assert!(
        per_second.values().all(|n| *n == 10),
        "10 POSTs per second: {per_second:?}"
    );
}

#[tokio::test]
async fn duplicate_post_is_one_document_and_wait_true_answers_or_times_out() {
    let env = TestEnv::new("pipe_wait").await;
    let mut stack = Stack::builder(&env).workers(1).start().await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/messages", stack.consumer_url());
    let body = json!({"number": 1, "sent_at": Utc::now().to_rfc3339(), "producer": "dup", "text": "same twice"});
    for _ in 0..2 {
        let resp = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 202);
    }

    let text = "ça marche très bien";
    let waited =
        json!({"number": 2, "sent_at": Utc::now().to_rfc3339(), "producer": "dup", "text": text});
    let resp = http
        .post(format!("{url}?wait=true&timeout_ms=5000"))
        .json(&waited)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(
        result["word_lengths"],
        json!(expected_lengths(text)),
        "{result}"
    );
    assert!(
        result["transit_ms"].as_f64().is_some() && result["stored_at"].is_string(),
        "{result}"
    );

    assert_eq!(
        wait_for_count(&env, "messages", 2, Duration::from_secs(15)).await,
        2
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        count_docs(&env, "messages").await,
        2,
        "the duplicate POST made no second document"
    );
    let docs = all_docs(&env, "messages", "number").await;
    assert_eq!(docs[0].0, "dup:1");
    assert_eq!(docs[0].1["text"], "same twice");

    // No worker: the waiting request gives up with 504 on time; the job runs once a worker is back.
    stack.kill_workers();
    let late = json!({"number": 3, "sent_at": Utc::now().to_rfc3339(), "producer": "dup", "text": "late but stored"});
    let started = Instant::now();
    let resp = http
        .post(format!("{url}?wait=true&timeout_ms=500"))
        .json(&late)
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert!(
        elapsed < Duration::from_millis(600),
        "504 after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(500),
        "504 before the timeout: {elapsed:?}"
    );
    assert_eq!(count_docs(&env, "messages").await, 2);

    let back = stack.start_worker().await.unwrap();
    assert_eq!(
        wait_for_count(&env, "messages", 3, Duration::from_secs(20)).await,
        3
    );
    let docs = all_docs(&env, "messages", "number").await;
    assert_eq!(docs[2].1["word_lengths"], json!([4, 3, 6]));
    assert!(
        stack.stop_worker(back, Duration::from_secs(15)),
        "the worker exits by itself on SIGTERM"
    );
}
