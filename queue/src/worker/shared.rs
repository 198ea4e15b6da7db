//! What the worker's parts share, so none of them imports another's internals: the [`Handler`]
//! contract, the [`Shared`] state of one running worker (its queue, handler, settings, in-flight
//! set, batch slots, byte budget and hard stop) and [`Delivered`], an entry as read or reclaimed. No I/O here.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::budget::{Budget, Reservation};
use crate::config::WorkerConfig;
use crate::job::{Job, Outcome};
use crate::queue::Queue;

/// A batch handler: gets up to `batch_size` jobs, returns exactly one [`Outcome`] per job, in
/// the same order. A missing outcome counts as a retry.
pub trait Handler<T>: Send + Sync + 'static {
    fn handle(&self, jobs: Vec<Job<T>>) -> impl Future<Output = Vec<Outcome>> + Send;
}

/// One entry as read from a partition stream (or reclaimed from a dead worker), not yet decoded.
pub(crate) struct Delivered {
    pub partition: u16,
    pub entry_id: String,
    pub map: HashMap<String, redis::Value>,
    /// How often the group delivered the entry: 1 for a first delivery (`XREADGROUP >`), what
    /// `reclaim.lua` reports for a reclaimed one. It is the entry's lease token: settling
    /// scripts act only if the entry is still this consumer's at this count. The batch
    /// dead-letters an entry delivered too often (poison).
    pub deliveries: u64,
}

impl Delivered {
    /// About the bytes it holds: its field names and values.
    pub fn bytes(&self) -> usize {
        let value = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => b.len(),
            redis::Value::SimpleString(s) => s.len(),
            _ => 8,
        };
        self.entry_id.len()
            + self
                .map
                .iter()
                .map(|(k, v)| k.len() + value(v))
                .sum::<usize>()
    }
}

/// The (partition, entry id) pairs of `entries`, as the in-flight set keeps them.
pub(crate) fn in_flight(entries: &[Delivered]) -> Vec<(u16, String)> {
    entries
        .iter()
        .map(|d| (d.partition, d.entry_id.clone()))
        .collect()
}

/// What a running batch holds: its batch slot and its part of the byte budget.
pub(crate) struct Held {
    _slot: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

/// State shared by the read loop, the batch tasks and the background tasks.
pub(crate) struct Shared<T, H> {
    pub queue: Queue<T>,
    pub handler: H,
    pub config: WorkerConfig,
    /// Entry ids being handled right now, per partition, with when their lease last began (read,
    /// reclaim or heartbeat extension): the heartbeat extends only those held a while.
    inflight: Mutex<HashMap<u16, HashMap<String, Instant>>>,
    /// One per batch in flight (`concurrency` in all).
    pub permits: Arc<Semaphore>,
    /// Bytes of entries in flight, over all batches.
    pub budget: Budget,
    pub tracker: TaskTracker,
    /// Cancelled when the shutdown deadline passes: batch tasks stop where they are.
    pub hard_stop: CancellationToken,
    /// Where the next read starts among the partitions (reads rotate over them).
    read_rotation: AtomicUsize,
}

impl<T, H> Shared<T, H> {
    /// `config` as given: the worker normalizes it first.
    pub fn new(queue: Queue<T>, handler: H, config: WorkerConfig) -> Self {
        let permits = Arc::new(Semaphore::new(config.concurrency));
        let budget = Budget::new(config.max_inflight_bytes);
        Shared {
            queue,
            handler,
            config,
            inflight: Mutex::new(HashMap::new()),
            permits,
            budget,
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            read_rotation: AtomicUsize::new(0),
        }
    }

    /// The partition the next read starts with, rotating over `partitions`.
    pub fn next_read_partition(&self, partitions: usize) -> usize {
        self.read_rotation.fetch_add(1, Ordering::Relaxed) % partitions.max(1)
    }

    /// What a batch of `entries` holds: its batch `slot`, and its part of the byte budget fitted
    /// from `reservation` (see [`Budget::fit`]).
    pub async fn hold(
        &self,
        slot: OwnedSemaphorePermit,
        reservation: Reservation,
        entries: &[Delivered],
    ) -> Held {
        let bytes = entries.iter().map(Delivered::bytes).sum();
        Held {
            _slot: slot,
            _bytes: self.budget.fit(reservation, bytes, entries.len()).await,
        }
    }

    /// Adds (or removes) entries to the in-flight set; an added entry's lease began now.
    pub fn track(&self, ids: &[(u16, String)], add: bool) {
        let now = Instant::now();
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        for (p, id) in ids {
            let held = map.entry(*p).or_default();
            if add {
                held.insert(id.clone(), now);
            } else {
                held.remove(id);
            }
        }
    }

    pub fn is_inflight(&self, p: u16, id: &str) -> bool {
        let map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&p).is_some_and(|held| held.contains_key(id))
    }

    /// In-flight entry ids per partition whose lease began at least `age` ago, for the
    /// heartbeat's lease extension. Entries read moments ago have a fresh idle time in Redis
    /// already: extending them too made every beat walk and re-claim the whole read-ahead
    /// (thousands of ids per worker, each propagated to the AOF) and stalled Redis for tens of
    /// milliseconds per beat under load.
    pub fn inflight_older_than(&self, age: Duration) -> Vec<(u16, Vec<String>)> {
        let now = Instant::now();
        let map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(p, held)| {
                let ids = held
                    .iter()
                    .filter(|(_, since)| now.duration_since(**since) >= age)
                    .map(|(id, _)| id.clone())
                    .collect::<Vec<_>>();
                (*p, ids)
            })
            .filter(|(_, ids)| !ids.is_empty())
            .collect()
    }

    /// Records that the leases of `ids` (partition `p`) were extended at `at` (still in flight
    /// ones only: a batch may have settled them meanwhile).
    pub fn renewed(&self, p: u16, ids: &[String], at: Instant) {
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = map.get_mut(&p) {
            for id in ids {
                if let Some(since) = held.get_mut(id) {
                    *since = at;
                }
            }
        }
    }
}
