//! Helpers shared by the Elasticsearch store tests (daily indices, retention, the legacy
//! upgrade): a store on the test's prefix, a stored message on a chosen day, and direct reads
//! of Elasticsearch (never through the store's code). No assertions here beyond "the request
//! itself succeeded".

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use pipeline::ids::ProducerName;
use pipeline::packet::StoredMessage;
use pipeline::store::Store;
use serde_json::{json, Value};
use service_kit::config::ElasticArgs;
use testkit::TestEnv;

pub fn store(env: &TestEnv) -> Store {
    Store::new(&ElasticArgs::new(
        env.elasticsearch_url.clone(),
        env.index_prefix.clone(),
    ))
    .expect("store")
}

/// Message `producer:number` sent at `sent_at`, received `transit_ms` later, stored 3 ms after.
pub fn message(
    producer: &str,
    number: u64,
    sent_at: DateTime<Utc>,
    transit_ms: f64,
) -> StoredMessage {
    let received_at = sent_at + Duration::microseconds((transit_ms * 1000.0) as i64);
    StoredMessage {
        producer: ProducerName::parse(producer).unwrap(),
        number,
        sent_at,
        received_at,
        stored_at: received_at + Duration::milliseconds(3),
        transit_ms,
        word_lengths: vec![5, 5],
        text: "héllo wörld".into(),
        part: None,
    }
}

pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// One request with an optional JSON body; the status and the JSON answer (Null when empty).
pub async fn es(
    env: &TestEnv,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = env
        .http
        .request(method, format!("{}{path}", env.elasticsearch_url));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("elasticsearch request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("elasticsearch answer");
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

/// Refreshes every index of the test (so searches see every write).
pub async fn refresh_all(env: &TestEnv) {
    let (status, answer) = es(
        env,
        reqwest::Method::POST,
        &format!("/{}*/_refresh", env.index_prefix),
        None,
    )
    .await;
    assert_eq!(status, 200, "refresh: {answer}");
}

/// Every document of the test's indices named `{prefix}messages-*` as `_id → [index, …]`, read
/// directly from the indices (not through the alias): how many copies each id has, and where.
pub async fn copies_per_id(env: &TestEnv) -> BTreeMap<String, Vec<String>> {
    refresh_all(env).await;
    let path = format!("/{}-*/_search", env.index("messages"));
    let body = json!({"size": 10000, "_source": false, "query": {"match_all": {}}});
    let (status, answer) = es(env, reqwest::Method::POST, &path, Some(body)).await;
    assert_eq!(status, 200, "search: {answer}");
    let mut copies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for hit in answer["hits"]["hits"].as_array().unwrap() {
        copies
            .entry(hit["_id"].as_str().unwrap().to_string())
            .or_default()
            .push(hit["_index"].as_str().unwrap().to_string());
    }
    copies
}

/// The names of the test's indices, sorted.
pub async fn index_names(env: &TestEnv) -> Vec<String> {
    let (status, answer) = es(
        env,
        reqwest::Method::GET,
        &format!("/_cat/indices/{}*?h=index&format=json", env.index_prefix),
        None,
    )
    .await;
    assert_eq!(status, 200, "cat indices: {answer}");
    let mut names: Vec<String> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The indices the alias `{prefix}messages` points at, sorted (empty when it does not exist).
pub async fn alias_targets(env: &TestEnv) -> Vec<String> {
    let alias = env.index("messages");
    let (status, answer) = es(env, reqwest::Method::GET, &format!("/_alias/{alias}"), None).await;
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "alias: {answer}");
    let mut names: Vec<String> = answer.as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}
