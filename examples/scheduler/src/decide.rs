//! The scheduler: a [`Recurring`] tick per period (one per occurrence across all replicas) and a
//! worker on the tick queue that decides each occurrence — both services asked in parallel,
//! each answer awaited at most the answer timeout, the decision claimed once per occurrence,
//! recorded, and its follow-up enqueued as a delayed job on the API service's queue.

use std::time::{Duration, UNIX_EPOCH};

use queue::{Handler, Job, Outcome, Queue, QueueError, Recurring, Worker};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{worker_config, SchedulerArgs};
use crate::events::EventLog;
use crate::model::{ApiAnswer, ApiRequest, DataAnswer, DataRequest, Decision, Event, Tick};
use crate::services::now_ms;

/// Runs one scheduler replica until `shutdown`.
pub async fn run(
    args: SchedulerArgs,
    ticks: Queue<Tick>,
    data: Queue<DataRequest>,
    api: Queue<ApiRequest>,
    log: EventLog,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let period_ms = args.period.as_millis().max(1) as u64;
    let recurring = Recurring::new(ticks.clone(), "decide", args.period, move |n| Tick {
        occurrence: n,
        due_ms: n * period_ms,
    });
    let config = worker_config(2);
    let decider = Decider {
        data,
        api,
        log,
        args: args.clone(),
        replica: config.consumer.clone(),
    };
    tracing::info!(
        period = ?args.period,
        follow_up = ?args.follow_up,
        answer_timeout = ?args.answer_timeout,
        replica = %decider.replica,
        "scheduler ready"
    );
    let worker = Worker::new(ticks, decider, config);
    let (r, w) = tokio::join!(recurring.run(shutdown.clone()), worker.run(shutdown));
    r?;
    w?;
    Ok(())
}

struct Decider {
    data: Queue<DataRequest>,
    api: Queue<ApiRequest>,
    log: EventLog,
    args: SchedulerArgs,
    replica: String,
}

impl Handler<Tick> for Decider {
    async fn handle(&self, jobs: Vec<Job<Tick>>) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            out.push(self.decide(job.payload).await);
        }
        out
    }
}

impl Decider {
    async fn decide(&self, tick: Tick) -> Outcome {
        let period_ms = self.args.period.as_millis() as u64;
        if now_ms() > tick.due_ms + period_ms {
            tracing::warn!(
                occurrence = tick.occurrence,
                "skipping an occurrence older than a period"
            );
            return Outcome::Done(serde_json::Value::Null);
        }
        let timeout = self.args.answer_timeout;
        let deadline_ms = now_ms() + timeout.as_millis() as u64;
        let n = tick.occurrence;
        let ask_data = DataRequest {
            occurrence: n,
            deadline_ms,
        };
        let ask_api = ApiRequest::Parameters {
            occurrence: n,
            deadline_ms,
        };
        // The fan-out: both questions leave together and are awaited together.
        let (data, api) = tokio::join!(
            self.data.enqueue_and_wait::<DataAnswer>(&ask_data, timeout),
            self.api.enqueue_and_wait::<ApiAnswer>(&ask_api, timeout),
        );
        let data = answer(data, "data-service", n);
        let api = answer(api, "api-service", n);
        let follow_up_ms = self.args.follow_up.as_millis() as u64;
        let decision = Decision::combine(
            &tick,
            data.as_ref(),
            api.as_ref(),
            now_ms(),
            follow_up_ms,
            self.replica.clone(),
        );
        let ttl_ms = 3 * period_ms + follow_up_ms + 60_000;
        match self.log.claim_decision(n, ttl_ms).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(occurrence = n, "occurrence already decided elsewhere");
                return Outcome::Done(serde_json::Value::Null);
            }
            Err(e) => {
                return Outcome::Retry {
                    error: format!("claiming the decision: {e}"),
                    after: Some(Duration::from_millis(50)),
                }
            }
        }
        self.log.record(&Event::Decision(decision.clone())).await;
        let at = UNIX_EPOCH + Duration::from_millis(decision.follow_up_at_ms);
        let follow_up = ApiRequest::FollowUp {
            decision: decision.clone(),
        };
        if let Err(e) = self.api.enqueue_at(&follow_up, at).await {
            tracing::error!(occurrence = n, error = %e, "could not schedule the follow-up");
        }
        Outcome::Done(json!(decision))
    }
}

/// The answer, or `None` (logged) when the service did not answer in time or failed.
fn answer<R>(result: Result<R, QueueError>, service: &str, occurrence: u64) -> Option<R> {
    match result {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(occurrence, service, error = %e, "no answer; deciding without it");
            None
        }
    }
}
