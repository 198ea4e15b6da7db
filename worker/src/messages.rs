//! The message job handler: for a batch, compute each stored document (word lengths, transit
//! time), index the whole batch with ONE `_bulk` request while recording the resource packets
//! for collation, then answer `Done(stored document)` per job so `?wait=true` callers get the
//! result.
//!
//! Nothing is acked before BOTH Elasticsearch and the collation confirmed: while Elasticsearch
//! is unreachable the batch keeps its lease (the queue's heartbeat extends it) and retries in
//! place, and after `es_wait` it goes back to the queue to wait (`Outcome::Wait`: no attempt is
//! used up, so an outage of any length never dead-letters a message). A permanent rejection is
//! isolated per document so one bad document cannot dead-letter its batch-mates.
//!
//! Traces: each job's span continues the trace its request started ([`JobSpans`]).

use std::time::{Duration, Instant};

use chrono::Utc;
use pipeline::collate::{CollateError, Collator};
use pipeline::packet::{MessageJob, StoredMessage};
use pipeline::store::{Store, StoreError};
use queue::{Backoff, Handler, Job, Outcome};
use service_kit::trace;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{done, retry, wait};

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

    /// The stored documents, and per document whether its job's caller waits for it.
    fn process_all(jobs: Vec<Job<MessageJob>>) -> (Vec<StoredMessage>, Vec<bool>) {
        let now = Utc::now();
        let replies = jobs.iter().map(|j| j.reply_wanted).collect();
        let stored = jobs
            .into_iter()
            .map(|j| pipeline::task::process_owned(j.payload, now))
            .collect();
        (stored, replies)
    }

    /// Retries a transiently failing bulk in place until it succeeds, `es_wait` passes or the
    /// process shuts down. Returns the last result. A retry re-stamps `stored_at` on a copy (the
    /// first attempt, the common case, copies nothing).
    async fn index_patiently(&self, stored: &[StoredMessage]) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut restamped: Option<Vec<StoredMessage>> = None;
        loop {
            let docs = restamped.as_deref().unwrap_or(stored);
            let result = self.store.index_messages(docs).await;
            match &result {
                Err(e) if e.is_transient() => {
                    if started.elapsed() >= self.es_wait || self.shutdown.is_cancelled() {
                        return result;
                    }
                    tracing::warn!(error = %e, jobs = stored.len(),
                        "elasticsearch unavailable; batch keeps its lease and retries");
                    // Stopped early: the next round returns the result (the shutdown check).
                    backoff.wait(&self.shutdown).await;
                    let now = Utc::now();
                    let docs = restamped.get_or_insert_with(|| stored.to_vec());
                    docs.iter_mut().for_each(|d| d.stored_at = now);
                }
                _ => return result,
            }
        }
    }

    /// After a permanent bulk failure: index each document alone to find the bad ones.
    /// Collation already succeeded for the whole batch (see [`Handler::handle`]).
    async fn isolate(&self, stored: Vec<StoredMessage>, replies: &[bool]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(stored.len());
        for (doc, &reply) in stored.into_iter().zip(replies) {
            let outcome = match self.store.index_messages(std::slice::from_ref(&doc)).await {
                Ok(()) => {
                    metrics::counter!("conveyor_messages_stored_total").increment(1);
                    done(&doc, reply)
                }
                Err(e) if e.is_transient() => wait(&e.to_string()),
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
}

impl Handler<MessageJob> for MessageHandler {
    async fn handle(&self, jobs: Vec<Job<MessageJob>>) -> Vec<Outcome> {
        let spans = JobSpans::new(&jobs);
        let batch = spans.batch.clone();
        let outcomes = self.handle_batch(jobs, &spans).instrument(batch).await;
        spans.settle(&outcomes);
        outcomes
    }
}

/// The trace side of a batch: one `message` span per job, continuing the trace the job was
/// enqueued with (the request that posted it), and one `batch` span for the work the jobs share
/// (word lengths, the `_bulk`, the collation). The batch span is a child of the first job's span
/// (a batch of one, the common case at low rates, nests whole) and links to the others' spans;
/// each job's outcome is logged inside its own span, so every message's store is found under its
/// own trace id. A resource's delivery job carries the trace of the packet that completed it;
/// its other packets' traces are found through the `resource_id` their lines carry.
struct JobSpans {
    jobs: Vec<tracing::Span>,
    traces: Vec<Option<String>>,
    batch: tracing::Span,
}

impl JobSpans {
    fn new(jobs: &[Job<MessageJob>]) -> JobSpans {
        let spans: Vec<tracing::Span> = jobs
            .iter()
            .map(|j| {
                let resource_id = j.payload.packet.part.as_ref().map(|p| p.id().to_string());
                let resource_id = resource_id.as_deref();
                let span = tracing::info_span!("message", job_id = %j.id,
                    doc_id = %j.payload.packet.doc_id(), resource_id, attempt = j.attempt);
                trace::continue_from(&span, j.trace.as_deref());
                span
            })
            .collect();
        let traces: Vec<Option<String>> = spans.iter().map(trace::traceparent).collect();
        let batch = tracing::info_span!(parent: spans.first().and_then(|s| s.id()), "batch", jobs = jobs.len());
        for span in spans.iter().skip(1) {
            trace::link_span(&batch, span);
        }
        JobSpans {
            jobs: spans,
            traces,
            batch,
        }
    }

    /// One line per job, in its own span: what became of it. (Spans are entered only for a line
    /// something records: a dead letter's warning, the others at debug.)
    fn settle(&self, outcomes: &[Outcome]) {
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        for (span, outcome) in self.jobs.iter().zip(outcomes) {
            if !debug && !matches!(outcome, Outcome::Dead { .. }) {
                continue;
            }
            let _in = span.enter();
            match outcome {
                Outcome::Done(_) => tracing::debug!("message stored"),
                Outcome::Wait { reason, .. } => tracing::debug!(%reason, "message waits"),
                Outcome::Retry { error, .. } => tracing::debug!(%error, "message will be retried"),
                Outcome::Dead { reason } => tracing::warn!(%reason, "message dead-lettered"),
            }
        }
    }
}

impl MessageHandler {
    async fn handle_batch(&self, jobs: Vec<Job<MessageJob>>, spans: &JobSpans) -> Vec<Outcome> {
        let started = Instant::now();
        let (stored, replies) = Self::process_all(jobs);
        // Collation runs concurrently with the `_bulk` instead of after it: the resource's
        // completion (and its webhook) no longer waits for Elasticsearch's answer. Safe because
        // (1) both effects are idempotent — fixed `_id`s in Elasticsearch, and collate.lua
        // records a packet per seq and completes a resource (enqueueing its delivery) only once,
        // so a batch run again after a failure changes nothing it already did; (2) the jobs are
        // answered Done (acked) only when BOTH succeeded — a failed bulk or a failed collation
        // still retries the whole batch, so no packet is acked without being stored and
        // collated. The one difference: a packet whose document Elasticsearch rejects for good
        // (dead-lettered below) may already count towards its resource; such a document cannot
        // be produced from a validated packet under the strict mapping.
        let (indexed, collated): (Result<(), StoreError>, Result<usize, CollateError>) = tokio::join!(
            self.index_patiently(&stored),
            self.collator.record_traced(&stored, &spans.traces)
        );
        let outcomes = match (indexed, collated) {
            (Ok(()), Ok(_)) => {
                metrics::counter!("conveyor_messages_stored_total").increment(stored.len() as u64);
                stored
                    .iter()
                    .zip(&replies)
                    .map(|(doc, &reply)| done(doc, reply))
                    .collect()
            }
            (Ok(()), Err(e)) if e.is_transient() => {
                // Redis slow or unreachable: the batch waits, without using up an attempt, and
                // runs again (stored and collated again: both idempotent). A slow Redis never
                // dead-letters accepted messages.
                tracing::warn!(error = %e, jobs = stored.len(), "collation did not answer; batch handed back to wait for redis");
                let reason = format!("collation: {e}");
                stored.iter().map(|_| wait(&reason)).collect()
            }
            (Ok(()), Err(e)) => {
                tracing::warn!(error = %e, jobs = stored.len(), "collation failed; batch will be retried");
                let reason = format!("collation: {e}");
                stored.iter().map(|_| retry(&reason)).collect()
            }
            (Err(e), _) if e.is_transient() => {
                // Elasticsearch is still down after `es_wait` (or we are shutting down): hand the
                // batch back to wait, without using up an attempt — however long the outage
                // lasts, accepted messages are never dead-lettered for it.
                tracing::warn!(error = %e, jobs = stored.len(), "batch handed back to wait for elasticsearch");
                let reason = e.to_string();
                stored.iter().map(|_| wait(&reason)).collect()
            }
            (Err(e), Err(c)) => {
                tracing::warn!(error = %e, collation = %c, jobs = stored.len(),
                    "bulk rejected and collation failed; batch will be retried");
                let reason = format!("collation: {c}");
                stored.iter().map(|_| retry(&reason)).collect()
            }
            (Err(e), Ok(_)) => {
                tracing::warn!(error = %e, jobs = stored.len(), "bulk rejected; indexing one by one");
                self.isolate(stored, &replies).await
            }
        };
        metrics::histogram!("conveyor_worker_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(
            jobs = outcomes.len(),
            ms = started.elapsed().as_millis() as u64,
            "batch handled"
        );
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::packet::Packet;
    use serde_json::json;

    fn stored() -> StoredMessage {
        let packet: Packet = serde_json::from_value(json!({
            "number": 7, "sent_at": "2023-11-14T22:13:20Z", "producer": "p", "text": "héllo wörld",
            "resource_id": null, "seq": null, "total": null
        }))
        .unwrap();
        let job = MessageJob {
            packet,
            received_at: Utc::now(),
        };
        pipeline::task::process_owned(job, Utc::now())
    }

    #[test]
    fn the_result_is_built_only_for_a_waiting_caller() {
        let doc = stored();
        match done(&doc, true) {
            Outcome::Done(v) => {
                assert_eq!(v["word_lengths"], json!([5, 5]));
                assert_eq!(v["number"], 7);
            }
            other => panic!("expected Done, got {other:?}"),
        }
        match done(&doc, false) {
            Outcome::Done(v) => assert!(v.is_null(), "{v}"),
            other => panic!("expected Done, got {other:?}"),
        }
    }
}
