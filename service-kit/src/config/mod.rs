//! Configuration groups shared by the binaries: each is a clap `Args` struct with environment
//! fallbacks, flattened into a binary's own config. Names match `.env.example` and the README's configuration table.
//! This module only describes settings; it opens no connections. Modules: `redis` (Redis URL,
//! TLS, ACL user; the connection info every Redis connection uses), `elastic` (Elasticsearch
//! URL, CA, API key or basic auth, index names).

mod elastic;
mod redis;

use clap::Args;

pub use self::elastic::{ElasticArgs, ElasticAuth, ElasticConnection, IndexSettings};
pub use self::redis::{install_crypto_provider, RedisArgs};

pub use crate::http::HttpArgs;
pub use crate::process::ProcessArgs;
pub use crate::runtime::RuntimeArgs;
pub use crate::telemetry::LogArgs;

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
