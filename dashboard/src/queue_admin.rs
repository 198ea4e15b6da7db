//! The Queues page's source: what an operator sees of each queue of the namespace and the
//! actions they may take, through the queue library's public admin API only (`queue::admin` and
//! `Queue`'s admin methods). Reads are shared: one read at a time for the whole process, its
//! answer reused for [`FRESH_FOR`], so viewers never multiply the load on Redis; an action
//! drops the shared answers, so the next read shows its effect. Judges no caller (the routes
//! do) and knows nothing of HTTP but its error type.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use queue::admin::{self as qa, DeadEntry, DelayedJob, PartitionState, PendingJob, WorkerInfo};
use queue::{Pool, Queue, QueueError, QueueStats};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::AdminError;

/// How long one read's answer is shown to every viewer before Redis is read again.
pub const FRESH_FOR: Duration = Duration::from_millis(500);
/// Most answers kept (one per queue and list length); past it the cache starts over.
const MAX_CACHED: usize = 64;
/// Longest accepted queue name (longer ones cannot exist here: 404 without asking Redis).
const MAX_NAME: usize = 200;

/// One queue's totals: `stats` is exactly the library's [`QueueStats`], what the consumer's
/// `/stats` shows under `queue` for the messages queue.
#[derive(Clone, Debug, Serialize)]
pub struct QueueSummary {
    pub queue: String,
    pub partitions: u16,
    pub paused: bool,
    pub stats: QueueStats,
}

/// A dead letter with its handle `<partition>/<entry id>`, what retry and delete take.
#[derive(Clone, Debug, Serialize)]
pub struct DeadView {
    pub handle: String,
    #[serde(flatten)]
    pub entry: DeadEntry,
}

/// Everything the page shows of one queue, read at `read_at_ms`.
#[derive(Clone, Debug, Serialize)]
pub struct QueueDetail {
    #[serde(flatten)]
    pub summary: QueueSummary,
    pub by_partition: Vec<PartitionState>,
    pub workers: Vec<WorkerInfo>,
    pub pending: Vec<PendingJob>,
    pub delayed: Vec<DelayedJob>,
    pub dead: Vec<DeadView>,
    pub read_at_ms: i64,
}

/// Retry or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadAction {
    Retry,
    Delete,
}

impl DeadAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadAction::Retry => "retry",
            DeadAction::Delete => "delete",
        }
    }
}

/// Which dead letters an action touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Letters {
    One { partition: u16, entry_id: String },
    All,
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct QueueAdmin {
    pool: Pool,
    namespace: String,
    timeout: Duration,
    cache: Arc<Mutex<HashMap<String, (Instant, Value)>>>,
}

impl QueueAdmin {
    pub fn new(pool: Pool, namespace: &str, timeout: Duration) -> QueueAdmin {
        QueueAdmin {
            pool,
            namespace: namespace.to_string(),
            timeout,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Every queue of the namespace with its totals, as JSON.
    pub async fn list(&self) -> Result<Value, AdminError> {
        self.shared("", || {
            self.timed("list", async {
                let refs = qa::list_queues(&self.pool, &self.namespace).await?;
                let mut queues = Vec::with_capacity(refs.len());
                for r in refs {
                    let q = qa::open(self.pool.clone(), &self.namespace, &r.name).await?;
                    queues.push(summary(&q, r.name).await?);
                }
                Ok(serde_json::json!({ "queues": queues }))
            })
        })
        .await
    }

    /// One queue in full, with up to `limit` entries per list, as JSON; 404 for a queue that
    /// does not exist (a name not shared: each costs one `EXISTS`).
    pub async fn detail(&self, name: &str, limit: usize) -> Result<Value, AdminError> {
        self.shared(&format!("{limit}/{name}"), || async {
            let q = self.existing(name).await?;
            self.timed("detail", read_detail(&q, name, limit)).await
        })
        .await
    }

    /// Retries or deletes `letters` of queue `name`; returns how many were handled (404 for one
    /// letter that is not there).
    pub async fn dead(
        &self,
        name: &str,
        action: DeadAction,
        letters: &Letters,
    ) -> Result<u64, AdminError> {
        let q = self.existing(name).await?;
        let done = self
            .timed(action.as_str(), async {
                match (action, letters) {
                    (DeadAction::Retry, Letters::All) => q.retry_all_dead().await,
                    (DeadAction::Delete, Letters::All) => q.delete_all_dead().await,
                    (
                        DeadAction::Retry,
                        Letters::One {
                            partition,
                            entry_id,
                        },
                    ) => q.retry_dead(*partition, entry_id).await.map(|()| 1),
                    (
                        DeadAction::Delete,
                        Letters::One {
                            partition,
                            entry_id,
                        },
                    ) => q.delete_dead(*partition, entry_id).await.map(|()| 1),
                }
            })
            .await;
        self.cache.lock().await.clear();
        let done = done?;
        tracing::info!(queue = %name, action = action.as_str(), done, "admin: dead letters");
        Ok(done)
    }

    /// Pauses (`true`) or resumes queue `name`.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), AdminError> {
        let q = self.existing(name).await?;
        let what = if paused { "pause" } else { "resume" };
        let done = self
            .timed(what, async {
                match paused {
                    true => q.pause().await,
                    false => q.resume().await,
                }
            })
            .await;
        self.cache.lock().await.clear();
        done?;
        tracing::info!(queue = %name, paused, "admin: queue {what}d");
        Ok(())
    }

    /// Queue `name`, which must exist in the namespace (404 otherwise).
    async fn existing(&self, name: &str) -> Result<Queue<Value>, AdminError> {
        let no_such = || {
            AdminError::NotFound(format!(
                "no queue {name:?} in this namespace (GET /api/admin/queues lists them)"
            ))
        };
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(no_such());
        }
        let exists = self
            .timed("exists", qa::exists(&self.pool, &self.namespace, name))
            .await?;
        if !exists {
            return Err(no_such());
        }
        self.timed("open", qa::open(self.pool.clone(), &self.namespace, name))
            .await
    }

    /// The answer of `read` for `key`, read at most once per [`FRESH_FOR`] and one read at a
    /// time for the whole process (errors are not kept).
    async fn shared<F, Fut>(&self, key: &str, read: F) -> Result<Value, AdminError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Value, AdminError>>,
    {
        let mut cache = self.cache.lock().await;
        if let Some((at, value)) = cache.get(key) {
            if at.elapsed() < FRESH_FOR {
                return Ok(value.clone());
            }
        }
        let value = read().await?;
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key.to_string(), (Instant::now(), value.clone()));
        Ok(value)
    }

    /// `call` within the Redis time limit; a refusal is a 404, anything else a 503.
    async fn timed<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, QueueError>>,
    ) -> Result<T, AdminError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| AdminError::from_queue(what, e)),
            Err(_) => {
                tracing::warn!(
                    what,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "admin: redis timed out"
                );
                Err(AdminError::Unavailable)
            }
        }
    }
}

/// Everything the page shows of `q`, in a few round trips.
async fn read_detail(q: &Queue<Value>, name: &str, limit: usize) -> Result<Value, QueueError> {
    let detail = QueueDetail {
        summary: summary(q, name.to_string()).await?,
        by_partition: q.partition_states().await?,
        workers: q.workers().await?,
        pending: q.pending_jobs(limit).await?,
        delayed: q.delayed_jobs(limit).await?,
        dead: q
            .dead_entries(limit)
            .await?
            .into_iter()
            .map(|entry| DeadView {
                handle: format!("{}/{}", entry.partition, entry.entry_id),
                entry,
            })
            .collect(),
        read_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    Ok(serde_json::to_value(detail)?)
}

async fn summary(q: &Queue<Value>, queue: String) -> Result<QueueSummary, QueueError> {
    Ok(QueueSummary {
        partitions: q.keys().partitions(),
        paused: q.is_paused().await?,
        stats: q.stats().await?,
        queue,
    })
}
