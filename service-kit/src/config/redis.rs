//! [`RedisArgs`]: where Redis is, how to reach it (`redis://` or `rediss://` with a CA file) and
//! as whom (ACL user and password, from the URL or `REDIS_USERNAME` / `REDIS_PASSWORD(_FILE)`).
//! [`RedisArgs::connection_info`] is the one place that turns them into what every Redis
//! connection of every binary uses: the pool, the result subscriber, any other client.
//! It opens no connection itself; its errors never contain a password.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use deadpool_redis::redis::{self, ConnectionAddr, IntoConnectionInfo};

use crate::secret::{self, redact_url, Secret};

/// Where Redis is, who we are to it, and which key namespace this deployment uses.
#[derive(Args, Clone)]
pub struct RedisArgs {
    /// Redis URL. One node: redis://[user[:password]@]host:port[/db], or rediss:// for TLS.
    /// A Redis Cluster: redis+cluster://[user[:password]@]host:port[,host:port...] (or
    /// rediss+cluster://), one or more seed nodes
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// ACL user name (overrides the URL's)
    #[arg(long, env = "REDIS_USERNAME")]
    pub redis_username: Option<String>,
    /// Password (overrides the URL's); prefer REDIS_PASSWORD_FILE
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<Secret>,
    /// File holding the password (one line)
    #[arg(long, env = "REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate (rediss:// only; default: the
    /// system's roots)
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Prefix of every Redis key Conveyor writes (tests use unique values)
    #[arg(long, env = "QUEUE_NAMESPACE", default_value = "conveyor")]
    pub queue_namespace: String,
    /// Partitions of each of the stack's queues (`messages`, `webhooks`), 1 to 1024. Each
    /// partition is one stream in one hash slot, so on a Redis Cluster more partitions spread a
    /// queue over more masters. Every process must use the count the queue was created with
    /// (each checks it against Redis at start and refuses to run otherwise)
    #[arg(long, env = "QUEUE_PARTITIONS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=MAX_QUEUE_PARTITIONS))]
    pub queue_partitions: u16,
    /// Largest number of pooled Redis connections
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 32)]
    pub redis_pool_size: usize,
    /// How long one command or pipeline may wait for its answer, e.g. `5s`. Sized for the
    /// largest pipelines (a worker's collation of a 500-job batch) behind others on a Redis
    /// that fsyncs every write: past it the outcome is unknown and the work is done again.
    #[arg(long, env = "REDIS_RESPONSE_TIMEOUT", default_value = "5s",
          value_parser = response_timeout)]
    pub redis_response_timeout: std::time::Duration,
    /// Replicas that must confirm every enqueue and every settle (`WAIT n timeout` on the
    /// master that took the writes); 0 = do not wait. An enqueue confirmed by fewer answers 503
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,
    /// How long one replication WAIT waits, in ms (keep it well below REDIS_RESPONSE_TIMEOUT)
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_wait_timeout_ms: u64,
}

fn response_timeout(value: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be longer than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// The largest `QUEUE_PARTITIONS`: a partition costs every idle worker a read per poll on a
/// cluster, and 1024 already gives each of a large cluster's masters several.
pub const MAX_QUEUE_PARTITIONS: i64 = 1024;

/// Default `REDIS_RESPONSE_TIMEOUT` (redis-rs's own default is 500 ms).
pub const DEFAULT_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl std::fmt::Debug for RedisArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisArgs")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("redis_username", &self.redis_username)
            .field("redis_password", &self.redis_password)
            .field("redis_password_file", &self.redis_password_file)
            .field("redis_ca_file", &self.redis_ca_file)
            .field("queue_namespace", &self.queue_namespace)
            .field("queue_partitions", &self.queue_partitions)
            .field("redis_pool_size", &self.redis_pool_size)
            .field("redis_response_timeout", &self.redis_response_timeout)
            .field("redis_wait_replicas", &self.redis_wait_replicas)
            .field("redis_wait_timeout_ms", &self.redis_wait_timeout_ms)
            .finish()
    }
}

impl RedisArgs {
    /// Settings for `url` and nothing else (tests, tools): no user, password or CA file beyond
    /// what the URL says.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> RedisArgs {
        RedisArgs {
            redis_url: url.into(),
            redis_username: None,
            redis_password: None,
            redis_password_file: None,
            redis_ca_file: None,
            queue_namespace: namespace.into(),
            queue_partitions: 1,
            redis_pool_size: 32,
            redis_response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 1000,
        }
    }

    /// One of the stack's queues as this deployment runs it: `QUEUE_PARTITIONS` partitions and
    /// the replication wait (`REDIS_WAIT_REPLICAS`, `REDIS_WAIT_TIMEOUT_MS`). Every process that
    /// opens `messages` or `webhooks` builds it through here, so all agree on the count.
    pub fn stack_queue(&self, mut config: queue::QueueConfig) -> queue::QueueConfig {
        config.partitions = self.queue_partitions;
        self.replicated(config)
    }

    /// `config` with this deployment's replication wait (`REDIS_WAIT_REPLICAS`,
    /// `REDIS_WAIT_TIMEOUT_MS`).
    pub fn replicated(&self, mut config: queue::QueueConfig) -> queue::QueueConfig {
        config.wait_replicas = self.redis_wait_replicas;
        config.wait_timeout = std::time::Duration::from_millis(self.redis_wait_timeout_ms);
        config
    }

    /// The URL as it may appear in a log line (password replaced).
    pub fn redacted_url(&self) -> String {
        redact_url(&self.redis_url)
    }

    /// Whether `REDIS_URL` names a Redis Cluster (`redis+cluster://` / `rediss+cluster://`).
    pub fn is_cluster(&self) -> bool {
        queue::cluster_seed_urls(&self.redis_url).is_some()
    }

    /// What every connection to Redis is opened with: address (TLS when `rediss://`, trusting
    /// `REDIS_CA_FILE` when set), database, user and password. Reads the password and CA files.
    /// For a cluster URL: the first seed node's.
    pub fn connection_info(&self) -> anyhow::Result<redis::ConnectionInfo> {
        match self.cluster_seeds()?.into_iter().next() {
            Some(first) => Ok(first),
            None => self.connection_info_for(&self.redis_url),
        }
    }

    /// The seed nodes of a cluster URL, each with the user, password and CA of
    /// [`RedisArgs::connection_info`]; empty for a one-node URL.
    pub fn cluster_seeds(&self) -> anyhow::Result<Vec<redis::ConnectionInfo>> {
        let Some(seeds) = queue::cluster_seed_urls(&self.redis_url) else {
            return Ok(Vec::new());
        };
        if seeds.is_empty() {
            bail!(
                "invalid REDIS_URL {}: a cluster URL needs at least one host:port",
                redact_url(&self.redis_url)
            );
        }
        seeds.iter().map(|s| self.connection_info_for(s)).collect()
    }

    fn connection_info_for(&self, url: &str) -> anyhow::Result<redis::ConnectionInfo> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            bail!(
                "invalid REDIS_URL {}: expected redis://, rediss://, redis+cluster:// or rediss+cluster://",
                redact_url(url)
            );
        }
        // redis-rs's parse errors describe the problem, not the URL; the URL shown is redacted.
        let mut info = url
            .into_connection_info()
            .map_err(|e| anyhow::anyhow!("invalid REDIS_URL {}: {e}", redact_url(url)))?;
        if let Some(user) = self.redis_username.as_deref().filter(|u| !u.is_empty()) {
            let settings = info.redis_settings().clone().set_username(user);
            info = info.set_redis_settings(settings);
        }
        let password = secret::from_value_or_file(
            "REDIS_PASSWORD",
            self.redis_password.as_ref(),
            self.redis_password_file.as_deref(),
        )?;
        if let Some(password) = password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        match self
            .redis_ca_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            Some(path) if !tls => bail!(
                "REDIS_CA_FILE {} is set but REDIS_URL is not rediss:// (TLS)",
                path.display()
            ),
            Some(path) => {
                let pem = read_pem("REDIS_CA_FILE", path)?;
                install_crypto_provider();
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                let client = redis::Client::build_with_tls(info, certificates)
                    .with_context(|| format!("REDIS_CA_FILE {}", path.display()))?;
                Ok(client.get_connection_info().clone())
            }
            None => {
                if tls {
                    install_crypto_provider();
                }
                Ok(info)
            }
        }
    }

    /// A client for connections outside the pool (e.g. pub/sub), same settings as the pool.
    pub fn client(&self) -> anyhow::Result<redis::Client> {
        Ok(redis::Client::open(self.connection_info()?)?)
    }

    /// A connection pool (one node, or a cluster for a cluster URL); connections are opened
    /// lazily, so this succeeds while Redis is down.
    pub fn pool(&self) -> anyhow::Result<queue::RedisPool> {
        let seeds = self.cluster_seeds()?;
        if !seeds.is_empty() {
            return queue::RedisPool::cluster(
                seeds,
                self.redis_pool_size,
                Some(self.redis_response_timeout),
            )
            .context("building the Redis Cluster pool");
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.redis_response_timeout));
        let manager = deadpool_redis::Manager::new_with_config(self.connection_info()?, config)
            .context("building the Redis connection manager")?;
        queue::RedisPool::single(manager, self.redis_pool_size).context("building the Redis pool")
    }
}

/// The bytes of a PEM file that holds at least one certificate.
pub(crate) fn read_pem(name: &str, path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("{name} {}", path.display()))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        bail!("{name} {} holds no PEM certificate", path.display());
    }
    Ok(pem)
}

/// rustls needs one process-wide crypto provider; when a build links two (ring and aws-lc-rs,
/// e.g. through a test-only dependency) it cannot pick one itself. Ring is the one every
/// Conveyor binary links. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
