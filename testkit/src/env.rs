//! Per-test isolation: a unique Redis namespace and Elasticsearch index prefix, checked
//! connections to both servers, and cleanup of exactly what the test created.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use deadpool_redis::{Config, Pool, Runtime};

/// The Redis the suite runs against. Panics with instructions when unset: tests never skip.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| {
        panic!("REDIS_URL is not set: run the suite with `./setup.sh test` (or `./setup.sh dev` and export its URLs)")
    })
}

/// The Elasticsearch the suite runs against. Panics with instructions when unset.
pub fn elasticsearch_url() -> String {
    std::env::var("ELASTICSEARCH_URL").unwrap_or_else(|_| {
        panic!("ELASTICSEARCH_URL is not set: run the suite with `./setup.sh test` (or `./setup.sh dev` and export its URLs)")
    })
}

/// `prefix-<8 hex chars>`: unique per call, safe in Redis keys and (lowercase) index names.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", prefix.to_lowercase(), &id[..8])
}

/// One test's slice of the shared servers.
pub struct TestEnv {
    /// Redis key namespace (`QUEUE_NAMESPACE`) owned by this test.
    pub namespace: String,
    /// Elasticsearch index prefix (`ES_INDEX_PREFIX`) owned by this test, ends with `-`.
    pub index_prefix: String,
    pub redis_url: String,
    pub elasticsearch_url: String,
    pub redis: Pool,
    pub http: reqwest::Client,
}

impl TestEnv {
    /// Connects to both servers and fails loudly if either does not answer.
    pub async fn new(test: &str) -> TestEnv {
        Self::try_new(test)
            .await
            .unwrap_or_else(|e| panic!("test environment for `{test}`: {e:#}"))
    }

    async fn try_new(test: &str) -> Result<TestEnv> {
        let name = unique_name(&format!("t{}", test.replace('_', "")));
        let redis_url = redis_url();
        let elasticsearch_url = elasticsearch_url().trim_end_matches('/').to_string();
        let redis = Config::from_url(&redis_url)
            .create_pool(Some(Runtime::Tokio1))
            .context("building the Redis pool")?;
        let mut conn = tokio::time::timeout(Duration::from_secs(5), redis.get())
            .await
            .context("Redis did not answer within 5 s")?
            .with_context(|| format!("Redis at {redis_url} is not reachable"))?;
        let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
        if pong != "PONG" {
            bail!("Redis answered {pong:?} to PING");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let health = http
            .get(format!(
                "{elasticsearch_url}/_cluster/health?wait_for_status=yellow&timeout=10s"
            ))
            .send()
            .await
            .with_context(|| format!("Elasticsearch at {elasticsearch_url} is not reachable"))?;
        if !health.status().is_success() {
            bail!("Elasticsearch health answered {}", health.status());
        }
        Ok(TestEnv {
            namespace: name.clone(),
            index_prefix: format!("{name}-"),
            redis_url,
            elasticsearch_url,
            redis,
            http,
        })
    }

    /// Elasticsearch's `ip:port`, for putting a [`crate::TcpProxy`] in front of it (the tests
    /// that cut Elasticsearch off). Panics unless `ELASTICSEARCH_URL` is `http://ip:port`.
    pub fn elasticsearch_addr(&self) -> std::net::SocketAddr {
        self.elasticsearch_url
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| {
                panic!(
                    "ELASTICSEARCH_URL {} is not http://ip:port: {e}",
                    self.elasticsearch_url
                )
            })
    }

    /// Full name of an index owned by this test, e.g. `index("messages")`.
    pub fn index(&self, base: &str) -> String {
        format!("{}{}", self.index_prefix, base)
    }

    /// `POST <index>/_refresh` so searches see every write.
    pub async fn refresh(&self, base: &str) {
        let url = format!("{}/{}/_refresh", self.elasticsearch_url, self.index(base));
        let resp = self.http.post(url).send().await.expect("refresh request");
        assert!(
            resp.status().is_success(),
            "refresh {base}: {}",
            resp.status()
        );
    }

    /// Runs a search body against one of this test's indices and returns the raw JSON answer.
    pub async fn search(&self, base: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}/{}/_search", self.elasticsearch_url, self.index(base));
        let resp = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("search request");
        let status = resp.status();
        let json: serde_json::Value = resp.json().await.expect("search answer is JSON");
        assert!(status.is_success(), "search {base}: {status} {json}");
        json
    }

    /// Every Redis key of this test's namespace (for assertions about leftovers).
    pub async fn redis_keys(&self) -> Vec<String> {
        let mut conn = self.redis.get().await.expect("redis connection");
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.namespace))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys
    }

    /// Deletes this test's Redis keys and Elasticsearch indices. Call at the end of a test.
    pub async fn cleanup(&self) {
        let keys = self.redis_keys().await;
        if !keys.is_empty() {
            let mut conn = self.redis.get().await.expect("redis connection");
            for chunk in keys.chunks(500) {
                let _: () = redis::cmd("UNLINK")
                    .arg(chunk)
                    .query_async(&mut conn)
                    .await
                    .expect("UNLINK");
            }
        }
        let url = format!("{}/{}*", self.elasticsearch_url, self.index_prefix);
        let _ = self.http.delete(url).send().await;
    }
}
