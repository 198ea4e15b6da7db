//! # service-kit — what every Conveyor service is built from
//!
//! The plumbing the four services (consumer, worker, webhook, dashboard) and the producer share,
//! so each service's own code is only its routes, its state and its domain calls:
//!
//! - [`config`]: the configuration groups (Redis, Elasticsearch, runtime, logging, HTTP bounds) flattened
//!   into each binary's clap `Config`;
//! - [`process`]: the settings every binary has and the body of each `main`;
//! - [`runtime`]: the tokio runtime sized by `RUNTIME_THREADS`;
//! - [`shutdown`]: one cancellation token fired by SIGINT/SIGTERM;
//! - [`telemetry`]: the log subscriber, OpenTelemetry traces (ids on every log line, OTLP export
//!   when configured) and the Prometheus recorder; [`trace`] carries a trace across processes;
//! - [`secret`]: [`secret::Secret`] (never printed), `X` / `X_FILE` secrets, URL redaction;
//! - [`problem`]: `application/problem+json`, the one shape of every error answer;
//! - [`http`]: the one HTTP layer stack (health, readiness, metrics, request id, tracing, panic
//!   catching, time limit, body limit, 404/405 fallbacks), the body/query extractors and `serve`,
//!   whose connections are bounded (header, body and idle timeouts, a concurrency limit);
//! - [`partitions`]: the start-up check that a process's `QUEUE_PARTITIONS` is the count its
//!   queues were created with;
//! - [`Backoff`]: the one retry pause (re-exported from the queue, where it was born).
//!
//! It knows nothing about packets, resources or Elasticsearch documents (that is `pipeline`),
//! and nothing about how jobs run (that is `queue`).

pub mod config;
pub mod http;
pub mod partitions;
pub mod problem;
pub mod process;
pub mod runtime;
pub mod secret;
pub mod shutdown;
pub mod telemetry;

pub use queue::Backoff;
pub use telemetry::trace;
