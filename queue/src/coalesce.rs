//! [`Coalescer`]: many concurrent single enqueues sent as pipelined batches. Callers hand their
//! job to one dispatcher task and wait for its id; the dispatcher takes whatever is waiting right
//! now (never lingering for more, so an idle queue adds no latency), sends it as one
//! [`Queue::enqueue_batch_keyed`] round trip and answers every caller with its own id — only
//! after Redis confirmed the XADD — or with the batch's error. A caller that gave up before its
//! batch was sent is left out of it. It owns no Redis state of its own and never retries.

use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::QueueError;
use crate::job::JobId;
use crate::queue::Queue;

/// One waiting enqueue: partition key, caller-supplied job id, payload, trace context (W3C
/// `traceparent`), and where its answer goes.
type Pending<T> = (
    Option<String>,
    Option<String>,
    T,
    Option<String>,
    oneshot::Sender<Result<JobId, QueueError>>,
);

/// Coalesces concurrent enqueues on one queue into pipelined batches (see the module docs).
/// The dispatcher task starts on first use and stops once the coalescer is dropped.
pub struct Coalescer<T> {
    queue: Queue<T>,
    max_batch: usize,
    max_in_flight: usize,
    sender: OnceLock<mpsc::Sender<Pending<T>>>,
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Coalescer<T> {
    /// At most `max_batch` jobs per round trip and `max_in_flight` round trips at once (both at
    /// least 1). While every round trip is busy, new jobs wait and go out together in the next.
    pub fn new(queue: Queue<T>, max_batch: usize, max_in_flight: usize) -> Coalescer<T> {
        Coalescer {
            queue,
            max_batch: max_batch.max(1),
            max_in_flight: max_in_flight.max(1),
            sender: OnceLock::new(),
        }
    }

    /// Enqueues `payload` to run now (in the partition of `partition_key`) and returns its id
    /// once Redis has stored it. Errors are those of [`Queue::enqueue_batch_keyed`], one copy
    /// per caller of the batch; a stopped dispatcher reads as [`QueueError::Unavailable`].
    pub async fn enqueue(
        &self,
        payload: T,
        partition_key: Option<String>,
    ) -> Result<JobId, QueueError> {
        self.enqueue_with_id(payload, partition_key, None).await
    }

    /// Like [`Coalescer::enqueue`], with a caller-supplied job id
    /// ([`EnqueueOptions::job_id`](crate::EnqueueOptions::job_id)): enqueued at most once per
    /// dedup window, so a retry after any error — [`QueueError::OutcomeUnknown`] included — is
    /// safe.
    pub async fn enqueue_with_id(
        &self,
        payload: T,
        partition_key: Option<String>,
        job_id: Option<String>,
    ) -> Result<JobId, QueueError> {
        self.enqueue_traced(payload, partition_key, job_id, None)
            .await
    }

    /// Like [`Coalescer::enqueue_with_id`], the job carrying the caller's trace context (the W3C
    /// `traceparent` of the enqueuing span, see [`EnqueueOptions::trace`](crate::EnqueueOptions::trace)).
    /// Each job of a coalesced round trip keeps its own.
    pub async fn enqueue_traced(
        &self,
        payload: T,
        partition_key: Option<String>,
        job_id: Option<String>,
        trace: Option<String>,
    ) -> Result<JobId, QueueError> {
        let (answer, answered) = oneshot::channel();
        let stopped = || QueueError::Unavailable("enqueue coalescer stopped".into());
        self.sender()
            .send((partition_key, job_id, payload, trace, answer))
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    fn sender(&self) -> &mpsc::Sender<Pending<T>> {
        self.sender.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.max_batch * self.max_in_flight * 2);
            let permits = Arc::new(Semaphore::new(self.max_in_flight));
            tokio::spawn(dispatch(self.queue.clone(), rx, self.max_batch, permits));
            tx
        })
    }
}

/// Waits for a free round trip, then takes what is queued (at least one, at most `max_batch`).
async fn dispatch<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
    queue: Queue<T>,
    mut rx: mpsc::Receiver<Pending<T>>,
    max_batch: usize,
    permits: Arc<Semaphore>,
) {
    let mut waiting = Vec::with_capacity(max_batch);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut waiting, max_batch).await == 0 {
            return; // every sender is gone
        }
        let batch = std::mem::replace(&mut waiting, Vec::with_capacity(max_batch));
        tokio::spawn(flush(queue.clone(), batch, permit));
    }
}

/// One pipelined round trip for `batch`; answers every caller still waiting.
async fn flush<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
    queue: Queue<T>,
    batch: Vec<Pending<T>>,
    _permit: OwnedSemaphorePermit,
) {
    let mut items = Vec::with_capacity(batch.len());
    let mut answers = Vec::with_capacity(batch.len());
    for (key, id, payload, trace, answer) in batch {
        // A caller that stopped waiting (timed out, disconnected) is not enqueued behind its back.
        if !answer.is_closed() {
            items.push((key, id, payload, trace));
            answers.push(answer);
        }
    }
    if items.is_empty() {
        return;
    }
    metrics::histogram!("conveyor_enqueue_coalesced_batch_size", "queue" => queue.config().name.clone())
        .record(items.len() as f64);
    match queue.enqueue_batch_each_traced(&items).await {
        Ok(ids) => {
            for (answer, id) in answers.into_iter().zip(ids) {
                let _ = answer.send(Ok(id));
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(copy_error(&e)));
            }
        }
    }
}

/// The same error for another caller of the batch, keeping its classification.
fn copy_error(e: &QueueError) -> QueueError {
    match e {
        QueueError::Unavailable(why) => QueueError::Unavailable(why.clone()),
        QueueError::Redis(r) => QueueError::Redis(r.clone()),
        QueueError::OutcomeUnknown(why) => QueueError::OutcomeUnknown(why.clone()),
        QueueError::NotReplicated { wanted, acked } => QueueError::NotReplicated {
            wanted: *wanted,
            acked: *acked,
        },
        // Payloads are encoded one by one before anything is sent, so the whole batch failed
        // without touching Redis; the text is kept, as a Redis-side failure (not "unavailable").
        other => QueueError::Redis(redis::RedisError::from((
            redis::ErrorKind::Client,
            "batch enqueue failed",
            other.to_string(),
        ))),
    }
}
