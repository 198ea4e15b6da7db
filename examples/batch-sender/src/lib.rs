//! # A batch sender on Conveyor's queue
//!
//! `front` is an HTTP API (`POST /orders`): it validates an order, puts it on the queue
//! `batch-orders` and waits for its result ([`queue::Queue::enqueue_and_wait`]); `executor` is a
//! worker whose batch size (`--batch-size`) and linger (`--linger-ms`) come from its command
//! line: it takes up to N orders at once, waits at most the linger for a short batch to fill,
//! and executes the batch in one go. Each order's result is routed back to exactly the HTTP
//! request that sent it — by job id, through each front end's one result subscriber — however
//! many front ends and executors run. A batch that fails answers each of its orders with
//! 502 `batch-failed`. A slow executor makes the front ends answer 429 (`Retry-After`) instead
//! of piling up orders: each front end holds at most `--max-in-flight` orders and refuses new
//! ones while the queue's backlog is over `--backlog-limit`.
//!
//! Reading order: [`model`] → [`executor`] → [`front`] → [`bench`].

pub mod bench;
pub mod executor;
pub mod front;
pub mod model;

use clap::{Parser, Subcommand};
use queue::{Queue, QueueConfig};
use service_kit::config::{ProcessArgs, RedisArgs};
use tokio_util::sync::CancellationToken;

use crate::model::Order;

/// The queue orders travel on.
pub const ORDERS: &str = "batch-orders";

/// `batch-sender --help`
#[derive(Parser, Clone, Debug)]
#[command(
    name = "batch-sender",
    about = "Conveyor example: an HTTP front end for orders and an executor that runs them in batches"
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
    /// The HTTP front end: `POST /orders` (run several)
    Front(front::FrontArgs),
    /// The executor: runs orders in batches of --batch-size (run several)
    Executor(executor::ExecutorArgs),
    /// Sends orders to front ends as fast as they take them; prints throughput and latency
    Bench(bench::BenchArgs),
}

/// Runs the role `cli` names until it is done or `shutdown`.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<()> {
    match cli.role {
        Role::Front(args) => {
            let listener = service_kit::http::bind("--addr", args.addr).await?;
            let queue = orders_queue(&cli.redis)?;
            front::warm_pool(&queue, cli.redis.redis_pool_size.min(16)).await;
            front::run(queue, args, listener, shutdown).await
        }
        Role::Executor(args) => executor::run(orders_queue(&cli.redis)?, args, shutdown).await,
        Role::Bench(args) => bench::run(args, shutdown).await,
    }
}

/// The orders queue of this deployment's namespace.
pub fn orders_queue(redis: &RedisArgs) -> anyhow::Result<Queue<Order>> {
    let config = QueueConfig::new(&redis.queue_namespace, ORDERS);
    Ok(Queue::new(redis.pool()?, config).with_redis_connection(redis.connection_info()?))
}
