//! The worker's settings: shared Redis/Elasticsearch/log groups plus the queue worker knobs, all
//! flags with environment fallbacks (`worker --help`). Describes settings only; opens nothing.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use pipeline::collate::Collator;
use pipeline::resource::DeliveryJob;
use queue::Queue;
use service_kit::config::{RedisArgs, ServiceArgs};

/// Runs message jobs from the `messages` queue (and webhook deliveries).
#[derive(Parser, Clone, Debug)]
#[command(name = "worker", version, about)]
pub struct Config {
    #[command(flatten)]
    pub common: ServiceArgs,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
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
    /// Most MB of jobs held at once over the batches in flight: reads ask for fewer jobs when
    /// jobs are large (a batch holds a few copies of each: the read reply, the decoded packet,
    /// the word lengths, the store request), so 500 × 4 batches of 60 KB texts cannot make a
    /// worker hold hundreds of MB
    #[arg(long, env = "WORKER_MAX_INFLIGHT_MB", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=4095))]
    pub max_inflight_mb: u32,
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
    /// Days a stored message is kept: roughly hourly, every worker deletes the daily message
    /// indices of days (UTC, of `sent_at`) older than this. Must be greater than
    /// MAX_MESSAGE_AGE in days, so no message the API still accepts lands in a deleted day
    #[arg(long, env = "MESSAGE_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub message_retention_days: u32,
    /// The consumer's MAX_MESSAGE_AGE (the oldest `sent_at` it accepts), e.g. `7d`: the worker
    /// only checks MESSAGE_RETENTION_DAYS against it
    #[arg(long, env = "MAX_MESSAGE_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub max_message_age: Duration,
}

/// Seconds in a day.
const DAY_SECS: u64 = 86_400;

impl Config {
    /// Refuses settings that contradict each other (checked at start-up, before anything runs).
    pub fn validate(&self) -> anyhow::Result<()> {
        // The webhook secrets first: a worker without a usable one stops at once, saying how.
        self.delivery.secrets()?;
        // MAX_MESSAGE_AGE in whole days, rounded up: 7d → 7, 7d1h → 8.
        let age_days = self.max_message_age.as_secs().div_ceil(DAY_SECS);
        if u64::from(self.message_retention_days) <= age_days {
            anyhow::bail!(
                "MESSAGE_RETENTION_DAYS={} must be greater than MAX_MESSAGE_AGE={} counted in \
                 whole days ({age_days}): the API accepts messages sent up to {age_days} days ago, and they would \
                 be stored into daily indices the retention deletes. Set MESSAGE_RETENTION_DAYS \
                 to {} or more, or lower MAX_MESSAGE_AGE",
                self.message_retention_days,
                humantime::format_duration(self.max_message_age),
                age_days + 1
            );
        }
        Ok(())
    }

    /// The queue worker settings these flags describe.
    pub fn worker_config(&self) -> queue::WorkerConfig {
        queue::WorkerConfig {
            batch_size: self.batch_size as usize,
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            concurrency: self.concurrency as usize,
            max_inflight_bytes: (self.max_inflight_mb as usize) << 20,
            lease: Duration::from_millis(self.lease_ms),
            shutdown_deadline: Duration::from_millis(self.shutdown_ms),
            ..queue::WorkerConfig::default()
        }
    }

    /// The `messages` queue of this deployment's namespace, with `QUEUE_PARTITIONS` partitions.
    pub fn messages_queue(&self) -> queue::QueueConfig {
        let redis = &self.common.redis;
        let mut q = redis.stack_queue(pipeline::queues::messages(&redis.queue_namespace));
        q.max_attempts = self.max_attempts;
        q.dead_letter_max = self.delivery.dead_letter_max;
        q
    }
}

/// Webhook delivery settings (flattened into the worker's config).
#[derive(clap::Args, Clone, Debug)]
pub struct DeliveryArgs {
    /// Where collated resources are POSTed
    #[arg(
        long,
        env = "WEBHOOK_URL",
        default_value = "http://127.0.0.1:8001/webhooks/resources",
        value_parser = parse_webhook_url
    )]
    pub webhook_url: String,
    #[command(flatten)]
    pub secrets: pipeline::signing::SecretArgs,
    /// A resource still incomplete this many ms after its first packet is dead-lettered
    #[arg(long, env = "RESOURCE_TIMEOUT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub resource_timeout_ms: u64,
    /// Timeout of one webhook POST, in ms
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_timeout_ms: u64,
    /// Completed resources' Redis keys expire after this many seconds
    #[arg(long, env = "RESOURCE_TTL_SECS", default_value_t = 3_600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub resource_ttl_secs: u64,
    /// Attempts of one delivery before it is dead-lettered (retries back off exponentially)
    #[arg(long, env = "WEBHOOK_MAX_ATTEMPTS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_max_attempts: u32,
    /// Longest pause between two delivery attempts, in ms
    #[arg(long, env = "WEBHOOK_BACKOFF_MAX_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_backoff_max_ms: u64,
    /// Linger of the webhooks worker after the first job of a batch, in ms (0 = deliver at once)
    #[arg(long, env = "WEBHOOK_BATCH_LINGER_MS", default_value_t = 0)]
    pub webhook_batch_linger_ms: u64,
    /// How long a finished resource's tombstone (which keeps late duplicates from reopening it)
    /// and a completed, undelivered resource's data are kept in Redis, e.g. `7d`; keep it at
    /// least the consumer's MAX_MESSAGE_AGE
    #[arg(long, env = "RESOURCE_RETENTION", default_value = "7d",
          value_parser = humantime::parse_duration)]
    pub resource_retention: Duration,
    /// Dead letters kept per partition of each queue (`messages` and `webhooks`); the oldest
    /// are trimmed beyond it (and counted: `dead_trimmed` in the stats). 0 keeps all
    #[arg(long, env = "DEAD_LETTER_MAX", default_value_t = queue::DEFAULT_DEAD_LETTER_MAX)]
    pub dead_letter_max: u64,
}

/// Accepts only absolute `http://` or `https://` URLs with a host and without credentials (a
/// password in the URL would be logged with every failed delivery).
fn parse_webhook_url(value: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry credentials (deliveries are signed instead)".into());
    }
    Ok(value.to_string())
}

impl DeliveryArgs {
    /// The signing secrets (current first), or an error saying how to set them.
    pub fn secrets(&self) -> anyhow::Result<pipeline::signing::Secrets> {
        self.secrets.load()
    }

    /// The `webhooks` queue of `redis`'s namespace with these attempts and backoff and `redis`'s
    /// replication wait (opens nothing).
    pub fn webhooks_queue(&self, pool: queue::RedisPool, redis: &RedisArgs) -> Queue<DeliveryJob> {
        let mut config = redis.stack_queue(pipeline::queues::webhooks(&redis.queue_namespace));
        config.max_attempts = self.webhook_max_attempts;
        config.dead_letter_max = self.dead_letter_max;
        config.backoff_max = Duration::from_millis(self.webhook_backoff_max_ms);
        Queue::new(pool, config)
    }

    /// The collator the message side records packets with; its delivery jobs land on
    /// `webhooks` (opens nothing).
    pub fn collator(&self, pool: queue::RedisPool, redis: &RedisArgs) -> Collator {
        let queue = self.webhooks_queue(pool.clone(), redis);
        Collator::new(
            pool,
            &redis.queue_namespace,
            &queue,
            Duration::from_secs(self.resource_ttl_secs),
        )
        .with_retention(self.resource_retention)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes";

    #[test]
    fn webhook_urls_are_absolute_http_without_credentials() {
        for good in [
            "http://127.0.0.1:8001/webhooks/resources",
            "https://hooks.example/x?y=1",
        ] {
            assert_eq!(parse_webhook_url(good).as_deref(), Ok(good));
        }
        for bad in [
            "ftp://h/x",
            "file:///etc/passwd",
            "/relative",
            "http://user:pw@h/x",
            "unix:/x",
        ] {
            let err = parse_webhook_url(bad).unwrap_err();
            assert!(!err.contains("pw@"), "{err}");
        }
    }

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
            SECRET,
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
        assert_eq!(default("max_inflight_mb"), Some(vec!["4".into()]));
        assert_eq!(w.max_inflight_bytes, 4 << 20);
        assert!(Config::try_parse_from(["worker", "--max-inflight-mb", "0"]).is_err());
        let q = c.messages_queue();
        assert_eq!(
            (q.namespace.as_str(), q.name.as_str(), q.max_attempts),
            ("ns1", "messages", 3)
        );
        assert!(c.metrics_addr.is_none());
        assert!(Config::try_parse_from(["worker", "--batch-size", "0"]).is_err());
        assert_eq!(c.message_retention_days, 30);
        c.validate().unwrap();
    }

    #[test]
    fn a_retention_not_longer_than_the_message_age_is_refused() {
        let parse = |args: &[&str]| {
            let mut all = vec!["worker", "--webhook-secret", SECRET];
            all.extend_from_slice(args);
            Config::try_parse_from(all).unwrap()
        };
        let err = parse(&["--message-retention-days", "7"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "MESSAGE_RETENTION_DAYS=7 must be greater than MAX_MESSAGE_AGE=7days counted in whole days (7)"
            ) && err.contains("to 8 or more"),
            "{err}"
        );
        parse(&["--message-retention-days", "8"])
            .validate()
            .unwrap();
        // A partial day counts as a whole one.
        let c = parse(&[
            "--message-retention-days",
            "8",
            "--max-message-age",
            "7d 1h",
        ]);
        assert!(c.validate().is_err());
        parse(&["--message-retention-days", "2", "--max-message-age", "1d"])
            .validate()
            .unwrap();
        assert!(Config::try_parse_from(["worker", "--message-retention-days", "0"]).is_err());
    }
}
