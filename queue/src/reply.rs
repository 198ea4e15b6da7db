//! Request/reply: [`Queue::enqueue_and_wait`] / [`Queue::enqueue_and_wait_with`], bounded by
//! their timeout as a whole. A call registers with this process's result router (see `router`),
//! pushes the job and waits for the router to hand it the result. Workers write results (see
//! `worker::batch`); this module only waits for them.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::EnqueueOptions;
use crate::error::QueueError;
use crate::job::{Entry, JobId};
use crate::queue::Queue;
use crate::router::ReplyMsg;

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Queue<T> {
    /// Request/reply: enqueues the job and resolves with the handler's `Outcome::Done(value)`
    /// deserialized as `R`, or `Err(QueueError::Timeout)` after `timeout` (the job itself still
    /// runs later), or `Err(QueueError::Failed)` if the job was dead-lettered.
    /// Same as [`Queue::enqueue_and_wait_with`] with default options.
    pub async fn enqueue_and_wait<R: DeserializeOwned>(
        &self,
        payload: &T,
        timeout: Duration,
    ) -> Result<R, QueueError> {
        self.enqueue_and_wait_with(payload, EnqueueOptions::default(), timeout)
            .await
    }

    /// Request/reply with options: the partition key picks the partition and `run_at` delays the
    /// job (`reply` is always on). The WHOLE call — connecting the result subscriber, pushing the
    /// entry and waiting — is bounded by `timeout`: a hung Redis cannot hold the caller longer.
    ///
    /// Errors: `Timeout { job_id }` when the deadline passes after the entry may have reached
    /// Redis (the job may still run later); `Unavailable` when it passes before that (nothing was
    /// sent) or Redis is unreachable; `Failed` if the job was dead-lettered.
    pub async fn enqueue_and_wait_with<R: DeserializeOwned>(
        &self,
        payload: &T,
        opts: EnqueueOptions,
        timeout: Duration,
    ) -> Result<R, QueueError> {
        // A huge timeout (configuration) must not overflow `Instant`: treat it as "a year".
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        let entry = Entry::with_id(serde_json::to_string(payload)?, true, opts.job_id.clone())
            .traced(opts.trace.as_deref());
        let job_id = JobId(entry.id.clone());
        let unavailable =
            || QueueError::Unavailable("timed out before the job was enqueued".into());
        let info = self.inner.redis_info.get();
        let router =
            tokio::time::timeout_at(deadline.into(), self.inner.router.get(self.pool(), info))
                .await
                .map_err(|_| unavailable())??;
        let p = self.partition_for_job(&opts);
        let channel = match self.pool().is_cluster() {
            false => self.keys().results_channel(),
            true => self.keys().shard_results_channel(p),
        };
        // Bounded: a dead connection must not hold the caller past its deadline.
        let _ = tokio::time::timeout_at(deadline.into(), router.listen(&channel)).await;
        let subscribed =
            tokio::time::timeout_at(deadline.into(), router.until_subscribed(&channel))
                .await
                .unwrap_or(false);
        if !subscribed {
            return Err(QueueError::Unavailable(
                "result subscriber is not connected".into(),
            ));
        }
        // From here on the waiter must be forgotten on every early exit: `_waiter` does that.
        let (_waiter, rx) = router.register(&entry.id, self.keys().result(p, &entry.id));
        let pushed = tokio::time::timeout_at(
            deadline.into(),
            self.push_entry(p, &entry, opts.run_at, opts.job_id.is_some()),
        )
        .await;
        match pushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            // The XADD may or may not have reached Redis: the job may still run.
            Err(_) => return Err(QueueError::Timeout { job_id }),
        }
        // A job with a caller-supplied id may have run already (this call is a retry): its
        // result, if stored, will not be announced again.
        let stored = match opts.job_id.is_some() {
            true => tokio::time::timeout_at(deadline.into(), self.stored_result(p, &entry.id))
                .await
                .ok()
                .flatten(),
            false => None,
        };
        let answer = match stored {
            Some(msg) => Ok(Ok(msg)),
            None => tokio::time::timeout_at(deadline.into(), rx).await,
        };
        match answer {
            Ok(Ok(msg)) if msg.ok => Ok(serde_json::from_value(msg.value)?),
            Ok(Ok(msg)) => Err(QueueError::Failed {
                job_id,
                reason: msg.error.unwrap_or_default(),
            }),
            _ => Err(QueueError::Timeout { job_id }),
        }
    }

    /// The stored result of job `id` in partition `p`, if any (best effort: errors read as none).
    async fn stored_result(&self, p: u16, id: &str) -> Option<ReplyMsg> {
        let mut conn = self.conn().await.ok()?;
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.keys().result(p, id))
            .query_async(&mut conn)
            .await
            .ok()?;
        serde_json::from_str(&raw?).ok()
    }
}
