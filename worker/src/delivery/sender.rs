//! [`DeliveryHandler`]: one `webhooks` job = read the collated resource from Redis, POST it signed
//! with `Idempotency-Key: <resource key>` (and the Standard Webhooks headers), and turn the answer into an outcome: 2xx → release the
//! resource's data (it expires) and Done; a target that is down (refused connection, timeout,
//! 502/503/504) → Wait, without using up an attempt; 401/403 (a secret rotation or clock skew),
//! 408, 429 and other 5xx → Retry with the queue's backoff; any other 4xx → Dead. A job whose
//! resource was already delivered is Done; one whose data is gone (only if Redis lost data) is
//! Dead with that reason. A batch's resources are read in one round trip, POSTed concurrently
//! (at most [`IN_FLIGHT`] at once) over one keep-alive client, and the delivered ones released in
//! one round trip.
//! Each delivery runs in its own span, continuing the job's trace, and the POST carries that
//! span's `traceparent`. Collation keys and scripts are not touched here.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use pipeline::collate::{CollateError, Collator, Fetched};
use pipeline::ids::ResourceKey;
use pipeline::resource::DeliveryJob;
use pipeline::signing::{sign_all, standard, Secrets, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};
use queue::{Handler, Job, Outcome};
use reqwest::StatusCode;
use serde_json::json;
use tracing::Instrument;

use crate::config::DeliveryArgs;

/// Sends collated resources to the webhook target.
pub struct DeliveryHandler {
    client: reqwest::Client,
    url: String,
    secrets: Secrets,
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
            // A redirect would re-send a signed body to wherever the target points: never follow
            // one (a 3xx is then an answer like any other: dead-lettered as a refusal).
            .redirect(reqwest::redirect::Policy::none())
            // Below the usual 5 s server-side keep-alive (this project's HTTP_IDLE_TIMEOUT,
            // Node's default): reusing a connection the server is closing at that instant fails
            // the POST after it was sent ("error sending request"), a retry for nothing.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .context("building the webhook HTTP client")?;
        Ok(DeliveryHandler {
            client,
            url: args.webhook_url.clone(),
            secrets: args.secrets()?,
            collator,
        })
    }

    /// POSTs one fetched resource; the flag says whether it was delivered now (its data is then
    /// released with the batch's others).
    async fn deliver(
        &self,
        job: &Job<DeliveryJob>,
        fetched: Result<Fetched, CollateError>,
    ) -> (Outcome, bool) {
        let id = &job.payload.key;
        let resource = match fetched {
            Ok(Fetched::Ready(r)) => r,
            Ok(Fetched::Delivered) => {
                count("already_delivered");
                tracing::info!(resource_id = %id, "resource already delivered");
                return (Outcome::Done(json!({ "already_delivered": true })), false);
            }
            Ok(Fetched::Missing(what)) => {
                count("dead");
                tracing::error!(resource_id = %id, found = %what, "resource data missing for a delivery job");
                let reason = format!(
                    "resource {id}: collated data missing in Redis ({what}); \
                     only possible if Redis lost data"
                );
                return (Outcome::Dead { reason }, false);
            }
            Err(e) => {
                count("retry");
                let error = format!("reading resource {id}: {e}");
                return (Outcome::Retry { error, after: None }, false);
            }
        };
        let body = match serde_json::to_vec(&resource) {
            Ok(b) => b,
            Err(e) => {
                let reason = format!("encoding resource {id}: {e}");
                return (Outcome::Dead { reason }, false);
            }
        };
        // Both schemes over the same instant and body: the Conveyor header, and the Standard
        // Webhooks headers (the id is the resource key, the same on every retry).
        let now = chrono::Utc::now().timestamp();
        let key = id.to_string();
        let sent = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign_all(&self.secrets, now, &body))
            .header(standard::ID_HEADER, &key)
            .header(standard::TIMESTAMP_HEADER, now.to_string())
            .header(
                standard::SIGNATURE_HEADER,
                standard::sign(&self.secrets, &key, now, &body),
            )
            .header(IDEMPOTENCY_HEADER, &key);
        let sent = match service_kit::trace::current() {
            Some(traceparent) => sent.header(service_kit::trace::TRACEPARENT, traceparent),
            None => sent,
        };
        let sent = sent.body(body).send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_timeout() => {
                // The target is down or not answering: a dependency outage, not a failure of this
                // delivery. Wait without using up an attempt, however long the outage lasts.
                count("wait");
                tracing::warn!(resource_id = %id, attempt = job.attempt, error = %e, "webhook unreachable; waiting");
                let reason = format!("POST {}: {e}", self.url);
                return (
                    Outcome::Wait {
                        reason,
                        after: UNREACHABLE_WAIT,
                    },
                    false,
                );
            }
            Err(e) => {
                count("retry");
                tracing::warn!(resource_id = %id, attempt = job.attempt, error = %e, "webhook request failed");
                let error = format!("POST {}: {e}", self.url);
                return (Outcome::Retry { error, after: None }, false);
            }
        };
        let status = resp.status();
        let outcome = outcome_for(status, retry_after(&resp), &key, job.attempt);
        let delivered = matches!(outcome, Outcome::Done(_));
        (outcome, delivered)
    }
}

/// How long a delivery waits before trying a target that is down again.
const UNREACHABLE_WAIT: Duration = Duration::from_secs(1);

/// `Retry-After` in seconds, when the target sent one.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(300)))
}

/// 4xx answers worth retrying: a timeout, throttling, and a refused signature (401/403), which a
/// secret rotation or clock skew causes and fixing the configuration cures.
fn retryable_client_error(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
    )
}

/// The delivery policy for an HTTP answer.
pub fn outcome_for(status: StatusCode, after: Option<Duration>, id: &str, attempt: u32) -> Outcome {
    if status.is_success() {
        count("delivered");
        tracing::debug!(resource_id = %id, status = status.as_u16(), "delivered");
        Outcome::Done(json!({ "status": status.as_u16() }))
    } else if matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    ) {
        // The target (or what stands behind it, e.g. its Elasticsearch) is down: wait for it
        // without using up an attempt.
        count("wait");
        tracing::warn!(resource_id = %id, status = status.as_u16(), attempt, "webhook unavailable; waiting");
        Outcome::Wait {
            reason: format!("webhook answered {status}"),
            after: after.unwrap_or(UNREACHABLE_WAIT),
        }
    } else if status.is_redirection() {
        count("dead");
        tracing::error!(resource_id = %id, status = status.as_u16(),
            "webhook answered a redirect, which is never followed (a signed body goes only to WEBHOOK_URL)");
        Outcome::Dead {
            reason: format!(
                "webhook answered {status}: redirects are not followed; set WEBHOOK_URL to the final address"
            ),
        }
    } else if status.is_client_error() && !retryable_client_error(status) {
        count("dead");
        tracing::error!(resource_id = %id, status = status.as_u16(), "webhook refused the delivery");
        Outcome::Dead {
            reason: format!("webhook answered {status}"),
        }
    } else {
        count("retry");
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            tracing::error!(resource_id = %id, status = status.as_u16(), attempt,
                "webhook refused the signature (check WEBHOOK_SECRET on both sides and the clocks); will retry");
        } else {
            tracing::warn!(resource_id = %id, status = status.as_u16(), attempt, "webhook failed; will retry");
        }
        Outcome::Retry {
            error: format!("webhook answered {status}"),
            after,
        }
    }
}

impl Handler<DeliveryJob> for DeliveryHandler {
    /// Reads every job's resource in one round trip, POSTs them concurrently (at most
    /// [`IN_FLIGHT`] at once: each needs its own connection to the target), then releases the
    /// delivered ones in one round trip. A release that fails is only logged: the data still
    /// expires after the retention, and a re-run of a job only re-POSTs (an idempotent duplicate).
    async fn handle(&self, jobs: Vec<Job<DeliveryJob>>) -> Vec<Outcome> {
        let keys: Vec<ResourceKey> = jobs.iter().map(|j| j.payload.key.clone()).collect();
        let fetched = match self.collator.fetch_many(&keys).await {
            Ok(fetched) => fetched,
            Err(e) => return jobs.iter().map(|_| unreadable(&e)).collect(),
        };
        // Each delivery (its span and its future) is made only when a slot is free: a batch of
        // hundreds then holds [`IN_FLIGHT`] of them at once, not all (a request future is a few KB).
        let deliveries = fetched.into_iter().enumerate().map(|(i, fetched)| {
            let j = &jobs[i];
            // Each delivery continues the trace of the packet that completed its resource;
            // the POST carries this span's `traceparent`, which the webhook service continues.
            let span = tracing::info_span!("delivery", job_id = %j.id,
                resource_id = %j.payload.key, attempt = j.attempt);
            service_kit::trace::continue_from(&span, j.trace.as_deref());
            self.deliver(j, fetched).instrument(span)
        });
        let results: Vec<(Outcome, bool)> = futures::stream::iter(deliveries)
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        let delivered: Vec<ResourceKey> = results
            .iter()
            .zip(keys)
            .filter_map(|((_, delivered), key)| delivered.then_some(key))
            .collect();
        if let Err(e) = self.collator.release_many(&delivered).await {
            tracing::warn!(resources = delivered.len(), error = %e, "releasing delivered resources failed");
        }
        results.into_iter().map(|(outcome, _)| outcome).collect()
    }
}

/// Deliveries of one batch in flight at once (each holds a connection to the target: ~36 KB of
/// client buffers here, as much again in the webhook service). With the default 4 batches that
/// is 128 per worker. 64 gave the webhook service larger `_bulk`s (~64 resources instead of ~48)
/// but cost more than it saved: in back-to-back `bench/stack.sh` runs (100,000 packets, 2
/// workers) 64 stored 14,184 and 15,015 messages/s with a worker's peak RSS at 55–58 MB, 32 stored
/// 15,974 and 16,863 at 50–52 MB (bench/README.md, "The stack").
pub const IN_FLIGHT: usize = 32;

/// The outcome of every job of a batch whose resources could not be read: Redis slow or
/// unreachable is a dependency outage (wait, no attempt used); anything else retries.
fn unreadable(e: &CollateError) -> Outcome {
    if e.is_transient() {
        count("wait");
        Outcome::Wait {
            reason: format!("reading the resources: {e}"),
            after: UNREACHABLE_WAIT,
        }
    } else {
        count("retry");
        Outcome::Retry {
            error: format!("reading the resources: {e}"),
            after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_the_delivery_policy() {
        let kind = |code: u16| match outcome_for(StatusCode::from_u16(code).unwrap(), None, "r", 1)
        {
            Outcome::Done(_) => "done",
            Outcome::Retry { .. } => "retry",
            Outcome::Wait { .. } => "wait",
            Outcome::Dead { .. } => "dead",
        };
        let policy = [
            (200, "done"),
            (201, "done"),
            (400, "dead"),
            (401, "retry"),
            (403, "retry"),
            (404, "dead"),
            (413, "dead"),
            (422, "dead"),
            (408, "retry"),
            (429, "retry"),
            (500, "retry"),
            (502, "wait"),
            (503, "wait"),
            (504, "wait"),
        ];
        for (code, expected) in policy {
            assert_eq!(kind(code), expected, "HTTP {code}");
        }
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

/// The handler against the real Redis and a real HTTP target (axum on port 0).
#[cfg(test)]
mod redis_tests {
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::SystemTime;

    use chrono::Utc;
    use clap::Parser;
    use pipeline::ids::{ProducerName, ResourceId, ResourceKey, ResourcePart};
    use pipeline::packet::StoredMessage;
    use queue::JobId;

    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes";

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        delivery: DeliveryArgs,
    }

    /// A webhook target answering `status` and counting requests.
    async fn target(status: Arc<AtomicU16>, hits: Arc<AtomicUsize>) -> String {
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hook")
    }

    /// The key of resource `id` of producer `p` (the producer of [`packet`]).
    fn key(id: &str) -> ResourceKey {
        ResourceKey::new(
            ProducerName::parse("p").unwrap(),
            ResourceId::parse(id).unwrap(),
        )
    }

    fn job(id: &str) -> Job<DeliveryJob> {
        Job {
            id: JobId(format!("job-{id}")),
            payload: DeliveryJob { key: key(id) },
            attempt: 1,
            enqueued_at: SystemTime::now(),
            partition: 0,
            reply_wanted: false,
            trace: None,
        }
    }

    fn packet(id: &str) -> StoredMessage {
        let now = Utc::now();
        StoredMessage {
            producer: ProducerName::parse("p").unwrap(),
            number: 0,
            sent_at: now,
            received_at: now,
            stored_at: now,
            transit_ms: 0.0,
            word_lengths: vec![3],
            text: "abc".into(),
            part: ResourcePart::new(ResourceId::parse(id).unwrap(), 0, 1).ok(),
        }
    }

    #[tokio::test]
    async fn refused_signatures_retry_and_only_a_delivery_releases_the_data() {
        let env = testkit::TestEnv::new("delivery_handler").await;
        let status = Arc::new(AtomicU16::new(401));
        let hits = Arc::new(AtomicUsize::new(0));
        let url = target(status.clone(), hits.clone()).await;
        let args = Cli::parse_from([
            "t",
            "--webhook-url",
            &url,
            "--webhook-secret",
            SECRET,
            "--resource-ttl-secs",
            "30",
        ])
        .delivery;
        let collator = args.collator(
            env.redis.clone().into(),
            &service_kit::config::RedisArgs::new(testkit::redis_url(), &env.namespace),
        );
        let handler = DeliveryHandler::new(&args, collator.clone()).unwrap();
        assert_eq!(
            collator
                .record(&[packet("r"), packet("bad")])
                .await
                .unwrap(),
            2
        );

        // 401 (secret rotation, clock skew) and 403 are retried; the data stays for the retry.
        for code in [401, 403] {
            status.store(code, Ordering::SeqCst);
            let out = handler.handle(vec![job("r")]).await;
            assert!(matches!(&out[0], Outcome::Retry { .. }), "{code}: {out:?}");
            assert!(collator.load(&key("r")).await.unwrap().is_some());
        }
        // Delivered: Done, and a re-run of the job finds it delivered without POSTing again.
        status.store(200, Ordering::SeqCst);
        let out = handler.handle(vec![job("r")]).await;
        assert!(matches!(&out[0], Outcome::Done(_)), "{out:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(collator.fetch(&key("r")).await.unwrap(), Fetched::Delivered);
        let out = handler.handle(vec![job("r")]).await;
        assert!(matches!(&out[0], Outcome::Done(_)), "{out:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 3, "no second POST");

        // Other 4xx are final; the data of a refused resource is not released.
        status.store(422, Ordering::SeqCst);
        let out = handler.handle(vec![job("bad")]).await;
        assert!(matches!(&out[0], Outcome::Dead { .. }), "{out:?}");
        assert!(collator.load(&key("bad")).await.unwrap().is_some());

        // A job whose resource data is gone is dead with a reason saying so, without a POST.
        let out = handler.handle(vec![job("ghost")]).await;
        match &out[0] {
            Outcome::Dead { reason } => assert!(
                reason.starts_with("resource p@ghost: collated data missing in Redis"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        env.cleanup().await;
    }

    #[tokio::test]
    async fn a_redirect_is_never_followed_so_a_signed_body_never_goes_elsewhere() {
        let env = testkit::TestEnv::new("delivery_redirect").await;
        let elsewhere_hits = Arc::new(AtomicUsize::new(0));
        let elsewhere = target(Arc::new(AtomicU16::new(200)), elsewhere_hits.clone()).await;
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let to = elsewhere.clone();
                async move { axum::response::Redirect::temporary(&to) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let args =
            Cli::parse_from(["t", "--webhook-url", &url, "--webhook-secret", SECRET]).delivery;
        let collator = args.collator(
            env.redis.clone().into(),
            &service_kit::config::RedisArgs::new(testkit::redis_url(), &env.namespace),
        );
        let handler = DeliveryHandler::new(&args, collator.clone()).unwrap();
        collator.record(&[packet("moved")]).await.unwrap();
        let out = handler.handle(vec![job("moved")]).await;
        match &out[0] {
            Outcome::Dead { reason } => assert!(reason.contains("307"), "{reason}"),
            other => panic!("expected Dead for a redirect, got {other:?}"),
        }
        assert_eq!(
            elsewhere_hits.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
    }

    #[tokio::test]
    async fn a_target_that_is_down_makes_the_delivery_wait_without_using_an_attempt() {
        let env = testkit::TestEnv::new("delivery_down").await;
        // A port nobody listens on: connection refused, like a stopped webhook service.
        let url = format!("http://127.0.0.1:{}/hook", testkit::free_port());
        let args =
            Cli::parse_from(["t", "--webhook-url", &url, "--webhook-secret", SECRET]).delivery;
        let collator = args.collator(
            env.redis.clone().into(),
            &service_kit::config::RedisArgs::new(testkit::redis_url(), &env.namespace),
        );
        let handler = DeliveryHandler::new(&args, collator.clone()).unwrap();
        collator.record(&[packet("down")]).await.unwrap();
        let out = handler.handle(vec![job("down")]).await;
        match &out[0] {
            Outcome::Wait { reason, after } => {
                assert!(reason.contains(&url), "{reason}");
                assert_eq!(*after, UNREACHABLE_WAIT);
            }
            other => panic!("expected Wait, got {other:?}"),
        }
        assert!(
            collator.load(&key("down")).await.unwrap().is_some(),
            "data kept for the next try"
        );

        // Behind the target, its own dependency is down (503): wait too.
        let status = Arc::new(AtomicU16::new(503));
        let url = target(status, Arc::new(AtomicUsize::new(0))).await;
        let args =
            Cli::parse_from(["t", "--webhook-url", &url, "--webhook-secret", SECRET]).delivery;
        let handler = DeliveryHandler::new(&args, collator.clone()).unwrap();
        let out = handler.handle(vec![job("down")]).await;
        assert!(matches!(&out[0], Outcome::Wait { .. }), "{out:?}");
        env.cleanup().await;
    }
}
