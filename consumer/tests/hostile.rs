//! The hostile writes a new user tried (issue "Hostile input and bounded resources"), each
//! against the real consumer on a real Redis, with the answer it must get. Whatever they send,
//! nothing is enqueued: the stream stays empty.

use crate::support;

use std::time::Instant;

use serde_json::{json, Value};
use support::{packet, spawn, App};
use testkit::{assert_problem, TestEnv};

/// A 422 whose errors name exactly `names` (in any order).
async fn rejected(app: &App, body: Value, names: &[&str]) -> Value {
    let v = assert_problem(app.post_json("/messages", &body).await, 422).await;
    assert_eq!(v["type"], "urn:conveyor:problem:validation", "{v}");
    let mut got: Vec<&str> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    got.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{v}");
    v
}

#[tokio::test]
async fn the_tried_cases_get_their_answers_and_enqueue_nothing() {
    let env = TestEnv::new("consumer_hostile").await;
    let app = spawn(&env, &[]).await;

    // A number no browser represents exactly would pin the page's max_number forever.
    let v = rejected(
        &app,
        packet(9_223_372_036_854_775_807, json!({})),
        &["number"],
    )
    .await;
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("9007199254740991"));
    assert_eq!(
        app.post_number((1 << 53) - 1).await,
        202,
        "2^53 - 1 is the largest"
    );
    assert_eq!(app.jobs().await.len(), 1);
    // A sent_at in year 9999 would make the 10-s average −2.4e12 ms.
    let v = rejected(
        &app,
        packet(1, json!({"sent_at": "9999-01-01T00:00:00Z"})),
        &["sent_at"],
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_CLOCK_SKEW"),
        "{v}"
    );
    rejected(
        &app,
        packet(1, json!({"sent_at": "2001-01-01T00:00:00Z"})),
        &["sent_at"],
    )
    .await;
    // A leap second Elasticsearch would refuse after the 202.
    let leap = (chrono::Utc::now() - chrono::TimeDelta::minutes(1))
        .format("%Y-%m-%dT%H:%M:60Z")
        .to_string();
    let v = rejected(&app, packet(1, json!({ "sent_at": leap })), &["sent_at"]).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("leap second"),
        "{v}"
    );

    // Duplicate keys: the body is ambiguous, 400.
    let now = chrono::Utc::now().to_rfc3339();
    let dup = format!(r#"{{"number":1,"number":2,"sent_at":"{now}"}}"#);
    let resp = app
        .post_raw("/messages", Some("application/json"), dup.into_bytes())
        .await;
    let v = assert_problem(resp, 400).await;
    assert_eq!(v["type"], "urn:conveyor:problem:malformed-json", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("given twice"), "{v}");

    // 600,000 unknown keys: a short answer (20 errors and the count), not a 27 MB one.
    let mut body = String::from("{");
    for i in 0..600_000 {
        body.push_str(&format!("\"k{i}\":0,"));
    }
    body.push_str(&format!("\"number\":1,\"sent_at\":\"{now}\"}}"));
    assert!(body.len() > 512 * 1024);
    let resp = app
        .post_raw(
            "/messages/batch",
            Some("application/json"),
            format!("[{body}]").into_bytes(),
        )
        .await;
    let text_len = resp.content_length().unwrap_or(0);
    let v = assert_problem(resp, 422).await;
    assert_eq!(v["errors"].as_array().unwrap().len(), 20, "{v}");
    assert!(
        v["detail"].as_str().unwrap().starts_with("600000 field(s)"),
        "{v}"
    );
    assert!(text_len < 8 * 1024, "answer of {text_len} bytes");
    // The same body to POST /messages is over its one-packet limit.
    let resp = app
        .post_raw("/messages", Some("application/json"), body.into_bytes())
        .await;
    assert_problem(resp, 413).await;

    // An 8 MB batch of zeros stops at item 1001.
    let mut zeros = Vec::with_capacity(8 << 20);
    zeros.push(b'[');
    while zeros.len() < (8 << 20) - 16 {
        zeros.extend_from_slice(b"0,");
    }
    zeros.extend_from_slice(b"0]");
    let start = Instant::now();
    let resp = app
        .post_raw("/messages/batch", Some("application/json"), zeros)
        .await;
    let v = assert_problem(resp, 422).await;
    assert_eq!(v["errors"][0]["name"], "$", "{v}");
    println!("8 MB batch of zeros refused in {:?}", start.elapsed());

    let jobs = app.jobs().await;
    let numbers: Vec<u64> = jobs.iter().map(|(_, j)| j.packet.number).collect();
    assert_eq!(
        numbers,
        [(1 << 53) - 1],
        "only the valid packet was enqueued"
    );
    assert_eq!(app.stats().await.backlog, 1);
    app.stop().await;
}
