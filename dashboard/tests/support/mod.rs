//! Helpers for the dashboard's tests: an in-process dashboard on a port-0 listener pointed at the
//! real Redis and Elasticsearch, documents written with the pipeline's own store (real mapping),
//! and Elasticsearch's own per-index search counters.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pipeline::ids::ProducerName;
use pipeline::packet::StoredMessage;
use pipeline::store::Store;
use serde_json::{json, Value};
use service_kit::config::ElasticArgs;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

/// A dashboard running inside the test process.
pub struct Running {
    pub base: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let done = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        assert!(
            done.is_ok(),
            "dashboard did not stop within 5 s of shutdown"
        );
    }

    pub async fn stats(&self, http: &reqwest::Client) -> Value {
        let resp = http
            .get(format!("{}/api/stats", self.base))
            .send()
            .await
            .expect("GET /api/stats");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("/api/stats is JSON")
    }

    /// Polls `/api/stats` until `done` holds for the answer, or panics after `timeout`.
    pub async fn stats_until(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let s = self.stats(http).await;
            if done(&s) {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {what}; last /api/stats: {s}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of an unlabelled metric on `/metrics`.
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> f64 {
        let text = testkit::get_text(http, &format!("{}/metrics", self.base)).await;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from /metrics:\n{text}"))
    }
}

/// Starts the dashboard against `elasticsearch_url` (the real one or a proxy) for `env`.
pub async fn start_dashboard(env: &TestEnv, elasticsearch_url: &str) -> Running {
    start_dashboard_with(env, elasticsearch_url, &[]).await
}

/// [`start_dashboard`] with `extra` flags appended.
pub async fn start_dashboard_with(
    env: &TestEnv,
    elasticsearch_url: &str,
    extra: &[&str],
) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let config = dashboard::Config::from_args(
        [
            "--redis-url",
            &env.redis_url,
            "--queue-namespace",
            &env.namespace,
            "--elasticsearch-url",
            elasticsearch_url,
            "--es-index-prefix",
            &env.index_prefix,
            "--dashboard-addr",
            "127.0.0.1:0",
            "--query-timeout-ms",
            "1000",
        ]
        .into_iter()
        .chain(extra.iter().copied()),
    )
    .expect("dashboard config");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(dashboard::run(config, listener, shutdown.clone()));
    Running {
        base,
        shutdown,
        task,
    }
}

pub fn store(env: &TestEnv) -> Store {
    Store::new(&ElasticArgs::new(
        env.elasticsearch_url.clone(),
        env.index_prefix.clone(),
    ))
    .expect("store")
}

/// A stored message as the worker writes it.
pub fn message(number: u64, received_at: DateTime<Utc>, transit_ms: f64) -> StoredMessage {
    let sent_at = received_at - chrono::Duration::microseconds((transit_ms * 1000.0) as i64);
    StoredMessage {
        producer: ProducerName::parse("dash").unwrap(),
        number,
        sent_at,
        received_at,
        stored_at: received_at,
        transit_ms,
        word_lengths: vec![5],
        text: "hello".into(),
        part: None,
    }
}

/// Creates `{prefix}messages` with the pipeline's mapping and indexes `docs`, then refreshes.
pub async fn feed_messages(env: &TestEnv, docs: &[StoredMessage]) {
    let store = store(env);
    store.ensure_indices().await.expect("messages index");
    store
        .index_messages(docs)
        .await
        .expect("bulk index messages");
    env.refresh("messages").await;
}

/// Creates `{prefix}resources` (the fields the webhook service writes) and indexes one document
/// per `(delivered_at, latency_ms)`, then refreshes.
pub async fn feed_resources(env: &TestEnv, docs: &[(DateTime<Utc>, f64)]) {
    let store = store(env);
    let body = json!({
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
        "mappings": {"properties": {
            "resource_id": {"type": "keyword"},
            "delivered_at": {"type": "date"},
            "latency_ms": {"type": "double"}
        }}
    });
    let index = env.index("resources");
    store
        .ensure_index(&index, body)
        .await
        .expect("resources index");
    let items: Vec<(String, Value)> = docs
        .iter()
        .enumerate()
        .map(|(i, (at, latency))| {
            let id = format!("r{i}");
            (
                id.clone(),
                json!({"resource_id": id, "delivered_at": at, "latency_ms": latency}),
            )
        })
        .collect();
    store
        .index_docs(&index, &items)
        .await
        .expect("bulk index resources");
    env.refresh("resources").await;
}

/// Elasticsearch's own `query_total` per index of this test (`{prefix}*/_stats/search`).
pub async fn query_totals(env: &TestEnv) -> HashMap<String, u64> {
    let url = format!(
        "{}/{}*/_stats/search",
        env.elasticsearch_url, env.index_prefix
    );
    let body: Value = env
        .http
        .get(url)
        .send()
        .await
        .expect("index stats")
        .json()
        .await
        .expect("index stats JSON");
    body["indices"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, v)| {
                    let total = v["total"]["search"]["query_total"].as_u64().unwrap_or(0);
                    (name.clone(), total)
                })
                .collect()
        })
        .unwrap_or_default()
}
