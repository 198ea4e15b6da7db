//! `bench`: request/reply latency at low load — one request at a time — beside a bare Redis
//! round trip (PING) measured in the same run, interleaved, both in HDR histograms.

use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use queue::Queue;
use service_kit::config::RedisArgs;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::model::Request;

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Measured round trips of each kind
    #[arg(long, default_value_t = 5_000)]
    pub requests: u64,
    /// Unmeasured round trips first
    #[arg(long, default_value_t = 500)]
    pub warmup: u64,
}

/// Runs the bench and prints one line per measurement.
pub async fn run(
    queue: Queue<Request>,
    redis: &RedisArgs,
    args: BenchArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // A pool of its own for the PING connection, on the same Redis as the queue.
    let pool = redis.pool()?;
    let mut conn = pool.get().await?;
    let client = Client::new(queue, Duration::from_secs(5));
    let mut ping = Histogram::<u64>::new(3)?;
    let mut rr = Histogram::<u64>::new(3)?;
    for i in 0..args.warmup + args.requests {
        if shutdown.is_cancelled() {
            break;
        }
        let start = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        let ping_us = start.elapsed().as_micros() as u64;
        let request = Request { id: i, a: 84, b: 2 };
        let start = Instant::now();
        let reply = client.call(&request).await?;
        let rr_us = start.elapsed().as_micros() as u64;
        anyhow::ensure!(reply.result == request.evaluate(), "wrong reply {reply:?}");
        if i >= args.warmup {
            ping.record(ping_us)?;
            rr.record(rr_us)?;
        }
    }
    let line = |name: &str, h: &Histogram<u64>| {
        println!(
            "{name:<36} n={:<6} p50={:>6} µs  p99={:>6} µs  max={:>6} µs",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        )
    };
    line("bare Redis round trip (PING)", &ping);
    line("request/reply (enqueue_and_wait)", &rr);
    Ok(())
}
