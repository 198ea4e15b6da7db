//! The producer: a load generator for the consumer API. By default it sends 10 POSTs spread over
//! the first 100 ms of every wall-clock second ([`paced`]); `--bench` sends as fast as the API takes
//! ([`bench`]). It talks to Conveyor only over HTTP and never touches Redis or Elasticsearch.

pub mod bench;
pub mod config;
pub mod paced;
pub mod packets;
pub mod send;

use std::time::Duration;

pub use config::Config;
use tokio_util::sync::CancellationToken;

/// Totals of a paced run.
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub retries: u64,
    /// Latencies (µs) of the accepted sends; `None` when the run recorded none.
    pub latency: Option<hdrhistogram::Histogram<u64>>,
    pub elapsed: Duration,
}

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

/// The `q` quantile (0..=1) of latencies in µs, in milliseconds; `None` when empty.
pub fn percentile_ms(latencies_us: &mut [u64], q: f64) -> Option<f64> {
    if latencies_us.is_empty() {
        return None;
    }
    latencies_us.sort_unstable();
    let rank = ((latencies_us.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
    Some(latencies_us[rank] as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_picks_the_ranked_value() {
        let mut v = vec![5000, 1000, 3000, 2000, 4000];
        assert_eq!(percentile_ms(&mut v, 0.5), Some(3.0));
        assert_eq!(percentile_ms(&mut v, 1.0), Some(5.0));
        assert_eq!(percentile_ms(&mut [], 0.5), None);
    }
}
