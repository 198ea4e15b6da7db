//! [`DeliveryHandler`]: one `webhooks` job = read the collated resource from Redis, POST it signed
//! with `Idempotency-Key: <resource_id>`, and turn the answer into an outcome: 2xx → Done, 4xx other
//! than 408/429 → Dead, anything else (5xx, timeouts, refused connections) → Retry with the queue's
//! backoff. A batch's jobs are delivered concurrently over one keep-alive client.

use std::time::Duration;

use anyhow::Context;
use pipeline::collate::Collator;
use pipeline::resource::DeliveryJob;
use pipeline::signing::{sign, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};
use queue::{Handler, Job, Outcome};
use reqwest::StatusCode;
use serde_json::json;

use super::DeliveryArgs;

/// Sends collated resources to the webhook target.
pub struct DeliveryHandler {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
    collator: Collator,
}

fn count(outcome: &'static str) {
    metrics::counter!("conveyor_webhook_attempts_total", "outcome" => outcome).increment(1);
}

impl DeliveryHandler {
    pub fn new(args: &DeliveryArgs, collator: Collator) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(args.webhook_timeout_ms))
            .connect_timeout(Duration::from_millis(args.webhook_timeout_ms.min(2_000)))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .context("building the webhook HTTP client")?;
        Ok(DeliveryHandler {
            client,
            url: args.webhook_url.clone(),
            secret: args.secret(),
            collator,
        })
    }

    async fn deliver(&self, job: &Job<DeliveryJob>) -> Outcome {
        let id = &job.payload.resource_id;
        let resource = match self.collator.load(id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                count("dead");
                return Outcome::Dead {
                    reason: format!(
                        "resource {id} is not complete in Redis (expired or timed out)"
                    ),
                };
            }
            Err(e) => {
                count("retry");
                return Outcome::Retry {
                    error: format!("reading resource {id}: {e}"),
                    after: None,
                };
            }
        };
        let body = match serde_json::to_vec(&resource) {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Dead {
                    reason: format!("encoding resource {id}: {e}"),
                }
            }
        };
        let signature = sign(&self.secret, chrono::Utc::now().timestamp(), &body);
        let sent = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(IDEMPOTENCY_HEADER, id.as_str())
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                count("retry");
                tracing::warn!(resource_id = %id, attempt = job.attempt, error = %e, "webhook unreachable");
                return Outcome::Retry {
                    error: format!("POST {}: {e}", self.url),
                    after: None,
                };
            }
        };
        let status = resp.status();
        outcome_for(status, retry_after(&resp), id, job.attempt)
    }
}

/// `Retry-After` in seconds, when the target sent one.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(300)))
}

/// The delivery policy for an HTTP answer.
pub fn outcome_for(status: StatusCode, after: Option<Duration>, id: &str, attempt: u32) -> Outcome {
    if status.is_success() {
        count("delivered");
        tracing::debug!(resource_id = %id, status = status.as_u16(), "delivered");
        Outcome::Done(json!({ "status": status.as_u16() }))
    } else if status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
    {
        count("dead");
        tracing::error!(resource_id = %id, status = status.as_u16(), "webhook refused the delivery");
        Outcome::Dead {
            reason: format!("webhook answered {status}"),
        }
    } else {
        count("retry");
        tracing::warn!(resource_id = %id, status = status.as_u16(), attempt, "webhook failed; will retry");
        Outcome::Retry {
            error: format!("webhook answered {status}"),
            after,
        }
    }
}

impl Handler<DeliveryJob> for DeliveryHandler {
    async fn handle(&self, jobs: Vec<Job<DeliveryJob>>) -> Vec<Outcome> {
        futures::future::join_all(jobs.iter().map(|j| self.deliver(j))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_the_delivery_policy() {
        let o = |code: u16| outcome_for(StatusCode::from_u16(code).unwrap(), None, "r", 1);
        assert!(matches!(o(200), Outcome::Done(_)));
        assert!(matches!(o(201), Outcome::Done(_)));
        assert!(matches!(o(400), Outcome::Dead { .. }));
        assert!(matches!(o(401), Outcome::Dead { .. }));
        assert!(matches!(o(422), Outcome::Dead { .. }));
        assert!(matches!(o(408), Outcome::Retry { .. }));
        assert!(matches!(o(429), Outcome::Retry { .. }));
        assert!(matches!(o(500), Outcome::Retry { .. }));
        assert!(matches!(o(503), Outcome::Retry { .. }));
        match outcome_for(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(2)),
            "r",
            1,
        ) {
            Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(2))),
            other => panic!("{other:?}"),
        }
    }
}
