//! The message job handler: for a batch, compute each stored document (word lengths, transit
//! time), index the whole batch with ONE `_bulk` request, record resource packets for collation,
//! then answer `Done(stored document)` per job so `?wait=true` callers get the result.
//!
//! Nothing is acked before Elasticsearch confirmed it: while Elasticsearch is unreachable the
//! batch keeps its lease (the queue's heartbeat extends it) and retries in place, and after
//! `es_wait` it goes back to the queue as a retry. A permanent rejection is isolated per
//! document so one bad document cannot dead-letter its batch-mates.

use std::time::{Duration, Instant};

use chrono::Utc;
use pipeline::collate::Collator;
use pipeline::packet::{MessageJob, StoredMessage};
use pipeline::store::{Store, StoreError};
use queue::{Handler, Job, Outcome};
use tokio_util::sync::CancellationToken;

/// Handles batches of `messages` jobs.
pub struct MessageHandler {
    store: Store,
    collator: Collator,
    es_wait: Duration,
    shutdown: CancellationToken,
}

impl MessageHandler {
    pub fn new(
        store: Store,
        collator: Collator,
        es_wait: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        MessageHandler {
            store,
            collator,
            es_wait,
            shutdown,
        }
    }

    fn process_all(jobs: &[Job<MessageJob>]) -> Vec<StoredMessage> {
        let now = Utc::now();
        jobs.iter()
            .map(|j| pipeline::task::process(&j.payload, now))
            .collect()
    }

    /// Retries a transiently failing bulk in place until it succeeds, `es_wait` passes or the
    /// process shuts down. Returns the last result.
    async fn index_patiently(
        &self,
        jobs: &[Job<MessageJob>],
    ) -> (Vec<StoredMessage>, Result<(), StoreError>) {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let stored = Self::process_all(jobs);
            let result = self.store.index_messages(&stored).await;
            match &result {
                Err(e) if e.is_transient() => {
                    if started.elapsed() >= self.es_wait || self.shutdown.is_cancelled() {
                        return (stored, result);
                    }
                    tracing::warn!(error = %e, jobs = jobs.len(), retry_in_ms = pause.as_millis() as u64,
                        "elasticsearch unavailable; batch keeps its lease and retries");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                _ => return (stored, result),
            }
        }
    }

    /// After a permanent bulk failure: index each document alone to find the bad ones.
    async fn isolate(&self, stored: Vec<StoredMessage>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(stored.len());
        for doc in stored {
            let outcome = match self.store.index_messages(std::slice::from_ref(&doc)).await {
                Ok(()) => self
                    .finish(vec![doc])
                    .await
                    .pop()
                    .unwrap_or_else(|| retry("no outcome")),
                Err(e) if e.is_transient() => retry(&e.to_string()),
                Err(e) => {
                    tracing::error!(doc_id = %doc.doc_id(), error = %e, "document rejected");
                    Outcome::Dead {
                        reason: format!("elasticsearch rejected {}: {e}", doc.doc_id()),
                    }
                }
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Documents are durable in Elasticsearch: collate, then answer each job with its document.
    async fn finish(&self, stored: Vec<StoredMessage>) -> Vec<Outcome> {
        metrics::counter!("conveyor_messages_stored_total").increment(stored.len() as u64);
        if let Err(e) = self.collator.record(&stored).await {
            tracing::warn!(error = %e, jobs = stored.len(), "collation failed; batch will be retried");
            return stored
                .iter()
                .map(|_| retry(&format!("collation: {e}")))
                .collect();
        }
        stored
            .into_iter()
            .map(|doc| match serde_json::to_value(&doc) {
                Ok(value) => Outcome::Done(value),
                Err(e) => Outcome::Dead {
                    reason: format!("encoding the result: {e}"),
                },
            })
            .collect()
    }
}

fn retry(error: &str) -> Outcome {
    Outcome::Retry {
        error: error.to_string(),
        after: None,
    }
}

impl Handler<MessageJob> for MessageHandler {
    async fn handle(&self, jobs: Vec<Job<MessageJob>>) -> Vec<Outcome> {
        let started = Instant::now();
        let (stored, result) = self.index_patiently(&jobs).await;
        let outcomes = match result {
            Ok(()) => self.finish(stored).await,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, jobs = jobs.len(), "batch handed back for retry");
                jobs.iter().map(|_| retry(&e.to_string())).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = jobs.len(), "bulk rejected; indexing one by one");
                self.isolate(stored).await
            }
        };
        metrics::histogram!("conveyor_worker_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(
            jobs = jobs.len(),
            ms = started.elapsed().as_millis() as u64,
            "batch handled"
        );
        outcomes
    }
}
