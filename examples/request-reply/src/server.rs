//! A server replica: a worker in the `rr-requests` consumer group. It takes one request per
//! batch (so every free slot pulls the next request — the load balancing), answers with a
//! [`Reply`] naming itself, and puts a typed [`CalcError`](crate::model::CalcError) in the reply
//! when the request cannot be computed.

use std::time::Duration;

use clap::Args;
use queue::{Handler, Job, Outcome, Queue, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::model::{Reply, Request};

#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// Simulated work per request, in ms (a slow replica: set it higher)
    #[arg(long, default_value_t = 0)]
    pub work_ms: u64,
    /// Requests handled at once
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// A request not answered within this time (a killed replica) is taken over by another
    /// replica, in ms
    #[arg(long, default_value_t = 2_000)]
    pub lease_ms: u64,
    /// Name in replies and logs (default: host-pid-random)
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs one replica until `shutdown`.
pub async fn run(
    queue: Queue<Request>,
    args: ServerArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut config = WorkerConfig {
        batch_size: 1,
        batch_linger: Duration::ZERO,
        concurrency: args.concurrency,
        lease: Duration::from_millis(args.lease_ms),
        ..WorkerConfig::default()
    };
    if let Some(name) = &args.name {
        config.consumer = name.clone();
    }
    let server = Server {
        name: config.consumer.clone(),
        work: Duration::from_millis(args.work_ms),
    };
    tracing::info!(name = %server.name, work_ms = args.work_ms, concurrency = args.concurrency, "server replica ready");
    Worker::new(queue, server, config).run(shutdown).await?;
    Ok(())
}

struct Server {
    name: String,
    work: Duration,
}

impl Handler<Request> for Server {
    async fn handle(&self, jobs: Vec<Job<Request>>) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !self.work.is_zero() {
                tokio::time::sleep(self.work).await;
            }
            let request = job.payload;
            let reply = Reply {
                id: request.id,
                served_by: self.name.clone(),
                result: request.evaluate(),
            };
            out.push(match serde_json::to_value(&reply) {
                Ok(v) => Outcome::Done(v),
                Err(e) => Outcome::Dead {
                    reason: format!("encoding the reply: {e}"),
                },
            });
        }
        out
    }
}
