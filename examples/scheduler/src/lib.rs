//! # A scheduler with parallel fan-out and a follow-up, on Conveyor's queue
//!
//! Three roles of one binary, each a process you can run as often as you like:
//!
//! - `scheduler run`: a [`queue::Recurring`] enqueues one `tick` per period (exactly one per
//!   occurrence however many schedulers run); a worker on the tick queue handles it by asking the
//!   data service and the API service **in parallel** (two `enqueue_and_wait`, joined), bounded
//!   by `--answer-timeout`, combining what came back into a [`model::Decision`], and enqueueing a
//!   delayed follow-up for the API service `--follow-up` after the decision;
//! - `scheduler data-service`: a worker answering "latest value of the series";
//! - `scheduler api-service`: a worker answering "current parameters" and receiving follow-ups.
//!
//! Timeout policy: an occurrence waits at most `--answer-timeout` for each answer. A service that
//! has not answered by then is named in the decision's `missing` and the decision is made with
//! what arrived (no data → `hold`, no price; no parameters → the default margin). The follow-up is
//! sent in every case. A request found past its deadline by a service that comes back later is
//! dropped (nobody waits for it).
//!
//! Every role appends what it did to the stream `<ns>:scheduler:events` ([`events`]), which the
//! end-to-end test reads, and logs it. Reading order: [`model`] → [`events`] → [`services`] →
//! [`decide`]; the flags are in [`config`].

pub mod config;
pub mod decide;
pub mod events;
pub mod model;
pub mod services;

use clap::{Parser, Subcommand};
use queue::{Queue, QueueConfig};
use service_kit::config::{ProcessArgs, RedisArgs};
use tokio_util::sync::CancellationToken;

pub use config::{SchedulerArgs, ServiceArgs, API, DATA, TICKS};

/// `scheduler --help`
#[derive(Parser, Clone, Debug)]
#[command(
    name = "scheduler",
    about = "Conveyor example: a recurring scheduler that asks two services in parallel, decides, and follows up"
)]
pub struct Cli {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(subcommand)]
    pub role: Role,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Role {
    /// The scheduler (run several: each occurrence is decided once)
    Run(SchedulerArgs),
    /// The data service: answers with the latest value of a series
    DataService(ServiceArgs),
    /// The API service: answers with the current parameters and receives the follow-ups
    ApiService(ServiceArgs),
}

/// Runs the role `cli` names until `shutdown`.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = cli.redis.pool()?;
    let redis = &cli.redis;
    let info = redis.connection_info()?;
    let log = events::EventLog::new(pool.clone(), &redis.queue_namespace);
    match cli.role {
        Role::Run(args) => {
            anyhow::ensure!(
                args.answer_timeout < args.period,
                "--answer-timeout ({:?}) must be shorter than --period ({:?})",
                args.answer_timeout,
                args.period
            );
            let (ticks, data, api) = (
                queue(&pool, redis, &info, TICKS),
                queue(&pool, redis, &info, DATA),
                queue(&pool, redis, &info, API),
            );
            decide::run(args, ticks, data, api, log, shutdown).await
        }
        Role::DataService(args) => {
            services::run_data(queue(&pool, redis, &info, DATA), args, log, shutdown).await
        }
        Role::ApiService(args) => {
            services::run_api(queue(&pool, redis, &info, API), args, log, shutdown).await
        }
    }
}

/// The queue `name` in this deployment's namespace.
fn queue<T>(
    pool: &queue::Pool,
    redis: &RedisArgs,
    info: &redis::ConnectionInfo,
    name: &str,
) -> Queue<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    Queue::new(pool.clone(), QueueConfig::new(&redis.queue_namespace, name))
        .with_redis_connection(info.clone())
}
