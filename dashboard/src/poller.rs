//! The one background task per process that reads the figures: every poll interval, ONE
//! Elasticsearch search plus the cheap queue counters, merged into a [`Snapshot`] and published
//! on a `watch` channel. Viewers only read the channel, so load on Elasticsearch does not grow
//! with the number of open pages. When a source fails, its last good figures are kept and the
//! snapshot is marked stale. This task serves no HTTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::es::StatsReader;
use crate::queues::QueueReader;
use crate::snapshot::{EsFigures, Snapshot, SourceStatus};
use queue::QueueStats;

/// A published snapshot with its JSON text, serialized once per poll for every viewer, and
/// what only `/metrics` shows.
#[derive(Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    pub json: String,
    /// Age (ms) of the oldest job waiting or running in `(messages, webhooks)`, as last read.
    pub oldest_ms: (Option<u64>, Option<u64>),
}

impl Published {
    pub fn new(snapshot: Snapshot) -> Arc<Published> {
        Self::with_ages(snapshot, (None, None))
    }

    pub fn with_ages(snapshot: Snapshot, oldest_ms: (Option<u64>, Option<u64>)) -> Arc<Published> {
        let json = serde_json::to_string(&snapshot).unwrap_or_else(|e| {
            tracing::error!(error = %e, "snapshot did not serialize");
            "{}".to_string()
        });
        Arc::new(Published {
            snapshot,
            json,
            oldest_ms,
        })
    }
}

/// Counters the poller keeps for `/metrics` (per dashboard instance).
#[derive(Debug, Default)]
pub struct PollCounters {
    /// Elasticsearch round trips made (successful or not).
    pub es_queries: AtomicU64,
    pub es_errors: AtomicU64,
    pub redis_errors: AtomicU64,
}

/// Everything the poll loop needs.
pub struct Poller {
    pub es: StatsReader,
    pub queues: QueueReader,
    pub interval: Duration,
    pub counters: Arc<PollCounters>,
    pub tx: watch::Sender<Arc<Published>>,
}

impl Poller {
    /// Polls until `shutdown`; the first poll starts at once.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut state = State::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let snapshot = tokio::select! {
                _ = shutdown.cancelled() => break,
                s = self.poll_once(&mut state) => s,
            };
            self.tx
                .send_replace(Published::with_ages(snapshot, state.oldest_ms));
        }
        tracing::info!("dashboard poller stopped");
    }

    async fn poll_once(&self, state: &mut State) -> Snapshot {
        let now = Utc::now();
        self.counters.es_queries.fetch_add(1, Ordering::Relaxed);
        let (es, queues, ages) = tokio::join!(
            self.es.read(now.timestamp_millis()),
            self.queues.read(),
            self.queues.oldest_ages()
        );
        // A failed read keeps the last ages; the counters' read reports Redis's health.
        if let Ok(ages) = ages {
            state.oldest_ms = ages;
        }
        let es = es.map(|figures| state.es = figures);
        note_failure(
            &es,
            &self.counters.es_errors,
            &state.es_status,
            "elasticsearch stats query",
        );
        state.es_status.record(es, now);
        let queues = queues.map(|figures| state.queues = figures);
        note_failure(
            &queues,
            &self.counters.redis_errors,
            &state.redis_status,
            "queue stats",
        );
        state.redis_status.record(queues, now);
        Snapshot::assemble(
            now,
            &state.es,
            state.es_status.clone(),
            &state.queues,
            state.redis_status.clone(),
        )
    }
}

/// Counts a failed round trip, and logs it when the source was up (or starting) before, so an
/// outage is logged once, not once a second.
fn note_failure<E: std::fmt::Display>(
    result: &Result<(), E>,
    errors: &AtomicU64,
    status: &SourceStatus,
    what: &str,
) {
    if let Err(e) = result {
        errors.fetch_add(1, Ordering::Relaxed);
        if status.is_up() || status.status == "starting" {
            tracing::warn!(error = %e, "{what} failed; keeping last values");
        }
    }
}

/// Last good figures of each source and their health.
struct State {
    es: EsFigures,
    es_status: SourceStatus,
    queues: (QueueStats, QueueStats),
    oldest_ms: (Option<u64>, Option<u64>),
    redis_status: SourceStatus,
}

impl Default for State {
    fn default() -> Self {
        let starting = Snapshot::initial(Utc::now());
        State {
            es: EsFigures::default(),
            es_status: starting.elasticsearch,
            queues: Default::default(),
            oldest_ms: (None, None),
            redis_status: starting.redis,
        }
    }
}
