//! [`GroupCommit`]: the create-only writes of deliveries that arrive together share one `_bulk`.
//!
//! Each delivery hands its document to one writer task and waits for its own item's answer. The
//! writer takes the first waiting document, then every other one already waiting (up to
//! `max_batch`), and sends them as one `_bulk`; while that request is out, new deliveries queue up
//! for the next one, and at most [`IN_FLIGHT`] (one) request is out at once. One delivery alone
//! waits for nothing (its `_bulk` leaves at once); under load Elasticsearch sees a few large
//! requests instead of one per resource: everything that arrived while one request was out goes in
//! the next, and while they keep coming (the previous request left less than [`BUSY`] ago) the next
//! waits up to [`LINGER`] for more: with the workers' 32 deliveries in flight per batch the
//! requests carried ~45 resources without it, ~80 with 3 ms and ~125 with 8 ms (100,000-packet
//! stack runs, 2 workers), and Elasticsearch spent ~3 µs less per message with 3 ms
//! (bench/README.md, "The stack"); a delivery under load waits at most 8 ms more for it, against
//! seconds of backlog. (With two out at once the requests were a third
//! smaller, and Elasticsearch pays ~0.75–2.5 ms of CPU per `_bulk`, by the machine's speed, on top
//! of its per-document cost: bench/README.md, "The stack".) A failed `_bulk` fails each delivery of
//! it with the same error (each then answers 503 and the worker delivers again: create-only writes
//! make that safe).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::ids::ResourceKey;
use pipeline::store::StoreError;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::store::{Created, DeliveredResource, ResourceStore};

/// `_bulk` requests out at once.
pub const IN_FLIGHT: usize = 1;
/// How long a `_bulk` waits for more deliveries when the one before it left less than [`BUSY`]
/// ago (a delivery alone after a quiet spell never waits).
pub const LINGER: Duration = Duration::from_millis(8);
/// See [`LINGER`].
pub const BUSY: Duration = Duration::from_millis(50);
/// Deliveries queued for the writer at most; one more waits for room (the service's
/// concurrency limit bounds them anyway).
const QUEUED: usize = 1024;

struct Pending {
    id: String,
    /// The document's JSON.
    source: Vec<u8>,
    answer: oneshot::Sender<Result<Created, StoreError>>,
}

/// The writer's mailbox (cheap to clone).
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer on the current runtime; it ends when every clone is dropped.
    pub fn start(store: ResourceStore, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(writer(store, rx, max_batch.max(1)));
        GroupCommit { tx }
    }

    /// Creates `doc` under `key` (create-only), in the next `_bulk` out.
    pub async fn create(
        &self,
        key: &ResourceKey,
        doc: &DeliveredResource,
    ) -> Result<Created, StoreError> {
        let source = serde_json::to_vec(doc)
            .map_err(|e| StoreError::Decode(format!("encoding the resource: {e}")))?;
        let (answer, answered) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the webhook service is stopping".into());
        self.tx
            .send(Pending {
                id: key.to_string(),
                source,
                answer,
            })
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

async fn writer(store: ResourceStore, mut rx: mpsc::Receiver<Pending>, max_batch: usize) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut last_sent: Option<Instant> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Under load (the previous `_bulk` left moments ago) wait up to LINGER for more.
        if last_sent.is_some_and(|t| t.elapsed() < BUSY) {
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.len() < max_batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    _ => break,
                }
            }
        }
        last_sent = Some(Instant::now());
        let store = store.clone();
        tokio::spawn(async move {
            flush(&store, batch).await;
            drop(permit);
        });
    }
}

async fn flush(store: &ResourceStore, batch: Vec<Pending>) {
    metrics::histogram!("conveyor_webhook_bulk_size").record(batch.len() as f64);
    let (docs, answers): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|p| ((p.id, p.source), p.answer))
        .unzip();
    match store.create_many(docs).await {
        Ok(results) => {
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(result);
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(e.clone()));
            }
        }
    }
}
