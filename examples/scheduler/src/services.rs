//! The two services the scheduler asks: workers on their own queues. The data service answers
//! with the latest value of a series, the API service with the current parameters; the API
//! service also receives the delayed follow-ups. Each records what it received in the event log.
//! A question found past its deadline is dropped (its scheduler stopped waiting).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use queue::{Handler, Job, Outcome, Queue, Worker};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{worker_config, ServiceArgs};
use crate::events::EventLog;
use crate::model::{ApiAnswer, ApiRequest, DataAnswer, DataRequest, Event};

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the data service until `shutdown`.
pub async fn run_data(
    queue: Queue<DataRequest>,
    args: ServiceArgs,
    log: EventLog,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = DataService {
        log,
        delay: args.delay,
    };
    tracing::info!("data service ready");
    Worker::new(queue, service, worker_config(4))
        .run(shutdown)
        .await?;
    Ok(())
}

/// Runs the API service until `shutdown`.
pub async fn run_api(
    queue: Queue<ApiRequest>,
    args: ServiceArgs,
    log: EventLog,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = ApiService {
        log,
        delay: args.delay,
    };
    tracing::info!("api service ready");
    Worker::new(queue, service, worker_config(4))
        .run(shutdown)
        .await?;
    Ok(())
}

/// Records `event` without delaying the answer.
fn report(log: &EventLog, event: Event) {
    let log = log.clone();
    tokio::spawn(async move { log.record(&event).await });
}

struct DataService {
    log: EventLog,
    delay: Duration,
}

impl Handler<DataRequest> for DataService {
    async fn handle(&self, jobs: Vec<Job<DataRequest>>) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let received_at_ms = now_ms();
            let DataRequest {
                occurrence,
                deadline_ms,
            } = job.payload;
            if received_at_ms > deadline_ms {
                tracing::info!(occurrence, "dropping a question past its deadline");
                out.push(Outcome::Done(serde_json::Value::Null));
                continue;
            }
            report(
                &self.log,
                Event::Request {
                    service: "data-service".into(),
                    occurrence,
                    received_at_ms,
                },
            );
            tokio::time::sleep(self.delay).await;
            // A made-up series: a slow wave around 100.
            let latest = 100.0 + 5.0 * (occurrence as f64 / 3.0).sin();
            let answer = DataAnswer {
                latest,
                received_at_ms,
            };
            out.push(Outcome::Done(json!(answer)));
        }
        out
    }
}

struct ApiService {
    log: EventLog,
    delay: Duration,
}

impl Handler<ApiRequest> for ApiService {
    async fn handle(&self, jobs: Vec<Job<ApiRequest>>) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let received_at_ms = now_ms();
            match job.payload {
                ApiRequest::Parameters {
                    occurrence,
                    deadline_ms,
                } => {
                    if received_at_ms > deadline_ms {
                        tracing::info!(occurrence, "dropping a question past its deadline");
                        out.push(Outcome::Done(serde_json::Value::Null));
                        continue;
                    }
                    report(
                        &self.log,
                        Event::Request {
                            service: "api-service".into(),
                            occurrence,
                            received_at_ms,
                        },
                    );
                    tokio::time::sleep(self.delay).await;
                    let margin = 0.02 + (occurrence % 5) as f64 * 0.01;
                    let answer = ApiAnswer {
                        margin,
                        received_at_ms,
                    };
                    out.push(Outcome::Done(json!(answer)));
                }
                ApiRequest::FollowUp { decision } => {
                    report(
                        &self.log,
                        Event::FollowUp {
                            occurrence: decision.occurrence,
                            received_at_ms,
                            decided_at_ms: decision.decided_at_ms,
                        },
                    );
                    out.push(Outcome::Done(serde_json::Value::Null));
                }
            }
        }
        out
    }
}
