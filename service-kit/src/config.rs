//! Configuration groups shared by the binaries: each is a clap `Args` struct with environment
//! fallbacks, flattened into a binary's own config. Names match `.env.example` and the README's configuration table.
//! This module only describes settings; it opens no connections.

use clap::Args;

pub use crate::http::HttpArgs;
pub use crate::process::ProcessArgs;
pub use crate::runtime::RuntimeArgs;
pub use crate::telemetry::LogArgs;

/// Where Redis is and which key namespace this deployment uses.
#[derive(Args, Clone, Debug)]
pub struct RedisArgs {
    /// Redis URL (single node), e.g. redis://127.0.0.1:6379
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Prefix of every Redis key Conveyor writes (tests use unique values)
    #[arg(long, env = "QUEUE_NAMESPACE", default_value = "conveyor")]
    pub queue_namespace: String,
    /// Largest number of pooled Redis connections
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 32)]
    pub redis_pool_size: usize,
}

impl RedisArgs {
    /// A connection pool; connections are opened lazily, so this succeeds while Redis is down.
    pub fn pool(&self) -> anyhow::Result<deadpool_redis::Pool> {
        use anyhow::Context;
        let mut cfg = deadpool_redis::Config::from_url(self.redis_url.clone());
        cfg.pool = Some(deadpool_redis::PoolConfig::new(self.redis_pool_size));
        cfg.create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .with_context(|| format!("invalid REDIS_URL {:?}", self.redis_url))
    }
}

/// Where Elasticsearch is and how this deployment names its indices.
#[derive(Args, Clone, Debug)]
pub struct ElasticArgs {
    /// Elasticsearch base URL, e.g. http://127.0.0.1:9200
    #[arg(
        long,
        env = "ELASTICSEARCH_URL",
        default_value = "http://127.0.0.1:9200"
    )]
    pub elasticsearch_url: String,
    /// Prefix prepended to index names (`messages`, `resources`); tests use unique values
    #[arg(long, env = "ES_INDEX_PREFIX", default_value = "")]
    pub es_index_prefix: String,
}

impl ElasticArgs {
    /// Full name of an index, e.g. `index("messages")`.
    pub fn index(&self, base: &str) -> String {
        format!("{}{}", self.es_index_prefix, base)
    }
}

/// The groups of a service that uses both Redis and Elasticsearch (consumer, worker,
/// dashboard), flattened into its `Config` as one field; `http` bounds its HTTP server.
#[derive(Args, Clone, Debug)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub elastic: ElasticArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}
