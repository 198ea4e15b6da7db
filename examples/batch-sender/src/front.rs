//! The HTTP front end: `POST /orders` validates an order, applies backpressure (429 when this
//! front end already holds `--max-in-flight` orders, or the queue's backlog is over
//! `--backlog-limit`), enqueues it and waits for its own result, which the queue routes back by
//! job id. Every error answer is problem+json ([`FrontError`]). Health, readiness and metrics are
//! the service kit's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::Args;
use queue::{Queue, QueueError};
use serde::Serialize;
use service_kit::http::{Check, HttpArgs, HttpKit, JsonBody};
use service_kit::problem::{FieldError, Problem};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::model::{Execution, Order};

#[derive(Args, Clone, Debug)]
pub struct FrontArgs {
    /// Address the front end listens on
    #[arg(long, env = "BATCH_FRONT_ADDR", default_value = "127.0.0.1:8100")]
    pub addr: SocketAddr,
    /// Orders this front end waits for at once; one more answers 429
    #[arg(long, default_value_t = 1_000)]
    pub max_in_flight: usize,
    /// Orders waiting in the queue above which new orders answer 429
    #[arg(long, default_value_t = 5_000)]
    pub backlog_limit: u64,
    /// How long a request waits for its order's result (504 after), in ms
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// How long a backlog reading is reused.
const BACKLOG_CACHE: Duration = Duration::from_millis(50);

/// What every request of one front end shares.
#[derive(Clone)]
pub struct FrontState {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue<Order>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    backlog_limit: u64,
    timeout: Duration,
    started: Instant,
    /// Last backlog reading and when (µs since `started`; 0 = never).
    backlog: AtomicU64,
    backlog_at_us: AtomicU64,
    /// One backlog reading at a time: a burst of orders must not become a burst of reads.
    refresh: tokio::sync::Mutex<()>,
}

impl FrontState {
    pub fn new(queue: Queue<Order>, args: &FrontArgs) -> FrontState {
        FrontState {
            inner: Arc::new(Inner {
                queue,
                in_flight: Arc::new(Semaphore::new(args.max_in_flight.max(1))),
                max_in_flight: args.max_in_flight.max(1),
                backlog_limit: args.backlog_limit,
                timeout: Duration::from_millis(args.timeout_ms),
                started: Instant::now(),
                backlog: AtomicU64::new(0),
                backlog_at_us: AtomicU64::new(0),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The queue's backlog, read at most every [`BACKLOG_CACHE`].
    async fn backlog(&self) -> Result<u64, FrontError> {
        if let Some(backlog) = self.fresh_backlog() {
            return Ok(backlog);
        }
        let _one_at_a_time = self.inner.refresh.lock().await;
        if let Some(backlog) = self.fresh_backlog() {
            return Ok(backlog);
        }
        let stats = self.inner.queue.stats().await.map_err(|e| {
            tracing::warn!(error = %e, "reading the backlog failed");
            FrontError::Unavailable
        })?;
        self.inner.backlog.store(stats.backlog, Ordering::Release);
        self.inner
            .backlog_at_us
            .store(self.now_us(), Ordering::Release);
        Ok(stats.backlog)
    }

    /// The last reading, unless it is older than [`BACKLOG_CACHE`].
    fn fresh_backlog(&self) -> Option<u64> {
        let at = self.inner.backlog_at_us.load(Ordering::Acquire);
        let age = self.now_us().saturating_sub(at);
        (at != 0 && age < BACKLOG_CACHE.as_micros() as u64)
            .then(|| self.inner.backlog.load(Ordering::Acquire))
    }

    /// µs since this front end started, at least 1 (0 means "never read").
    fn now_us(&self) -> u64 {
        self.inner.started.elapsed().as_micros() as u64 + 1
    }
}

/// Everything `POST /orders` can answer besides 200.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("invalid order")]
    Validation(Vec<FieldError>),
    #[error("this front end already waits for {0} orders")]
    Busy(usize),
    #[error("backlog {waiting} over its limit {limit}")]
    Backlog { waiting: u64, limit: u64 },
    #[error("batch {batch_id} failed: {error}")]
    BatchFailed { batch_id: String, error: String },
    #[error("no result in time")]
    Timeout,
    #[error("redis unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl IntoResponse for FrontError {
    fn into_response(self) -> Response {
        let problem = match &self {
            FrontError::Validation(errors) => {
                Problem::validation("the order breaks a rule", errors.clone())
            }
            FrontError::Busy(_) | FrontError::Backlog { .. } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "backpressure",
                "Too many orders",
                format!("{self}; retry later"),
            )
            .retry_after(1),
            FrontError::BatchFailed { .. } => Problem::new(
                StatusCode::BAD_GATEWAY,
                "batch-failed",
                "The order's batch failed",
                self.to_string(),
            ),
            FrontError::Timeout => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "No result in time",
                "the order was not executed in time; it may still be executed",
            ),
            FrontError::Unavailable => Problem::unavailable("Redis"),
            FrontError::Internal => Problem::internal(),
        };
        problem.into_response()
    }
}

/// 200 answer of `POST /orders`.
#[derive(Debug, Serialize)]
pub struct Receipt {
    pub order_id: String,
    pub batch_id: String,
    pub batch_size: usize,
    pub executor: String,
    pub executed_at_ms: u64,
    /// How long the batch's oldest order waited in the queue before the batch ran, in ms.
    pub batch_waited_ms: u64,
}

/// `POST /orders`.
async fn post_order(
    State(state): State<FrontState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Receipt>, FrontError> {
    let order: Order = serde_json::from_value(body)
        .map_err(|e| FrontError::Validation(vec![FieldError::new("$", e.to_string())]))?;
    let errors = order.check();
    if !errors.is_empty() {
        return Err(FrontError::Validation(errors));
    }
    let Ok(_permit) = state.inner.in_flight.clone().try_acquire_owned() else {
        return Err(FrontError::Busy(state.inner.max_in_flight));
    };
    let waiting = state.backlog().await?;
    let limit = state.inner.backlog_limit;
    if waiting >= limit {
        return Err(FrontError::Backlog { waiting, limit });
    }
    let result = state
        .inner
        .queue
        .enqueue_and_wait::<Execution>(&order, state.inner.timeout)
        .await;
    let execution = match result {
        Ok(e) => e,
        Err(QueueError::Timeout { .. }) => return Err(FrontError::Timeout),
        Err(e) if e.is_unavailable() => {
            tracing::warn!(order_id = %order.order_id, error = %e, "enqueueing the order failed");
            return Err(FrontError::Unavailable);
        }
        Err(e) => {
            tracing::error!(order_id = %order.order_id, error = %e, "waiting for the result failed");
            return Err(FrontError::Internal);
        }
    };
    if execution.order_id() != order.order_id {
        tracing::error!(sent = %order.order_id, got = %execution.order_id(), "a result reached the wrong request");
        return Err(FrontError::Internal);
    }
    match execution {
        Execution::Executed {
            order_id,
            batch_id,
            batch_size,
            executor,
            executed_at_ms,
            batch_waited_ms,
        } => Ok(Json(Receipt {
            order_id,
            batch_id,
            batch_size,
            executor,
            executed_at_ms,
            batch_waited_ms,
        })),
        Execution::BatchFailed {
            batch_id, error, ..
        } => Err(FrontError::BatchFailed { batch_id, error }),
    }
}

/// The whole router: `POST /orders` plus the kit's health, readiness (Redis answers) and metrics.
pub fn router(state: FrontState) -> Router {
    let ready = state.clone();
    let kit = HttpKit::new("batch-front")
        .body_limit(16 * 1024)
        .readiness(move || {
            let state = ready.clone();
            async move { vec![Check::new("redis", state.inner.queue.stats().await.is_ok())] }
        });
    kit.mount(
        Router::new()
            .route("/orders", post(post_order))
            .with_state(state),
    )
}

/// Opens up to `n` pooled Redis connections before the first request (a burst of orders at
/// start would otherwise open them all at once, and some could time out), by running `n` queue
/// reads at once. Failures are logged: the front end starts anyway and `/readyz` tells.
pub async fn warm_pool(queue: &Queue<Order>, n: usize) {
    let reads = (0..n).map(|_| queue.stats());
    let failed = futures::future::join_all(reads)
        .await
        .into_iter()
        .filter(Result::is_err)
        .count();
    if failed > 0 {
        tracing::warn!(failed, "could not open every Redis connection at start");
    }
}

/// Serves the front end on `listener` until `shutdown`.
pub async fn run(
    queue: Queue<Order>,
    args: FrontArgs,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    service_kit::telemetry::prometheus();
    let state = FrontState::new(queue, &args);
    tracing::info!(addr = %listener.local_addr()?, "batch front end listening");
    service_kit::http::serve(listener, router(state), &args.http, shutdown).await?;
    Ok(())
}
