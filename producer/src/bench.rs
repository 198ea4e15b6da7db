//! `--bench`: sends as fast as the API takes with CONCURRENCY requests in flight (single POSTs, or
//! `--batch N` packets per POST /messages/batch), shows a progress bar, and returns throughput and
//! latency percentiles (hdrhistogram). Measures; asserts nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::packets::{render_batch, Generator, Planned};
use crate::send::{Sender, Sent};

/// What a bench run measured.
#[derive(Debug)]
pub struct BenchReport {
    pub requests: u64,
    pub packets: u64,
    pub errors: u64,
    pub retries: u64,
    /// Requests given up at shutdown while waiting to retry (their packets' fate unknown).
    pub stopped: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl BenchReport {
    pub fn print(&self, mode: &str, concurrency: u32) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1000.0;
        println!("bench: {mode}, concurrency {concurrency}");
        println!(
            "  requests  {:>10} in {secs:.2} s  -> {:>10.0} req/s",
            self.requests,
            self.requests as f64 / secs
        );
        println!(
            "  packets   {:>10}               -> {:>10.0} packets/s",
            self.packets,
            self.packets as f64 / secs
        );
        println!("  errors    {:>10} (retries {})", self.errors, self.retries);
        if self.stopped > 0 {
            println!(
                "  stopped   {:>10} requests unanswered at shutdown (not counted as sent)",
                self.stopped
            );
        }
        println!(
            "  latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            q(0.5),
            q(0.9),
            q(0.99),
            self.latency.max() as f64 / 1000.0
        );
        println!(
            "BENCH requests={} packets={} errors={} stopped={} secs={secs:.3} req_per_s={:.0} packets_per_s={:.0} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3}",
            self.requests,
            self.packets,
            self.errors,
            self.stopped,
            self.requests as f64 / secs,
            self.packets as f64 / secs,
            q(0.5),
            q(0.9),
            q(0.99),
            self.latency.max() as f64 / 1000.0
        );
    }
}

/// A latency histogram in µs, 1 µs to 10 min, 3 significant digits.
pub(crate) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<BenchReport> {
    let total = config.limit().unwrap_or(100_000);
    let per_request = config.batch.max(1) as usize;
    let url = Arc::new(reqwest::Url::parse(&if config.batch == 0 {
        config.messages_url()
    } else {
        config.batch_url()
    })?);
    let batched = config.batch > 0;
    let sender = Sender::new(
        Duration::from_millis(config.timeout_ms),
        config.max_retries,
        config.concurrency as usize,
        config.authorization()?,
        shutdown.clone(),
    )?;
    let generator = Arc::new(Mutex::new(Generator::new(
        &config.producer,
        config.start,
        Some(total),
        config.resources,
        config.max_words,
    )));
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} packets {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    let errors = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..config.concurrency {
        let (generator, sender, url, bar) =
            (generator.clone(), sender.clone(), url.clone(), bar.clone());
        let (errors, retries, stopped, shutdown) = (
            errors.clone(),
            retries.clone(),
            stopped.clone(),
            shutdown.clone(),
        );
        let mut hist = histogram()?;
        tasks.spawn(async move {
            let mut requests = 0u64;
            let mut packets = 0u64;
            while !shutdown.is_cancelled() {
                let chunk: Vec<Planned> = {
                    let mut g = generator.lock().unwrap_or_else(|e| e.into_inner());
                    g.by_ref().take(per_request).collect()
                };
                if chunk.is_empty() {
                    break;
                }
                let result = if batched {
                    sender
                        .post(&url, || Bytes::from(render_batch(&chunk)))
                        .await
                } else {
                    let body = Bytes::from(chunk[0].render());
                    sender.post(&url, || body.clone()).await
                };
                requests += 1;
                match result {
                    Sent::Ok {
                        latency,
                        retries: r,
                    } => {
                        packets += chunk.len() as u64;
                        retries.fetch_add(u64::from(r), Ordering::Relaxed);
                        let _ = hist.record((latency.as_micros() as u64).max(1));
                    }
                    Sent::Failed {
                        error, retries: r, ..
                    } => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        retries.fetch_add(u64::from(r), Ordering::Relaxed);
                        tracing::warn!(%error, first = chunk[0].number, "bench request failed");
                    }
                    Sent::Stopped { error, retries: r } => {
                        stopped.fetch_add(1, Ordering::Relaxed);
                        retries.fetch_add(u64::from(r), Ordering::Relaxed);
                        tracing::info!(%error, first = chunk[0].number, "stopped while waiting to retry");
                        break;
                    }
                }
                bar.inc(chunk.len() as u64);
            }
            (requests, packets, hist)
        });
    }
    let mut report = BenchReport {
        requests: 0,
        packets: 0,
        errors: 0,
        retries: 0,
        stopped: 0,
        elapsed: Duration::ZERO,
        latency: histogram()?,
    };
    while let Some(joined) = tasks.join_next().await {
        let (requests, packets, hist) = joined?;
        report.requests += requests;
        report.packets += packets;
        report.latency.add(&hist)?;
    }
    report.elapsed = started.elapsed();
    report.errors = errors.load(Ordering::Relaxed);
    report.retries = retries.load(Ordering::Relaxed);
    report.stopped = stopped.load(Ordering::Relaxed);
    bar.finish_and_clear();
    Ok(report)
}
