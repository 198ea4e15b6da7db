//! Plain configuration values: the queue itself ([`QueueConfig`]), one enqueue call
//! ([`EnqueueOptions`]) and one worker ([`WorkerConfig`]). No I/O and no defaults hidden
//! elsewhere: every default lives in a constructor here.

use std::time::{Duration, SystemTime};

/// A logical queue: a name inside a Redis namespace, spread over `partitions` streams.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Redis key namespace, e.g. `conveyor` (`QUEUE_NAMESPACE`).
    pub namespace: String,
    /// Queue name, e.g. `messages`, `webhooks`.
    pub name: String,
    /// Number of streams the queue is spread over (default 1, at least 1 is used).
    pub partitions: u16,
    /// Attempts before a retried job is dead-lettered (default 5).
    pub max_attempts: u32,
    /// Retry delay bound of the first retry; doubles per attempt, up to `backoff_max`. The delay
    /// is drawn uniformly below the bound ("full jitter"), so retries never fire in lockstep
    /// (default 100 ms).
    pub backoff_base: Duration,
    /// Cap on the retry delay (default 30 s).
    pub backoff_max: Duration,
    /// How long a reply-wanted result is kept for late waiters (default 300 s).
    pub result_ttl: Duration,
    /// Dead letters kept per partition (default 10,000; 0 keeps all). Redis trims whole stream
    /// nodes, so a stream may hold up to about a hundred more; the oldest go first and are
    /// counted ([`QueueStats::dead_trimmed`](crate::QueueStats::dead_trimmed)).
    pub dead_letter_max: u64,
    /// How long a job enqueued with a caller-supplied id ([`EnqueueOptions::job_id`]) is
    /// remembered: another enqueue with that id within the window adds nothing (default 60 s: long
    /// enough for a client's retries, short enough that the markers, about 100 bytes each, stay
    /// small in Redis under full load).
    pub dedup_window: Duration,
    /// Replicas that must confirm a write before it counts (`REDIS_WAIT_REPLICAS`; default 0 =
    /// do not wait). With n > 0 every enqueue and every settle ends with `WAIT n timeout` on the
    /// connection (and, on a cluster, the master) that took its writes: an enqueue fewer than n
    /// replicas confirmed is [`QueueError::NotReplicated`](crate::QueueError::NotReplicated)
    /// instead of `Ok`; a settle fewer confirmed is counted and logged (at worst its jobs run again).
    pub wait_replicas: u32,
    /// How long one `WAIT` waits for the replicas (`REDIS_WAIT_TIMEOUT_MS`; default 1 s).
    pub wait_timeout: Duration,
}

/// Dead letters kept per partition unless configured otherwise.
pub const DEFAULT_DEAD_LETTER_MAX: u64 = 10_000;
/// How long a replication `WAIT` waits unless configured otherwise.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_millis(1000);

impl QueueConfig {
    /// A queue with the defaults above.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        QueueConfig {
            namespace: namespace.into(),
            name: name.into(),
            partitions: 1,
            max_attempts: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            result_ttl: Duration::from_secs(300),
            dead_letter_max: DEFAULT_DEAD_LETTER_MAX,
            dedup_window: Duration::from_secs(60),
            wait_replicas: 0,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
        }
    }

    /// The replication wait of this queue's writes, `None` when off (`wait_replicas` 0).
    pub fn replication(&self) -> Option<crate::fanout::Replication> {
        (self.wait_replicas > 0).then_some(crate::fanout::Replication {
            replicas: self.wait_replicas,
            timeout: self.wait_timeout,
        })
    }

    /// Partition count actually used (0 is treated as 1).
    pub(crate) fn partition_count(&self) -> u16 {
        self.partitions.max(1)
    }
}

/// Options of one enqueue call.
#[derive(Clone, Debug, Default)]
pub struct EnqueueOptions {
    /// Hashed to choose the partition (e.g. a resource id); `None` spreads round-robin.
    pub partition_key: Option<String>,
    /// Run no earlier than this instant (a delayed job).
    pub run_at: Option<SystemTime>,
    /// Publish the handler's result for `enqueue_and_wait`.
    pub reply: bool,
    /// A caller-supplied job id (e.g. a natural key): the job is enqueued at most once per
    /// [`QueueConfig::dedup_window`] however often the call is repeated, so retrying after
    /// [`QueueError::OutcomeUnknown`](crate::QueueError::OutcomeUnknown) is safe. Without a
    /// partition key, the id picks the partition (so a retry lands in the same one).
    pub job_id: Option<String>,
    /// The W3C `traceparent` of the enqueuing span, carried in the job ([`Job::trace`](crate::Job::trace))
    /// so its handler continues the trace.
    pub trace: Option<String>,
}

/// Settings of one worker instance.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Consumer name in the group; unique per worker instance.
    pub consumer: String,
    /// Most jobs handed to the handler at once (default 100).
    pub batch_size: usize,
    /// After the first job of a batch, wait up to this long to fill it (default 2 ms).
    pub batch_linger: Duration,
    /// Batches in flight at once (default 4).
    pub concurrency: usize,
    /// Most bytes of entries held at once over all batches in flight (default 4 MiB): reads
    /// ask for fewer entries when entries are large. One read may exceed it when its entries
    /// are larger than any before; then no other read starts until batches have returned room.
    /// Reclaiming a dead worker's jobs never waits for room: it may exceed it by one job.
    pub max_inflight_bytes: usize,
    /// An unacked job is reclaimed by others after this idle time; extended by heartbeat (default 5 s).
    pub lease: Duration,
    /// XREADGROUP BLOCK time (default 1 s).
    pub block: Duration,
    /// On shutdown, in-flight batches get this long to finish (default 10 s).
    pub shutdown_deadline: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            consumer: default_consumer_name(),
            batch_size: 100,
            batch_linger: Duration::from_millis(2),
            concurrency: 4,
            max_inflight_bytes: 4 << 20,
            lease: Duration::from_secs(5),
            block: Duration::from_secs(1),
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}

/// `hostname-pid-random`, unique per process and per call.
fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    let random: u32 = rand::random();
    format!("{host}-{}-{random:08x}", std::process::id())
}
