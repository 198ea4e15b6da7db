//! The client: [`Client::call`] sends one request and waits for its reply; [`run_load`] sends
//! many with bounded concurrency and keeps each request beside its outcome and latency; the
//! `client` subcommand prints a summary of such a run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use queue::{Queue, QueueError};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::model::{Reply, Request};

/// Why a call has no reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No reply within the timeout (the request may still be answered later).
    #[error("no reply within the timeout")]
    Timeout,
    /// The server gave up on the request (it was dead-lettered).
    #[error("the server failed: {0}")]
    Failed(String),
    /// Redis is not reachable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A reply that is not this request's (never expected: replies are routed by job id).
    #[error("reply {got} does not match request {sent}")]
    Mismatch { sent: u64, got: u64 },
}

/// Sends requests and waits for their replies.
#[derive(Clone)]
pub struct Client {
    queue: Queue<Request>,
    timeout: Duration,
}

impl Client {
    pub fn new(queue: Queue<Request>, timeout: Duration) -> Client {
        Client { queue, timeout }
    }

    /// One request, one reply (which carries the typed error, if the server refused it).
    pub async fn call(&self, request: &Request) -> Result<Reply, CallError> {
        match self
            .queue
            .enqueue_and_wait::<Reply>(request, self.timeout)
            .await
        {
            Ok(reply) if reply.id == request.id => Ok(reply),
            Ok(reply) => Err(CallError::Mismatch {
                sent: request.id,
                got: reply.id,
            }),
            Err(QueueError::Timeout { .. }) => Err(CallError::Timeout),
            Err(QueueError::Failed { reason, .. }) => Err(CallError::Failed(reason)),
            Err(e) => Err(CallError::Unavailable(e.to_string())),
        }
    }
}

/// One request of a load run and what became of it.
pub struct Outcome {
    pub request: Request,
    pub reply: Result<Reply, CallError>,
    pub latency: Duration,
}

/// Sends every request, at most `concurrency` at once; returns one outcome per request in
/// completion order. Stops sending new requests when `stop` is cancelled.
pub async fn run_load(
    client: &Client,
    requests: Vec<Request>,
    concurrency: usize,
    stop: &CancellationToken,
) -> Vec<Outcome> {
    futures::stream::iter(requests)
        .take_while(|_| std::future::ready(!stop.is_cancelled()))
        .map(|request| async move {
            let start = Instant::now();
            let reply = client.call(&request).await;
            Outcome {
                request,
                reply,
                latency: start.elapsed(),
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// `n` requests with ids `0..n`, random operands, a divisor of 0 in about one of 20.
pub fn random_requests(n: u64) -> Vec<Request> {
    let mut rng = rand::rng();
    (0..n)
        .map(|id| Request {
            id,
            a: rng.random_range(-1_000_000..1_000_000),
            b: rng.random_range(-10..=10),
        })
        .collect()
}

#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// Requests to send
    #[arg(long, default_value_t = 1_000)]
    pub requests: u64,
    /// Requests in flight at once
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[command(flatten)]
    pub timeout: TimeoutArg,
}

/// The `client` subcommand: a load run, then one JSON summary line on stdout.
pub async fn run_cli(
    queue: Queue<Request>,
    args: ClientArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = Client::new(queue, args.timeout.get());
    let started = Instant::now();
    let outcomes = run_load(
        &client,
        random_requests(args.requests),
        args.concurrency,
        &shutdown,
    )
    .await;
    let elapsed = started.elapsed();
    let mut per_replica = BTreeMap::<String, u64>::new();
    let mut typed_errors = BTreeMap::<String, u64>::new();
    let mut failures = BTreeMap::<String, u64>::new();
    let mut wrong = 0u64;
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    for o in &outcomes {
        hist.record(o.latency.as_micros() as u64)?;
        match &o.reply {
            Ok(reply) => {
                *per_replica.entry(reply.served_by.clone()).or_default() += 1;
                if reply.result != o.request.evaluate() {
                    wrong += 1;
                }
                if let Err(e) = &reply.result {
                    *typed_errors.entry(e.to_string()).or_default() += 1;
                }
            }
            Err(e) => *failures.entry(e.to_string()).or_default() += 1,
        }
    }
    let summary = serde_json::json!({
        "requests": outcomes.len(),
        "replies": per_replica.values().sum::<u64>(),
        "wrong_answers": wrong,
        "per_replica": per_replica,
        "typed_errors": typed_errors,
        "failures": failures,
        "seconds": elapsed.as_secs_f64(),
        "p50_us": hist.value_at_quantile(0.5),
        "p99_us": hist.value_at_quantile(0.99),
    });
    println!("{summary}");
    Ok(())
}

/// A duration flag in milliseconds.
#[derive(Args, Clone, Debug)]
pub struct TimeoutArg {
    /// How long a caller waits for its reply, in ms
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

impl TimeoutArg {
    pub fn get(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}
