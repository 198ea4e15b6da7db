//! Paced mode: RATE sends per wall-clock second, spread evenly over its first WINDOW_MS, with a
//! one-line summary per second. The schedule runs on a dedicated thread ([`Clock`]) and each send
//! in its own task, so neither a busy runtime nor a slow or retried request delays a slot; the
//! run ends after the last send has finished (or given up).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::packets::{Generator, Planned};
use crate::send::{Sender, Sent};
use bytes::Bytes;
use hdrhistogram::Histogram;

struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    /// Latencies (µs) completed since the last per-second line.
    window: Mutex<Vec<u64>>,
    /// Every latency (µs), for the final line: a histogram, so memory stays flat however long
    /// the producer runs.
    all: Mutex<Histogram<u64>>,
}

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

/// Sends until the limit is reached or `shutdown` fires.
pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    let sender = Sender::new(
        Duration::from_millis(config.timeout_ms),
        config.max_retries,
        config.rate as usize,
        config.authorization()?,
        shutdown.clone(),
    )?;
    let url = Arc::new(reqwest::Url::parse(&config.messages_url())?);
    let counters = Arc::new(Counters {
        sent: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        window: Mutex::new(Vec::new()),
        all: Mutex::new(crate::bench::histogram()?),
    });
    let generator = Generator::new(
        &config.producer,
        config.start,
        config.limit(),
        config.resources,
        config.max_words,
    );
    let ticker = tokio::spawn(report_every_second(
        counters.clone(),
        shutdown.child_token(),
    ));
    let stop_ticker = ticker.abort_handle();
    let mut tasks = JoinSet::new();
    let (slots, mut due) = tokio::sync::mpsc::unbounded_channel();
    let clock = Clock {
        rate: config.rate,
        window: Duration::from_millis(config.window_ms),
        shutdown: shutdown.clone(),
    };
    let clock = std::thread::Builder::new()
        .name("producer-clock".into())
        .spawn(move || clock.run(generator, slots))?;
    while let Some((packet, sent_at)) = due.recv().await {
        let (sender, url, counters) = (sender.clone(), url.clone(), counters.clone());
        counters.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let body = Bytes::from(packet.render_at(sent_at)); // kept across retries
            let result = sender.post(&url, || body.clone()).await;
            record(&counters, packet.number, result);
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = clock.join();
    while tasks.join_next().await.is_some() {}
    stop_ticker.abort();
    let all = counters
        .all
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(Summary {
        sent: counters.sent.load(Ordering::Relaxed),
        ok: counters.ok.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        retries: counters.retries.load(Ordering::Relaxed),
        latency: Some(all),
        elapsed: Duration::ZERO,
    })
}

/// The schedule, kept on its own OS thread so a busy async runtime cannot make sends late: it
/// sleeps to each slot (the last millisecond spun), stamps `sent_at` and hands the packet over.
struct Clock {
    rate: u32,
    window: Duration,
    shutdown: CancellationToken,
}

type Slot = (Planned, String);

impl Clock {
    fn run(self, mut generator: Generator, slots: UnboundedSender<Slot>) {
        let mut second = next_whole_second(SystemTime::now());
        loop {
            for i in 0..self.rate {
                let Some(packet) = generator.next() else {
                    return;
                };
                // Evenly spaced with one spacing left free at the end of the window (for the
                // defaults: ms 0, 4.5, 9 … 40.5): a slot the OS schedules a few tens of ms late
                // still leaves within the design's first 100 ms.
                let at = second + self.window * i / (self.rate + 1);
                if !self.wait_until(at) {
                    return;
                }
                let sent_at = crate::packets::now_rfc3339();
                let late = SystemTime::now().duration_since(at).unwrap_or_default();
                if late > Duration::from_millis(20) {
                    tracing::warn!(
                        number = packet.number,
                        late_ms = late.as_millis() as u64,
                        "send slot missed"
                    );
                }
                if slots.send((packet, sent_at)).is_err() {
                    return;
                }
            }
            second += Duration::from_secs(1);
        }
    }

    /// Sleeps until the wall clock reads `at`; false if shutdown came first.
    fn wait_until(&self, at: SystemTime) -> bool {
        loop {
            if self.shutdown.is_cancelled() {
                return false;
            }
            let Ok(left) = at.duration_since(SystemTime::now()) else {
                return true;
            };
            if left > Duration::from_millis(2) {
                std::thread::sleep(
                    (left - Duration::from_millis(1)).min(Duration::from_millis(50)),
                );
            } else {
                std::thread::yield_now();
            }
        }
    }
}

fn record(counters: &Counters, number: u64, result: Sent) {
    match result {
        Sent::Ok { latency, retries } => {
            counters.ok.fetch_add(1, Ordering::Relaxed);
            counters
                .retries
                .fetch_add(u64::from(retries), Ordering::Relaxed);
            let us = latency.as_micros() as u64;
            counters
                .window
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(us);
            counters
                .all
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .saturating_record(us.max(1));
        }
        Sent::Failed {
            status,
            error,
            retries,
        } => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            counters
                .retries
                .fetch_add(u64::from(retries), Ordering::Relaxed);
            tracing::warn!(number, ?status, retries, %error, "message not accepted");
        }
        Sent::Stopped { error, retries } => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            counters
                .retries
                .fetch_add(u64::from(retries), Ordering::Relaxed);
            tracing::warn!(number, retries, %error, "stopped while waiting to retry; message not known to be accepted");
        }
    }
}

async fn report_every_second(counters: Arc<Counters>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut sent0, mut ok0, mut err0) = (0, 0, 0);
    let mut t = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        t += 1;
        let sent = counters.sent.load(Ordering::Relaxed);
        let ok = counters.ok.load(Ordering::Relaxed);
        let errors = counters.errors.load(Ordering::Relaxed);
        let mut window =
            std::mem::take(&mut *counters.window.lock().unwrap_or_else(|e| e.into_inner()));
        let p50 = percentile_ms(&mut window, 0.5)
            .map_or_else(|| "-".to_string(), |ms| format!("{ms:.1}"));
        println!(
            "t={t}s sent={} ok={} errors={} p50_ms={p50}",
            sent - sent0,
            ok - ok0,
            errors - err0
        );
        (sent0, ok0, err0) = (sent, ok, errors);
    }
}

/// The start of the next wall-clock second after `now`.
fn next_whole_second(now: SystemTime) -> SystemTime {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_secs(since.as_secs() + 1)
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
    fn next_second_is_a_whole_second_in_the_future() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(
            next_whole_second(now),
            UNIX_EPOCH + Duration::from_secs(1_700_000_001)
        );
        let exact = UNIX_EPOCH + Duration::from_secs(5);
        assert_eq!(
            next_whole_second(exact),
            UNIX_EPOCH + Duration::from_secs(6)
        );
    }

    #[test]
    fn percentile_picks_the_ranked_value() {
        let mut v = vec![5000, 1000, 3000, 2000, 4000];
        assert_eq!(percentile_ms(&mut v, 0.5), Some(3.0));
        assert_eq!(percentile_ms(&mut v, 1.0), Some(5.0));
        assert_eq!(percentile_ms(&mut [], 0.5), None);
    }
}
