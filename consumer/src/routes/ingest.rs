//! Ingest: `POST /messages` (one packet; 202, or 200 with the processed result when
//! `?wait=true`) and `POST /messages/batch` (up to 1000 packets, all-or-nothing). Order per
//! request: `received_at` (stamped by the kit on arrival), query, content type, size, JSON
//! (the kit's `JsonBody`), fields, backlog, enqueue — so nothing invalid is ever enqueued and
//! every rejection leaves the queue as it was. Every job carries the request span's trace
//! context (which continues the client's `traceparent`, if sent). Also the wire form of a packet
//! for OpenAPI.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use pipeline::packet::{FieldError, MessageJob, Packet, StoredMessage};
use queue::{EnqueueOptions, QueueError};
use serde::{Deserialize, Serialize};
use service_kit::http::{JsonBytes, Query, ReceivedAt};
use service_kit::problem::Problem;

use super::auth::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

/// Most packets one batch request may carry.
pub const MAX_BATCH: usize = 1000;
/// Largest `POST /messages` body: one packet, its 64 KiB of text even written entirely in
/// `\uXXXX` escapes (6 bytes per byte), and the other fields (the batch route keeps the
/// service's `MAX_BODY_BYTES`).
pub const MESSAGE_BODY_LIMIT: usize = 512 * 1024;

/// Query of `POST /messages`; any other parameter answers 422.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PostParams {
    /// Wait for the processed result (200) instead of answering 202 at once.
    pub wait: Option<bool>,
    /// How long to wait with `wait=true`, 1..=WAIT_MAX_MS (default 30000; default timeout
    /// WAIT_DEFAULT_MS, 5000).
    #[param(minimum = 1, maximum = 30_000)]
    pub timeout_ms: Option<u64>,
}

/// 202 answer of `POST /messages`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Job id in the `messages` queue.
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub received_at: DateTime<Utc>,
}

/// 202 answer of `POST /messages/batch`: job ids in the order of the packets.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchAccepted {
    pub ids: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub received_at: DateTime<Utc>,
}

/// A packet as sent (validated into `pipeline::packet::Packet`). Unknown fields are rejected
/// with 422.
#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // schema only: never constructed
pub struct PacketInput {
    /// Integer from 0 to 2^53 − 1, counting up from 0 per producer.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    number: u64,
    /// RFC 3339 date-time string (no leap second), or integer epoch milliseconds; at most
    /// `MAX_CLOCK_SKEW` (5 s) after the API receives the packet and at most `MAX_MESSAGE_AGE`
    /// (7 days) before.
    #[schema(schema_with = super::contract::sent_at_schema)]
    sent_at: DateTime<Utc>,
    /// Default `"default"`.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    producer: Option<String>,
    /// Requires `seq` and `total` (all three or none).
    #[schema(
        pattern = r"^[A-Za-z0-9_.:-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    resource_id: Option<String>,
    /// `0 ≤ seq < total`; only with `resource_id`.
    #[schema(minimum = 0, maximum = 9_999)]
    seq: Option<u32>,
    /// Packets in the resource; only with `resource_id`.
    #[schema(minimum = 1, maximum = 10_000)]
    total: Option<u32>,
    /// Whitespace-separated words, at most 64 KiB of UTF-8: 65,536 characters of ASCII, fewer
    /// when some take several bytes (16,384 characters always fit); longer is 422.
    #[schema(max_length = 65_536)]
    text: Option<String>,
}

/// When the request arrived, as the stored `received_at`.
fn arrival(at: ReceivedAt) -> DateTime<Utc> {
    DateTime::<Utc>::from(at.0)
}

/// The problem+json answers both writes share: the key, the body, the backlog gate, Redis and
/// the concurrency limit.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: never constructed
pub enum WriteRejections {
    #[response(
        status = 401,
        description = "API keys are configured and the request has no known key (`unauthorized`; see WWW-Authenticate)",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "The key may not post packets of a packet's producer (`forbidden`); nothing enqueued",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 400,
        description = "Malformed JSON",
        content_type = "application/problem+json"
    )]
    Malformed(Problem),
    #[response(
        status = 408,
        description = "The body did not arrive in full within HTTP_BODY_TIMEOUT of the head",
        content_type = "application/problem+json"
    )]
    BodyTimeout(Problem),
    #[response(
        status = 413,
        description = "Body too large",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "Not JSON",
        content_type = "application/problem+json"
    )]
    NotJson(Problem),
    #[response(
        status = 429,
        description = "Backlog over its limit: BACKLOG_LIMIT jobs waiting or BACKLOG_LIMIT_BYTES held in Redis (see Retry-After)",
        content_type = "application/problem+json"
    )]
    Backlog(Problem),
    #[response(
        status = 503,
        description = "Redis unavailable, or the API over MAX_CONCURRENT_REQUESTS (`overloaded`); see Retry-After",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// Enqueue one packet.
#[utoipa::path(
    post, path = "/messages", tag = "ingest",
    params(PostParams),
    security(("api_key" = [])),
    request_body(content = PacketInput, content_type = "application/json"),
    responses(
        (status = 202, description = "Enqueued", body = Accepted),
        (status = 200, description = "Processed (with `wait=true`)", body = StoredMessage),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        WriteRejections,
        (status = 504, description = "Not processed within timeout_ms (it still completes)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn post_message(
    State(state): State<AppState>,
    Extension(at): Extension<ReceivedAt>,
    Authenticated(writer): Authenticated,
    Query(params): Query<PostParams>,
    JsonBytes(body): JsonBytes<MESSAGE_BODY_LIMIT>,
) -> Result<Response, ApiError> {
    let received_at = arrival(at);
    let wait = wait_timeout(&state, &params)?;
    let packet = Packet::from_slice(&body, &state.config().edge_rules(received_at))?;
    drop(body);
    writer.check([packet.producer.as_str()])?;
    state.check_backlog().await?;
    let job = MessageJob {
        packet,
        received_at,
    };
    match wait {
        None => {
            // Coalesced with the other requests of this moment into one pipelined round trip.
            let id = state.enqueue(job).await?;
            metrics::counter!("conveyor_messages_accepted_total").increment(1);
            // The job id is the packet's natural key, its document id.
            tracing::debug!(doc_id = %id, "message enqueued");
            let answer = Accepted {
                id: id.0,
                received_at,
            };
            Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
        }
        // Boxed: the waiting future is large, and keeping it out of this one keeps the 202 path
        // from allocating and copying it on every request.
        Some(timeout) => Box::pin(enqueue_and_wait(&state, job, timeout)).await,
    }
}

/// The `?wait=true` path: enqueue under the packet's partition key (its resource id), then wait
/// for the processed message. The queue bounds the whole call (subscribe, push, wait) by
/// `timeout`, so a hung Redis cannot hold the request longer. The job counts as accepted once
/// it was (or may have been) pushed: on a result, a dead letter or a timeout after the push —
/// never when Redis refused or was unreachable before the push.
async fn enqueue_and_wait(
    state: &AppState,
    job: MessageJob,
    timeout: Duration,
) -> Result<Response, ApiError> {
    // A fresh job id, not the natural key: a waiter needs a job of its own whose result it sees.
    // Under the natural key a repeat of a packet sent before would be deduplicated and its result
    // (published long ago) never arrive, so the wait would run out its timeout. A repeated wait
    // therefore runs the job again, which changes nothing stored: the document's `_id` is the
    // natural key and collation ignores a part it already has.
    let opts = EnqueueOptions {
        partition_key: job.packet.partition_key(),
        trace: service_kit::trace::current(),
        ..EnqueueOptions::default()
    };
    tracing::debug!(doc_id = %job.packet.doc_id(), "message enqueued, waiting for its result");
    let waited = state
        .queue()
        .enqueue_and_wait_with::<StoredMessage>(&job, opts, timeout)
        .await;
    let accepted = || metrics::counter!("conveyor_messages_accepted_total").increment(1);
    match waited {
        Ok(stored) => {
            accepted();
            Ok((StatusCode::OK, Json(stored)).into_response())
        }
        Err(QueueError::Timeout { job_id }) => {
            accepted();
            Err(ApiError::Timeout {
                job_id: job_id.0,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })
        }
        Err(QueueError::Failed { job_id, reason }) => {
            accepted();
            tracing::error!(%job_id, reason, "waited job was dead-lettered");
            Err(ApiError::Internal)
        }
        Err(e) => Err(ApiError::from_queue(e)),
    }
}

/// Enqueue up to 1000 packets: all valid, or none enqueued.
#[utoipa::path(
    post, path = "/messages/batch", tag = "ingest",
    security(("api_key" = [])),
    request_body(content = Vec<PacketInput>, content_type = "application/json"),
    responses(
        (status = 202, description = "All enqueued", body = BatchAccepted),
        (status = 422, description = "Invalid packets (errors named `[i].field`); none enqueued", body = Problem, content_type = "application/problem+json"),
        WriteRejections,
    )
)]
pub async fn post_batch(
    State(state): State<AppState>,
    Extension(at): Extension<ReceivedAt>,
    Authenticated(writer): Authenticated,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let received_at = arrival(at);
    let rules = state.config().edge_rules(received_at);
    let items = Packet::batch_from_slice(&body, &rules, MAX_BATCH)?;
    drop(body);
    writer.check(items.iter().map(|p| p.producer.as_str()))?;
    state.check_backlog().await?;
    // Each job's id is its natural key, deduplicated by the queue: a retried batch adds nothing.
    let jobs: Vec<(Option<String>, Option<String>, MessageJob)> = items
        .into_iter()
        .map(|packet| {
            let (key, id) = (packet.partition_key(), Some(packet.doc_id()));
            let job = MessageJob {
                packet,
                received_at,
            };
            (key, id, job)
        })
        .collect();
    let queue = state.queue();
    // Every job of the batch carries the batch request's trace context.
    let trace = service_kit::trace::current();
    let ids = state
        .bounded("Redis", async {
            queue
                .enqueue_batch_traced(&jobs, trace.as_deref())
                .await
                .map_err(crate::state::from_queue_retry_safe)
        })
        .await?;
    metrics::counter!("conveyor_messages_accepted_total").increment(ids.len() as u64);
    tracing::debug!(jobs = ids.len(), "batch enqueued");
    let answer = BatchAccepted {
        ids: ids.into_iter().map(|id| id.0).collect(),
        received_at,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// The wait budget of a `?wait=true` request, None without waiting.
fn wait_timeout(state: &AppState, params: &PostParams) -> Result<Option<Duration>, ApiError> {
    let max = state.config().wait_max_ms;
    // Checked with or without `wait=true`: a value out of range is refused, never ignored.
    if params.timeout_ms.is_some_and(|ms| ms == 0 || ms > max) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "timeout_ms",
            format!("must be between 1 and {max}"),
        )]));
    }
    if params.wait != Some(true) {
        return Ok(None);
    }
    let ms = params
        .timeout_ms
        .unwrap_or(state.config().wait_default_ms.min(max));
    Ok(Some(Duration::from_millis(ms)))
}
