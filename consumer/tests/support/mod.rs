//! Shared test helpers: start the real consumer in-process on 127.0.0.1:0 against the real
//! Redis and Elasticsearch (unique namespace and index prefix per test), plus a real HTTP client
//! and direct views of the queue.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use consumer::Config;
use pipeline::packet::MessageJob;
use queue::{Queue, QueueConfig, QueueStats};
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

pub struct App {
    pub addr: SocketAddr,
    pub url: String,
    pub http: reqwest::Client,
    pub config: Config,
    pub queue: Queue<MessageJob>,
    pub pool: queue::Pool,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A config for `env`, every other setting at its default; `extra` flags are appended.
pub fn config(env: &TestEnv, redis_url: &str, es_url: &str, extra: &[&str]) -> Config {
    let mut args = vec![
        "consumer".to_string(),
        "--redis-url".into(),
        redis_url.into(),
        "--queue-namespace".into(),
        env.namespace.clone(),
        "--elasticsearch-url".into(),
        es_url.into(),
        "--es-index-prefix".into(),
        env.index_prefix.clone(),
        "--addr".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::try_parse_from(args).expect("test config parses")
}

/// Starts the consumer on the shared Redis and Elasticsearch of `env`.
pub async fn spawn(env: &TestEnv, extra: &[&str]) -> App {
    spawn_with(config(env, &env.redis_url, &env.elasticsearch_url, extra)).await
}

/// Starts the consumer on a Redis of the test's own (e.g. a `testkit::RedisServer` it kills and
/// restarts) and the shared Elasticsearch.
pub async fn spawn_on(env: &TestEnv, redis_url: &str, extra: &[&str]) -> App {
    spawn_with(config(env, redis_url, &env.elasticsearch_url, extra)).await
}

pub async fn spawn_with(config: Config) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let task = tokio::spawn(consumer::run(config.clone(), listener, token.clone()));
    let url = format!("http://{addr}");
    testkit::wait_for_http(&format!("{url}/healthz"), Duration::from_secs(10))
        .await
        .expect("consumer answers /healthz");
    let pool = config.common.redis.pool().unwrap();
    let queue = Queue::new(
        pool.clone(),
        QueueConfig::new(config.common.redis.queue_namespace.clone(), "messages"),
    );
    App {
        addr,
        url,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        config,
        queue,
        pool,
        token,
        task,
    }
}

impl App {
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// POST raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self.http.post(self.at(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().await.expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.post_raw(
            path,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// POST /messages of `packet(n, {})`; returns the status.
    pub async fn post_number(&self, n: u64) -> u16 {
        let resp = self
            .post_json("/messages", &packet(n, serde_json::json!({})))
            .await;
        resp.status().as_u16()
    }

    /// GET `path` and decode the JSON answer (any status).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = self.http.get(self.at(path)).send().await.expect("request");
        resp.json().await.expect("a JSON answer")
    }

    pub async fn stats(&self) -> QueueStats {
        self.queue.stats().await.expect("queue stats")
    }

    /// Every job currently in the `messages` stream, oldest first.
    pub async fn jobs(&self) -> Vec<(String, MessageJob)> {
        let mut conn = self.pool.get().await.unwrap();
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.queue.stream_key(None))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        entries
            .ids
            .iter()
            .map(|e| {
                let id: String = e.get(queue::wire::ID).expect("job id field");
                let payload: String = e.get(queue::wire::PAYLOAD).expect("payload field");
                (
                    id,
                    serde_json::from_str(&payload).expect("payload is a MessageJob"),
                )
            })
            .collect()
    }

    /// Waits until the consumer's background start-up created the `messages` index and its shard
    /// serves reads: until then Elasticsearch answers a read of it with 503 (no shard available,
    /// even for a while after cluster health says yellow), which the API rightly passes on as
    /// 503, not 404.
    pub async fn messages_index_ready(&self) {
        let index = self.config.common.elastic.index("messages");
        let base = self
            .config
            .common
            .elastic
            .elasticsearch_url
            .trim_end_matches('/');
        let probe = format!("{base}/{index}/_doc/readiness-probe");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let resp = self.http.get(&probe).send().await.unwrap();
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            // `{"found": false}` (status 404) once the shard serves reads; an error body while
            // the index is missing (404) or its shard is still starting (503).
            if body.get("found").is_some() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "index {index} did not serve reads within 20 s (last status {status})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server and waits for `run` to return.
    pub async fn stop(self) {
        self.token.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("consumer stops within 10 s")
            .expect("consumer task did not panic");
        result.expect("run returned Ok");
    }
}

/// `{"number":n,"sent_at":now}` with extra fields merged in.
pub fn packet(n: u64, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({"number": n, "sent_at": chrono::Utc::now().to_rfc3339()});
    if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in more {
            obj.insert(k.clone(), val.clone());
        }
    }
    v
}
