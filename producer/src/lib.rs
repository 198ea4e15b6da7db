//! The producer: a load generator for the consumer API. By default it sends 10 POSTs spread over
//! the first 100 ms of every wall-clock second ([`paced`]); `--bench` sends as fast as the API takes
//! ([`bench`]). It talks to Conveyor only over HTTP and never touches Redis or Elasticsearch.

pub mod bench;
pub mod config;
pub mod paced;
pub mod packets;
pub mod send;

pub use config::Config;
pub use paced::{percentile_ms, Summary};
use tokio_util::sync::CancellationToken;

/// Runs the mode `config` selects until done or `shutdown`, printing its report on stdout.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    if config.bench {
        let mode = if config.batch == 0 {
            "POST /messages".to_string()
        } else {
            format!("POST /messages/batch x{}", config.batch)
        };
        let report = bench::run(&config, shutdown).await?;
        report.print(&mode, config.concurrency);
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut summary = paced::run(&config, shutdown).await?;
    summary.elapsed = started.elapsed();
    let ms = |q: f64| match &summary.latency {
        Some(h) if !h.is_empty() => format!("{:.1}", h.value_at_quantile(q) as f64 / 1000.0),
        _ => "-".to_string(),
    };
    let (p50, p99) = (ms(0.5), ms(0.99));
    println!(
        "total sent={} ok={} errors={} retries={} p50_ms={p50} p99_ms={p99} secs={:.1}",
        summary.sent,
        summary.ok,
        summary.errors,
        summary.retries,
        summary.elapsed.as_secs_f64()
    );
    Ok(())
}
