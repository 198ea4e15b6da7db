//! The worker's settings: shared Redis/Elasticsearch/log groups plus the queue worker knobs, all
//! flags with environment fallbacks (`worker --help`). Describes settings only; opens nothing.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use service_kit::config::{ElasticArgs, LogArgs, RedisArgs, RuntimeArgs};

/// Runs message jobs from the `messages` queue (and webhook deliveries).
#[derive(Parser, Clone, Debug)]
#[command(name = "worker", version, about)]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub elastic: ElasticArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub delivery: crate::delivery::DeliveryArgs,
    /// Batches handled at once by this process
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Most jobs per batch (one Elasticsearch _bulk request per batch). 500 rather than 100:
    /// under load it cut worker and Elasticsearch CPU per message by about a quarter each
    /// (bench/README.md, "Pipeline"); an idle queue still sends whatever is there at once
    #[arg(long, env = "WORKER_BATCH_SIZE", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// After a read that returned fewer than --batch-size jobs, wait up to this many ms for more.
    /// 0 by default: a backlog already fills batches (reads return full batches while every
    /// slot is busy), so lingering only delays an idle queue's jobs (webhook latency)
    #[arg(long, env = "WORKER_BATCH_LINGER_MS", default_value_t = 0)]
    pub batch_linger_ms: u64,
    /// A job not acked within this many ms (heartbeat extends it) is reclaimed by another worker
    #[arg(long, env = "LEASE_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub lease_ms: u64,
    /// Attempts before a failing job goes to the dead-letter stream
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// While Elasticsearch is unreachable a batch keeps its lease and retries in place for up to
    /// this many ms before it is handed back to the queue to wait (no attempt used)
    #[arg(long, env = "WORKER_ES_WAIT_MS", default_value_t = 60_000)]
    pub es_wait_ms: u64,
    /// Address of the /healthz, /readyz and /metrics listener (off when unset)
    #[arg(long, env = "WORKER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// On SIGTERM, in-flight batches get this many ms to finish
    #[arg(long, env = "WORKER_SHUTDOWN_MS", default_value_t = 10_000)]
    pub shutdown_ms: u64,
}

impl Config {
    /// The queue worker settings these flags describe.
    pub fn worker_config(&self) -> queue::WorkerConfig {
        queue::WorkerConfig {
            batch_size: self.batch_size as usize,
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            concurrency: self.concurrency as usize,
            lease: Duration::from_millis(self.lease_ms),
            shutdown_deadline: Duration::from_millis(self.shutdown_ms),
            ..queue::WorkerConfig::default()
        }
    }

    /// The `messages` queue of this deployment's namespace.
    pub fn messages_queue(&self) -> queue::QueueConfig {
        let mut q = pipeline::queues::messages(&self.redis.queue_namespace);
        q.max_attempts = self.max_attempts;
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_reach_the_queue_settings() {
        let c = Config::try_parse_from([
            "worker",
            "--batch-size",
            "7",
            "--lease-ms",
            "1500",
            "--max-attempts",
            "3",
            "--queue-namespace",
            "ns1",
            "--webhook-secret",
            "s",
        ])
        .unwrap();
        let w = c.worker_config();
        assert_eq!(w.batch_size, 7);
        assert_eq!(w.lease, Duration::from_millis(1500));
        assert_eq!(w.concurrency, 4);
        // Defaults read from the flag definitions (the environment cannot change them here).
        let default = |id: &str| {
            let cmd = <Config as clap::CommandFactory>::command();
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).cloned();
            arg.map(|a| a.get_default_values().to_vec())
        };
        assert_eq!(default("batch_size"), Some(vec!["500".into()]));
        assert_eq!(default("batch_linger_ms"), Some(vec!["0".into()]));
        let q = c.messages_queue();
        assert_eq!(
            (q.namespace.as_str(), q.name.as_str(), q.max_attempts),
            ("ns1", "messages", 3)
        );
        assert!(c.metrics_addr.is_none());
        assert!(Config::try_parse_from(["worker", "--batch-size", "0"]).is_err());
    }
}
