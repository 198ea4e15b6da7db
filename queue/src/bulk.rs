//! Batch enqueues of [`Queue`]: many jobs in one pipelined round trip, all-or-nothing per
//! partition (`push_batch`), with or without caller-supplied ids (deduplicated) and trace
//! contexts. Single enqueues and the key schema stay in `queue`.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::dedup::{enqueue_many_cmd, MAX_RUN};
use crate::error::QueueError;
use crate::fanout::Fanout;
use crate::job::{Entry, JobId};
use crate::keys::Keys;
use crate::queue::Queue;
use crate::scripts;

/// One job of a batch with its own trace context: partition key, job id, payload, W3C
/// `traceparent`.
pub(crate) type TracedItem<T> = (Option<String>, Option<String>, T, Option<String>);

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Queue<T> {
    /// Many jobs in ONE pipelined round trip, all-or-nothing per partition (see
    /// [`Queue::enqueue_batch_keyed`]); with one partition (the default) the whole call is.
    pub async fn enqueue_batch(&self, payloads: &[T]) -> Result<Vec<JobId>, QueueError> {
        let mut entries = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let p = self.partition_for(None);
            entries.push((p, Entry::new(serde_json::to_string(payload)?, false), false));
        }
        self.push_batch(entries).await
    }

    /// Like [`Queue::enqueue_batch`], each job with its own partition key. Atomic per
    /// partition: the jobs of one partition are enqueued together or not at all (one
    /// `MULTI`/`EXEC` each, all in one round trip). A call whose jobs span several partitions can
    /// fail after some partitions' jobs were stored; a retry may then enqueue those again.
    pub async fn enqueue_batch_keyed(
        &self,
        items: &[(Option<String>, T)],
    ) -> Result<Vec<JobId>, QueueError> {
        let mut entries = Vec::with_capacity(items.len());
        for (key, payload) in items {
            let p = self.partition_for(key.as_deref());
            entries.push((p, Entry::new(serde_json::to_string(payload)?, false), false));
        }
        self.push_batch(entries).await
    }

    /// Like [`Queue::enqueue_batch_keyed`], each job with its partition key and its optional
    /// caller-supplied id ([`EnqueueOptions::job_id`]): a job whose id was enqueued within the
    /// dedup window is not added again (its id is returned all the same), so the whole call
    /// may be retried after any error.
    pub async fn enqueue_batch_with_ids(
        &self,
        items: &[(Option<String>, Option<String>, T)],
    ) -> Result<Vec<JobId>, QueueError> {
        self.enqueue_batch_traced(items, None).await
    }

    /// [`Queue::enqueue_batch_with_ids`] with every job carrying one trace context (the W3C
    /// `traceparent` of the span that enqueues them, e.g. a batch request's): see
    /// [`EnqueueOptions::trace`].
    pub async fn enqueue_batch_traced(
        &self,
        items: &[(Option<String>, Option<String>, T)],
        trace: Option<&str>,
    ) -> Result<Vec<JobId>, QueueError> {
        let mut entries = Vec::with_capacity(items.len());
        for (key, id, payload) in items {
            entries.push(self.batch_entry(key, id, payload, trace)?);
        }
        self.push_batch(entries).await
    }

    /// Each job with its own trace context (the coalescer's batches mix requests).
    pub(crate) async fn enqueue_batch_each_traced(
        &self,
        items: &[TracedItem<T>],
    ) -> Result<Vec<JobId>, QueueError> {
        let mut entries = Vec::with_capacity(items.len());
        for (key, id, payload, trace) in items {
            entries.push(self.batch_entry(key, id, payload, trace.as_deref())?);
        }
        self.push_batch(entries).await
    }

    /// One entry of a batch: its partition (the key's, else the id's, else round-robin), the
    /// entry, and whether it is deduplicated by its id.
    fn batch_entry(
        &self,
        key: &Option<String>,
        id: &Option<String>,
        payload: &T,
        trace: Option<&str>,
    ) -> Result<(u16, Entry, bool), QueueError> {
        let p = match (key, id) {
            (None, Some(id)) => self.inner.keys.partition_of(id),
            _ => self.partition_for(key.as_deref()),
        };
        let entry =
            Entry::with_id(serde_json::to_string(payload)?, false, id.clone()).traced(trace);
        Ok((p, entry, id.is_some()))
    }
}

impl<T> Queue<T> {
    /// XADDs every entry in ONE round trip, all-or-nothing per partition: the entries of each
    /// partition go in one `MULTI … EXEC` block (one partition is one hash slot, so the block is
    /// valid on a Redis Cluster too). Redis runs a transaction only once its `EXEC` arrived, so
    /// a connection lost mid-call leaves no partial partition; with one partition (the default)
    /// or one partition key per call, the whole call is all-or-nothing. On an error the caller
    /// cannot know which partitions' blocks ran before it, but each ran whole or not at all.
    /// Entries with a caller-supplied id (`dedup`) go through `enqueue_many.lua` inside the block
    /// (one call per run of up to [`MAX_RUN`] of them, in order with the plain XADDs), loaded by
    /// a `SCRIPT LOAD` at the head of the same pipeline (so a restarted Redis never answers
    /// NOSCRIPT there). With a replication wait each pipeline ends with `WAIT`; too few
    /// replicas is [`QueueError::NotReplicated`] (the jobs were stored on the master).
    pub(crate) async fn push_batch(
        &self,
        entries: Vec<(u16, Entry, bool)>,
    ) -> Result<Vec<JobId>, QueueError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| entries[i].0);
        // One pipeline on one node; one per partition (its slot) on a cluster, each loading
        // the script at its head when any entry needs it.
        let cluster = self.pool().is_cluster();
        let mut pipes = Fanout::new(cluster, self.keys()).preloaded();
        let any_dedup = entries.iter().any(|e| e.2);
        let load = || scripts::load_cmd(scripts::ENQUEUE_MANY_SOURCE);
        if any_dedup && !cluster {
            pipes.other().add_command(load()).ignore();
        }
        let dedup_ms = self.dedup_ms();
        let mut blocks = 0usize;
        let mut open: Option<u16> = None;
        // The deduplicated entries of the open partition not yet in a command, in order.
        let mut run: Vec<&Entry> = Vec::new();
        for i in order {
            let (p, entry, dedup) = &entries[i];
            if open != Some(*p) {
                if let Some(prev) = open {
                    end_run(&mut pipes, self.keys(), prev, &mut run, dedup_ms);
                    pipes.commit(prev);
                }
                if any_dedup && cluster {
                    // Inside the partition's transaction: queued first, run first.
                    pipes.partition(*p).add_command(load()).ignore();
                }
                pipes.begin(*p);
                open = Some(*p);
                blocks += 1;
            }
            if *dedup {
                run.push(entry);
                if run.len() == MAX_RUN {
                    end_run(&mut pipes, self.keys(), *p, &mut run, dedup_ms);
                }
            } else {
                end_run(&mut pipes, self.keys(), *p, &mut run, dedup_ms);
                pipes
                    .partition(*p)
                    .cmd("XADD")
                    .arg(self.keys().stream_ref(*p))
                    .arg("*")
                    .arg(entry)
                    .ignore();
            }
        }
        if let Some(last) = open {
            end_run(&mut pipes, self.keys(), last, &mut run, dedup_ms);
            pipes.commit(last);
        }
        // The pipeline holds its own copy of every entry: keep only the ids through the round
        // trip (a batch of large jobs would otherwise be held twice while Redis answers).
        let ids: Vec<JobId> = entries.into_iter().map(|(_, e, _)| JobId(e.id)).collect();
        // With a replication wait, each partition's writes are followed by a WAIT on its master.
        let replication = self.config().replication();
        pipes.wait_for(replication);
        let mut conn = self.conn().await?;
        // On one node, one reply per EXEC: the array of new entry ids, or the error of a failed
        // command. On a cluster, no reply (every command is ignored) and an error inside a
        // partition's transaction fails the query; one a slot move refused is sent again there
        // for a while (`Fanout`), then fails as a topology error (unavailable: retry later).
        let (execs, acked): (Vec<redis::Value>, _) = pipes
            .query_acked(&mut conn)
            .await
            .map_err(QueueError::after_send)?;
        let failed = !cluster
            && (execs.len() != blocks
                || execs.iter().any(|v| match v {
                    redis::Value::Array(items) => items
                        .iter()
                        .any(|i| matches!(i, redis::Value::ServerError(_))),
                    _ => true,
                }));
        if failed {
            // A transaction the node refused (READONLY, LOADING… inside it): nothing of it
            // ran; unavailable, retry later.
            let topology = execs.iter().any(|v| match v {
                redis::Value::ServerError(e) => crate::error::topology_code(e.code()),
                redis::Value::Array(items) => items.iter().any(|i| {
                    matches!(i, redis::Value::ServerError(e) if crate::error::topology_code(e.code()))
                }),
                _ => false,
            });
            if topology {
                return Err(QueueError::Unavailable(
                    "batch enqueue: a transaction refused by a node mid-failover or mid-migration"
                        .into(),
                ));
            }
            return Err(QueueError::Redis(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "batch enqueue: a transaction did not run every XADD",
            ))));
        }
        metrics::counter!("conveyor_jobs_enqueued_total", "queue" => self.name().to_string())
            .increment(ids.len() as u64);
        if let (Some(r), Some(acked)) = (replication, acked) {
            r.check(acked)?;
        }
        Ok(ids)
    }
}

/// Adds the pending run of deduplicated entries of partition `p` (if any) to its block as one
/// `enqueue_many.lua` call, and empties it.
fn end_run(pipes: &mut Fanout, keys: &Keys, p: u16, run: &mut Vec<&Entry>, dedup_ms: u64) {
    if !run.is_empty() {
        pipes
            .partition(p)
            .add_command(enqueue_many_cmd(keys, p, run, dedup_ms))
            .ignore();
        run.clear();
    }
}
