//! What the worker's parts share, so none of them imports another's internals: the [`Handler`]
//! contract, the [`Shared`] state of one running worker (its queue, handler, settings, in-flight
//! set, batch slots and hard stop) and [`Delivered`], an entry as read or reclaimed. No I/O here.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// State shared by the read loop, the batch tasks and the background tasks.
pub(crate) struct Shared<T, H> {
    pub queue: Queue<T>,
    pub handler: H,
    pub config: WorkerConfig,
    /// Entry ids being handled right now, per partition (their leases are extended).
    inflight: Mutex<HashMap<u16, HashSet<String>>>,
    /// One per batch in flight (`concurrency` in all).
    pub permits: Arc<Semaphore>,
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
        Shared {
            queue,
            handler,
            config,
            inflight: Mutex::new(HashMap::new()),
            permits,
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            read_rotation: AtomicUsize::new(0),
        }
    }

    /// The partition the next read starts with, rotating over `partitions`.
    pub fn next_read_partition(&self, partitions: usize) -> usize {
        self.read_rotation.fetch_add(1, Ordering::Relaxed) % partitions.max(1)
    }

    /// Adds (or removes) entries to the in-flight set.
    pub fn track(&self, ids: &[(u16, String)], add: bool) {
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        for (p, id) in ids {
            let set = map.entry(*p).or_default();
            if add {
                set.insert(id.clone());
            } else {
                set.remove(id);
            }
        }
    }

    pub fn is_inflight(&self, p: u16, id: &str) -> bool {
        let map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&p).is_some_and(|s| s.contains(id))
    }

    /// In-flight entry ids per partition, for the heartbeat's lease extension.
    pub fn inflight_snapshot(&self) -> Vec<(u16, Vec<String>)> {
        let map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(p, s)| (*p, s.iter().cloned().collect()))
            .collect()
    }
}
