//! # A load-balanced request/reply service on Conveyor's queue
//!
//! Clients put requests on the queue `rr-requests` and wait for their replies
//! ([`queue::Queue::enqueue_and_wait`]); N `server` replicas are workers in the queue's one
//! consumer group. **The consumer group is the load balancer**: each replica pulls a request
//! when it has a free slot, so no proxy sits in front and a slow replica simply pulls less. A
//! replica killed mid-request leaves its entry pending; another replica reclaims it once its
//! lease expires and answers it. The classic design puts nginx (or another proxy) in front of N
//! HTTP servers: the proxy pushes each request to a server, must health-check them, and a request
//! on a server that dies is lost unless the client retries.
//!
//! A server-side error (division by zero, overflow) comes back as a typed [`model::CalcError`]
//! inside the reply, never as a timeout; a job the server gave up on (dead-lettered) comes back
//! as [`client::CallError::Failed`]. Reading order: [`model`] → [`server`] → [`client`] →
//! [`bench`].

pub mod bench;
pub mod client;
pub mod model;
pub mod server;

use clap::{Parser, Subcommand};
use queue::{Queue, QueueConfig};
use service_kit::config::{ProcessArgs, RedisArgs};
use tokio_util::sync::CancellationToken;

use crate::model::Request;

/// The queue requests travel on.
pub const REQUESTS: &str = "rr-requests";

/// `request-reply --help`
#[derive(Parser, Clone, Debug)]
#[command(
    name = "request-reply",
    about = "Conveyor example: request/reply with N server replicas load-balanced by the consumer group"
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
    /// A server replica (run several)
    Server(server::ServerArgs),
    /// Send requests, wait for every reply, print a summary
    Client(client::ClientArgs),
    /// Latency at low load (one request at a time) beside a bare Redis round trip
    Bench(bench::BenchArgs),
}

/// Runs the role `cli` names until it is done or `shutdown`.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<()> {
    let queue = requests_queue(&cli.redis)?;
    match cli.role {
        Role::Server(args) => server::run(queue, args, shutdown).await,
        Role::Client(args) => client::run_cli(queue, args, shutdown).await,
        Role::Bench(args) => bench::run(queue, &cli.redis, args, shutdown).await,
    }
}

/// The requests queue of this deployment's namespace.
pub fn requests_queue(redis: &RedisArgs) -> anyhow::Result<Queue<Request>> {
    let config = QueueConfig::new(&redis.queue_namespace, REQUESTS);
    Ok(Queue::new(redis.pool()?, config).with_redis_connection(redis.connection_info()?))
}
