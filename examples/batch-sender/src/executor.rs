//! The executor: a worker whose batch size and linger come from its command line. It executes
//! each batch at once (a simulated `--exec-ms`), answers every order of the batch with its
//! [`Execution`], and fails the whole batch when one of its orders cannot run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use queue::{Handler, Job, Outcome, Queue, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::model::{Execution, Order, FAILING_ITEM};

#[derive(Args, Clone, Debug)]
pub struct ExecutorArgs {
    /// Orders executed together
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    /// How long a short batch waits for more orders before it runs anyway, in ms
    #[arg(long, default_value_t = 20)]
    pub linger_ms: u64,
    /// Time one batch takes to execute, in ms (simulated)
    #[arg(long, default_value_t = 5)]
    pub exec_ms: u64,
    /// Batches executed at once
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Name in answers and logs (default: host-pid-random)
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs one executor until `shutdown`.
pub async fn run(
    queue: Queue<Order>,
    args: ExecutorArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_size >= 1, "--batch-size must be at least 1");
    let mut config = WorkerConfig {
        batch_size: args.batch_size,
        batch_linger: Duration::from_millis(args.linger_ms),
        concurrency: args.concurrency,
        ..WorkerConfig::default()
    };
    if let Some(name) = &args.name {
        config.consumer = name.clone();
    }
    let executor = Executor {
        name: config.consumer.clone(),
        batch_size: args.batch_size,
        exec: Duration::from_millis(args.exec_ms),
    };
    tracing::info!(name = %executor.name, batch_size = args.batch_size, linger_ms = args.linger_ms, "executor ready");
    Worker::new(queue, executor, config).run(shutdown).await?;
    Ok(())
}

struct Executor {
    name: String,
    batch_size: usize,
    exec: Duration,
}

impl Handler<Order> for Executor {
    async fn handle(&self, jobs: Vec<Job<Order>>) -> Vec<Outcome> {
        let size = jobs.len();
        let batch_id = uuid::Uuid::now_v7().simple().to_string();
        let failing = jobs.iter().find(|j| j.payload.item == FAILING_ITEM);
        let executions: Vec<Execution> = match failing {
            Some(bad) => {
                let error = format!(
                    "order {} cannot be executed; the batch was rejected",
                    bad.payload.order_id
                );
                tracing::warn!(batch_id, size, %error, "batch failed");
                jobs.iter()
                    .map(|j| Execution::BatchFailed {
                        order_id: j.payload.order_id.clone(),
                        batch_id: batch_id.clone(),
                        batch_size: size,
                        error: error.clone(),
                    })
                    .collect()
            }
            None => {
                let now = SystemTime::now();
                let executed_at_ms = now
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let batch_waited_ms = jobs
                    .iter()
                    .filter_map(|j| now.duration_since(j.enqueued_at).ok())
                    .max()
                    .map_or(0, |d| d.as_millis() as u64);
                tokio::time::sleep(self.exec).await;
                tracing::info!(
                    batch_id,
                    size,
                    linger_flushed = size < self.batch_size,
                    batch_waited_ms,
                    "batch executed"
                );
                jobs.iter()
                    .map(|j| Execution::Executed {
                        order_id: j.payload.order_id.clone(),
                        batch_id: batch_id.clone(),
                        batch_size: size,
                        executor: self.name.clone(),
                        executed_at_ms,
                        batch_waited_ms,
                    })
                    .collect()
            }
        };
        executions
            .into_iter()
            .map(|e| match serde_json::to_value(&e) {
                Ok(v) => Outcome::Done(v),
                Err(e) => Outcome::Dead {
                    reason: format!("encoding the answer: {e}"),
                },
            })
            .collect()
    }
}
