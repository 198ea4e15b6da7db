//! The figures the dashboard shows, as one serializable snapshot: what `/api/stats` answers and
//! what every `/events` message carries. Plain data and the merge rules for keeping the last good
//! values when a source is down; no I/O here.

use chrono::{DateTime, Utc};
use pipeline::store::MessageStats;
use serde::{Deserialize, Serialize};

/// Number of per-second buckets in the throughput chart.
pub const SECONDS_IN_CHART: usize = 60;

/// One queue's counters, as `queue::QueueStats` reports them (same JSON field names).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueFigures {
    pub backlog: u64,
    pub pending: u64,
    pub delayed: u64,
    pub dead: u64,
    pub workers: u64,
}

/// Figures read from Elasticsearch in one round trip.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EsFigures {
    /// Highest `number` (exact: read from a sort), the 10-s transit average and count, total.
    #[serde(flatten)]
    pub messages: MessageStats,
    /// Messages received in each of the last 60 whole seconds, oldest first.
    pub messages_per_second_60s: Vec<u64>,
    /// Resources delivered to the webhook (documents in the resources index).
    pub resources_completed: u64,
    pub webhook_latency_ms: Latency,
}

/// Webhook delivery latency percentiles over the last 60 s; `None` when nothing was delivered.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// Health of one data source as seen by the poller.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceStatus {
    /// `"up"`, `"down"` or `"starting"` (no answer yet).
    pub status: String,
    /// Why the last round trip failed (only while down).
    pub error: Option<String>,
    /// When the source last answered.
    pub last_ok_at: Option<DateTime<Utc>>,
}

impl SourceStatus {
    fn starting() -> Self {
        SourceStatus {
            status: "starting".into(),
            error: None,
            last_ok_at: None,
        }
    }

    pub fn is_up(&self) -> bool {
        self.status == "up"
    }

    /// Records one round trip's outcome.
    pub fn record<E: std::fmt::Display>(&mut self, ok: Result<(), E>, now: DateTime<Utc>) {
        match ok {
            Ok(()) => {
                self.status = "up".into();
                self.error = None;
                self.last_ok_at = Some(now);
            }
            Err(e) => {
                self.status = "down".into();
                self.error = Some(e.to_string());
            }
        }
    }
}

/// Everything the page shows. A superset of the consumer's `GET /stats`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// The same four figures as the consumer's `GET /stats`, under the same names.
    #[serde(flatten)]
    pub messages: MessageStats,
    /// The "messages" queue (same meaning as the consumer's `/stats`).
    pub queue: QueueFigures,
    /// The "webhooks" delivery queue.
    pub webhooks_queue: QueueFigures,
    pub messages_per_second_60s: Vec<u64>,
    pub resources_completed: u64,
    pub webhook_latency_ms: Latency,
    /// When this snapshot was published (once per poll, also while sources are down).
    pub updated_at: DateTime<Utc>,
    /// True when some figures are not from this poll (a source is down or not yet answered).
    pub stale: bool,
    pub elasticsearch: SourceStatus,
    pub redis: SourceStatus,
}

impl Snapshot {
    /// The snapshot before the first poll: no figures, every source "starting", stale.
    pub fn initial(now: DateTime<Utc>) -> Snapshot {
        Snapshot::from_parts(
            &EsFigures::default(),
            &QueueFigures::default(),
            &QueueFigures::default(),
        )
        .with_status(now, SourceStatus::starting(), SourceStatus::starting())
    }

    fn from_parts(es: &EsFigures, queue: &QueueFigures, webhooks: &QueueFigures) -> Snapshot {
        let mut per_second = es.messages_per_second_60s.clone();
        per_second.resize(SECONDS_IN_CHART, 0);
        Snapshot {
            messages: es.messages.clone(),
            queue: queue.clone(),
            webhooks_queue: webhooks.clone(),
            messages_per_second_60s: per_second,
            resources_completed: es.resources_completed,
            webhook_latency_ms: es.webhook_latency_ms.clone(),
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            stale: true,
            elasticsearch: SourceStatus::starting(),
            redis: SourceStatus::starting(),
        }
    }

    fn with_status(
        mut self,
        now: DateTime<Utc>,
        es: SourceStatus,
        redis: SourceStatus,
    ) -> Snapshot {
        self.stale = !(es.is_up() && redis.is_up());
        self.updated_at = now;
        self.elasticsearch = es;
        self.redis = redis;
        self
    }

    /// Builds the next snapshot from the last good figures of each source and their status.
    pub fn assemble(
        now: DateTime<Utc>,
        es: &EsFigures,
        es_status: SourceStatus,
        queues: &(QueueFigures, QueueFigures),
        redis_status: SourceStatus,
    ) -> Snapshot {
        Snapshot::from_parts(es, &queues.0, &queues.1).with_status(now, es_status, redis_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_snapshot_is_stale_with_empty_windows_and_sixty_zero_buckets() {
        let s = Snapshot::initial(Utc::now());
        assert!(s.stale);
        assert_eq!(s.messages.avg_transit_ms_10s, None);
        assert_eq!(s.messages_per_second_60s, vec![0; SECONDS_IN_CHART]);
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["avg_transit_ms_10s"].is_null());
        assert_eq!(json["elasticsearch"]["status"], "starting");
        assert_eq!(json["queue"]["backlog"], 0);
    }

    #[test]
    fn a_down_source_keeps_figures_and_marks_the_snapshot_stale() {
        let figures = EsFigures {
            messages: MessageStats {
                max_number: Some(41),
                avg_transit_ms_10s: Some(2.5),
                count_10s: 10,
                total: 42,
            },
            ..EsFigures::default()
        };
        let mut es = SourceStatus::default();
        es.record(Ok::<(), String>(()), Utc::now());
        es.record(Err("connection refused"), Utc::now());
        let mut redis = SourceStatus::default();
        redis.record(Ok::<(), String>(()), Utc::now());
        let s = Snapshot::assemble(Utc::now(), &figures, es, &Default::default(), redis);
        assert!(s.stale);
        assert_eq!(s.messages.max_number, Some(41));
        assert_eq!(s.elasticsearch.status, "down");
        assert!(s.elasticsearch.last_ok_at.is_some());
        assert_eq!(s.elasticsearch.error.as_deref(), Some("connection refused"));
    }
}
