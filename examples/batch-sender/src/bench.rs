//! `bench`: orders sent to the front ends (round robin) as fast as they answer, with a fixed
//! number in flight; prints throughput, latency percentiles (HDR histogram) and answers by status.

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Args;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Base URL of a front end (repeat for several)
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// Orders to send
    #[arg(long, default_value_t = 10_000)]
    pub orders: u64,
    /// Orders in flight at once
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

pub async fn run(args: BenchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let results: Vec<(u16, u64)> = futures::stream::iter(0..args.orders)
        .take_while(|_| std::future::ready(!shutdown.is_cancelled()))
        .map(|i| {
            let http = http.clone();
            let url = format!("{}/orders", args.urls[i as usize % args.urls.len()]);
            let order = serde_json::json!({
                "order_id": format!("bench-{}-{i}", &run_id[..8]),
                "item": "widget",
                "quantity": 1 + i % 10,
            });
            async move {
                let start = Instant::now();
                let status = match http.post(url).json(&order).send().await {
                    Ok(resp) => resp.status().as_u16(),
                    Err(_) => 0,
                };
                (status, start.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut hist = Histogram::<u64>::new(3)?;
    let mut statuses = BTreeMap::<u16, u64>::new();
    for (status, us) in &results {
        *statuses.entry(*status).or_default() += 1;
        if *status == 200 {
            hist.record(*us)?;
        }
    }
    let ok = statuses.get(&200).copied().unwrap_or(0);
    println!(
        "batch sender: {ok} orders executed in {secs:.2} s = {:.0} orders/s; latency p50={} µs p99={} µs max={} µs; answers by status {statuses:?}",
        ok as f64 / secs,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max()
    );
    Ok(())
}
