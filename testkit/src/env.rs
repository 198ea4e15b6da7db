//! Per-test isolation: a unique Redis namespace and Elasticsearch index prefix, checked
//! connections to both servers, and cleanup of exactly what the test created: when the
//! `TestEnv` drops, whether the test passed or panicked.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use deadpool_redis::Pool;

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

/// `url` without the password of its user info (for messages).
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_string(),
    }
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
    /// A plain HTTP client (for the services under test).
    pub http: reqwest::Client,
    /// The HTTP client for Elasticsearch: trusts `ELASTICSEARCH_CA_FILE`, sends the configured
    /// API key or basic auth (see [`crate::transport`]).
    pub es: reqwest::Client,
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
        let redis =
            crate::transport::redis_pool_for(&redis_url).context("building the Redis pool")?;
        let mut conn = tokio::time::timeout(Duration::from_secs(5), redis.get())
            .await
            .context("Redis did not answer within 5 s")?
            .with_context(|| format!("Redis at {} is not reachable", redacted(&redis_url)))?;
        let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
        if pong != "PONG" {
            bail!("Redis answered {pong:?} to PING");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let es = crate::transport::elasticsearch_client(Duration::from_secs(30))?;
        let health = es
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
            es,
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
        let resp = self.es.post(url).send().await.expect("refresh request");
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
            .es
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
        namespace_keys(&mut conn, &self.namespace)
            .await
            .expect("SCAN")
    }

    /// Deletes this test's Redis keys and Elasticsearch indices now. Dropping the `TestEnv` does
    /// the same (see [`Drop`] below), so a test calls this only when it must see the servers
    /// clean before it goes on. Idempotent: a second call finds nothing to delete.
    pub async fn cleanup(&self) {
        let mut conn = self.redis.get().await.expect("redis connection");
        delete_namespace(&mut conn, &self.namespace)
            .await
            .expect("deleting the test's Redis keys");
        let _ = delete_indices(&self.es, &self.elasticsearch_url, &self.index_prefix).await;
    }
}

/// Cleanup that runs even when the test fails: dropping a `TestEnv` (at the end of the test, or
/// while a panic unwinds) deletes its Redis keys and Elasticsearch indices. The test's own
/// runtime may be blocked in this very call (or gone), so the work runs on a thread of its own
/// with a current-thread runtime and fresh connections, and the drop waits for it at most
/// [`DROP_CLEANUP_DEADLINE`]. A failure is reported on stderr, never as a panic (a panic while
/// unwinding would abort the whole test binary).
impl Drop for TestEnv {
    fn drop(&mut self) {
        let leftovers = Leftovers {
            namespace: self.namespace.clone(),
            index_prefix: self.index_prefix.clone(),
            redis_url: self.redis_url.clone(),
            elasticsearch_url: self.elasticsearch_url.clone(),
        };
        if let Err(e) = leftovers.remove_blocking() {
            eprintln!(
                "testkit: cleanup of namespace {} on drop failed: {e:#}",
                self.namespace
            );
        }
    }
}

/// How long dropping a [`TestEnv`] waits for its cleanup.
pub const DROP_CLEANUP_DEADLINE: Duration = Duration::from_secs(5);

/// What a dropped [`TestEnv`] deletes, owned, so it can move to the cleanup thread.
struct Leftovers {
    namespace: String,
    index_prefix: String,
    redis_url: String,
    elasticsearch_url: String,
}

impl Leftovers {
    /// Runs [`Leftovers::remove`] on a new thread and waits for it, within the deadline.
    fn remove_blocking(self) -> Result<()> {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("testkit-cleanup".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building the cleanup runtime")
                    .and_then(|rt| {
                        rt.block_on(async {
                            tokio::time::timeout(DROP_CLEANUP_DEADLINE, self.remove())
                                .await
                                .context("cleanup timed out")?
                        })
                    });
                let _ = done_tx.send(result);
            })
            .context("spawning the cleanup thread")?;
        // A little longer than the runtime's own timeout, for building the runtime.
        match done_rx.recv_timeout(DROP_CLEANUP_DEADLINE + Duration::from_secs(1)) {
            Ok(result) => result,
            Err(e) => bail!("the cleanup thread did not report: {e}"),
        }
    }

    async fn remove(self) -> Result<()> {
        let info = crate::transport::redis_connection_info(&self.redis_url)?;
        let client = redis::Client::open(info).context("Redis URL")?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .context("connecting to Redis")?;
        delete_namespace(&mut conn, &self.namespace).await?;
        let http = crate::transport::elasticsearch_client(Duration::from_secs(3))?;
        delete_indices(&http, &self.elasticsearch_url, &self.index_prefix).await
    }
}

/// Every key of `namespace` (`<namespace>:*`), sorted.
async fn namespace_keys<C>(conn: &mut C, namespace: &str) -> redis::RedisResult<Vec<String>>
where
    C: redis::aio::ConnectionLike + Send,
{
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    Ok(keys)
}

/// `UNLINK`s every key of `namespace`.
async fn delete_namespace<C>(conn: &mut C, namespace: &str) -> Result<()>
where
    C: redis::aio::ConnectionLike + Send,
{
    let keys = namespace_keys(conn, namespace)
        .await
        .context("SCAN of the namespace")?;
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(conn)
            .await
            .context("UNLINK")?;
    }
    Ok(())
}

/// Deletes every index named `<prefix>*` (the servers run with
/// `action.destructive_requires_name: false`, see `scripts/provision.sh`), then every index
/// template named `<prefix>*` (the messages' daily indices have one).
async fn delete_indices(
    http: &reqwest::Client,
    elasticsearch_url: &str,
    prefix: &str,
) -> Result<()> {
    for what in [format!("{prefix}*"), format!("_index_template/{prefix}*")] {
        let resp = http
            .delete(format!("{elasticsearch_url}/{what}"))
            .send()
            .await
            .with_context(|| format!("DELETE {what}"))?;
        // No template of the test: 404, nothing to clean.
        if !resp.status().is_success() && resp.status() != reqwest::StatusCode::NOT_FOUND {
            bail!("DELETE {what} answered {}", resp.status());
        }
    }
    Ok(())
}
