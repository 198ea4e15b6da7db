//! The consumer's configuration: flags with environment fallbacks (see `.env.example`), the
//! shared Redis / Elasticsearch / logging groups flattened in. Describes settings only; opens
//! nothing.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use pipeline::packet::EdgeRules;
use service_kit::config::ServiceArgs;

/// `consumer --help`
#[derive(Parser, Clone, Debug)]
#[command(
    name = "consumer",
    about = "Conveyor ingest API: POST packets, read stored messages and stats"
)]
pub struct Config {
    #[command(flatten)]
    pub common: ServiceArgs,
    /// Address the HTTP API listens on
    #[arg(long, env = "CONSUMER_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// Jobs waiting in the `messages` queue above which POSTs answer 429
    #[arg(long, env = "BACKLOG_LIMIT", default_value_t = 100_000)]
    pub backlog_limit: u64,
    /// Bytes the `messages` queue's jobs may hold in Redis (stream + delayed set, as Redis
    /// estimates them) above which POSTs answer 429, whatever their count; keep it well under
    /// Redis's maxmemory (0 = no byte budget)
    #[arg(long, env = "BACKLOG_LIMIT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub backlog_limit_bytes: u64,
    /// How long a backlog reading is reused before Redis is asked again, in ms
    #[arg(long, env = "BACKLOG_CACHE_MS", default_value_t = 200)]
    pub backlog_cache_ms: u64,
    /// Largest accepted request body in bytes (413 above)
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest `timeout_ms` a `?wait=true` request may ask for
    #[arg(long, env = "WAIT_MAX_MS", default_value_t = 30_000)]
    pub wait_max_ms: u64,
    /// `timeout_ms` used when a `?wait=true` request gives none
    #[arg(long, env = "WAIT_DEFAULT_MS", default_value_t = 5_000)]
    pub wait_default_ms: u64,
    /// Longest a single Redis or Elasticsearch call may take before the answer is 503, in ms
    #[arg(long, env = "DEPENDENCY_TIMEOUT_MS", default_value_t = 5_000)]
    pub dependency_timeout_ms: u64,
    /// Most single `POST /messages` enqueues sent to Redis in one pipelined round trip
    #[arg(long, env = "ENQUEUE_BATCH_MAX", default_value_t = 512)]
    pub enqueue_batch_max: usize,
    /// How far a packet's `sent_at` may lie after the moment the API received it (a producer
    /// clock ahead of ours), e.g. `5s`; later ones answer 422
    #[arg(long, env = "MAX_CLOCK_SKEW", default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_clock_skew: Duration,
    /// How old a packet's `sent_at` may be when it arrives, e.g. `7d`; older ones answer 422
    #[arg(long, env = "MAX_MESSAGE_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub max_message_age: Duration,
    /// Pipelined enqueue round trips in flight at once (requests arriving meanwhile go together
    /// in the next one)
    #[arg(long, env = "ENQUEUE_IN_FLIGHT", default_value_t = 2)]
    pub enqueue_in_flight: usize,
}

impl Config {
    pub fn backlog_cache(&self) -> Duration {
        Duration::from_millis(self.backlog_cache_ms)
    }

    /// The edge rules for a packet received at `received_at`.
    pub fn edge_rules(&self, received_at: DateTime<Utc>) -> EdgeRules {
        let delta = |d: Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
        EdgeRules {
            received_at,
            max_clock_skew: delta(self.max_clock_skew),
            max_age: delta(self.max_message_age),
        }
    }

    pub fn dependency_timeout(&self) -> Duration {
        Duration::from_millis(self.dependency_timeout_ms.max(1))
    }

    /// The `messages` queue of this deployment: its namespace, `QUEUE_PARTITIONS` and
    /// replication wait (opens nothing).
    pub fn messages_queue(&self) -> queue::QueueConfig {
        let redis = &self.common.redis;
        redis.stack_queue(pipeline::queues::messages(&redis.queue_namespace))
    }
}
