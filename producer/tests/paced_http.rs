//! The paced producer against a real local HTTP server (axum on 127.0.0.1:0) that answers 429 and
//! 503 now and then: every number arrives, 10 per second within the first 100 ms, resources whole.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Timelike, Utc};
use clap::Parser;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Seen {
    accepted: Vec<Value>,
    refused_once: HashSet<u64>,
}

async fn messages(
    State(seen): State<Arc<Mutex<Seen>>>,
    Json(body): Json<Value>,
) -> (StatusCode, HeaderMap, &'static str) {
    let number = body["number"].as_u64().unwrap();
    let mut seen = seen.lock().unwrap();
    let mut headers = HeaderMap::new();
    if number % 4 == 1 && seen.refused_once.insert(number) {
        headers.insert("retry-after", "0".parse().unwrap());
        let status = if number % 8 == 1 {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return (status, headers, "busy");
    }
    seen.accepted.push(body);
    (StatusCode::ACCEPTED, headers, "{}")
}

#[tokio::test]
async fn paced_run_delivers_every_number_in_the_window_despite_429_and_503() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/messages", post(messages))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = producer::Config::try_parse_from([
        "producer",
        "--consumer-url",
        &format!("http://{addr}"),
        "--duration-secs",
        "3",
        "--start",
        "100",
        "--producer",
        "ptest",
    ])
    .unwrap();
    producer::run(config, CancellationToken::new())
        .await
        .unwrap();

    let seen = seen.lock().unwrap();
    let mut numbers: Vec<u64> = seen
        .accepted
        .iter()
        .map(|b| b["number"].as_u64().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(
        numbers,
        (100..130).collect::<Vec<_>>(),
        "every number exactly once"
    );
    assert!(!seen.refused_once.is_empty());

    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    let mut resources: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for b in &seen.accepted {
        assert_eq!(b["producer"], "ptest");
        let sent: DateTime<Utc> = b["sent_at"].as_str().unwrap().parse().unwrap();
        let ms = sent.nanosecond() / 1_000_000;
        assert!(ms < 100, "sent at ms {ms} of its second: {b}");
        *per_second.entry(sent.timestamp()).or_default() += 1;
        let id = b["resource_id"].as_str().unwrap().to_string();
        resources
            .entry(id)
            .or_default()
            .push((b["seq"].as_u64().unwrap(), b["total"].as_u64().unwrap()));
    }
    assert_eq!(per_second.len(), 3, "{per_second:?}");
    assert!(per_second.values().all(|n| *n == 10), "{per_second:?}");
    for (id, parts) in resources {
        let total = parts[0].1;
        let mut seqs: Vec<u64> = parts.iter().map(|p| p.0).collect();
        seqs.sort();
        assert_eq!(seqs, (0..total).collect::<Vec<_>>(), "resource {id}");
    }
}
