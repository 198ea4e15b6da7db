//! Recurring jobs: occurrence `n` of a job every `every` is due at `n × every` since the Unix
//! epoch. Every process may run the same [`Recurring`]; `recurring.lua` sets an occurrence marker
//! with SET NX and XADDs in the same step, so each occurrence is enqueued exactly once. This
//! module does not run jobs; workers do.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::QueueError;
use crate::job::{now_ms, Entry};
use crate::queue::Queue;
use crate::scripts;

type Make<T> = Box<dyn Fn(u64) -> T + Send + Sync + 'static>;

/// A job enqueued once per occurrence of a fixed interval, across all processes running it.
pub struct Recurring<T> {
    queue: Queue<T>,
    name: String,
    every: Duration,
    make: Make<T>,
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Recurring<T> {
    /// `make(n)` builds the payload of occurrence `n` (`n = unix_ms / every_ms`).
    pub fn new(
        queue: Queue<T>,
        name: impl Into<String>,
        every: Duration,
        make: impl Fn(u64) -> T + Send + Sync + 'static,
    ) -> Self {
        Recurring {
            queue,
            name: name.into(),
            every: every.max(Duration::from_millis(1)),
            make: Box::new(make),
        }
    }

    /// Enqueues each occurrence as it falls due until `shutdown`. Redis errors are logged and
    /// the occurrence retried until the next one is due; the loop never exits on them.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), QueueError> {
        let every_ms = self.every.as_millis().max(1) as u64;
        let mut next = now_ms() / every_ms + 1;
        loop {
            let wait = (next * every_ms).saturating_sub(now_ms());
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
            // Skip occurrences missed while this process was stalled: only the current one runs.
            let current = now_ms() / every_ms;
            let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
            loop {
                match self.fire(current).await {
                    Ok(enqueued) => {
                        tracing::debug!(name = %self.name, occurrence = current, enqueued, "recurring occurrence");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(name = %self.name, occurrence = current, error = %e, "recurring enqueue failed; retrying");
                        if now_ms() >= (current + 1) * every_ms {
                            break;
                        }
                        if !backoff.wait(&shutdown).await {
                            return Ok(());
                        }
                    }
                }
            }
            next = current + 1;
        }
    }

    /// Enqueues occurrence `n` unless some process already did; true if this call did.
    async fn fire(&self, n: u64) -> Result<bool, QueueError> {
        let keys = self.queue.keys();
        let p = keys.partition_of(&self.name);
        let entry = Entry::new(serde_json::to_string(&(self.make)(n))?, false);
        let ttl_ms = (self.every.as_millis() as u64 * 3).max(60_000);
        let mut inv = scripts::RECURRING.prepare_invoke();
        inv.key(keys.occurrence(p, &self.name, n))
            .key(keys.stream(p))
            .arg(ttl_ms);
        for (k, v) in entry.fields() {
            inv.arg(k).arg(v);
        }
        let mut conn = self.queue.conn().await?;
        let added: i64 = inv.invoke_async(&mut conn).await?;
        if added == 1 {
            metrics::counter!("conveyor_jobs_enqueued_total", "queue" => self.queue.name().to_string())
                .increment(1);
        }
        Ok(added == 1)
    }
}
