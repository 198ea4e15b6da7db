//! Message retention: a background task that, soon after start-up and then roughly hourly,
//! deletes the daily message indices older than `MESSAGE_RETENTION_DAYS`
//! ([`pipeline::store::Store::delete_expired`] decides which, by exact name). Every replica runs
//! it; that is safe because a delete names one index and an index already gone is not an
//! error, so two replicas sweeping at once delete each index once between them. Each deletion
//! is logged and counted in `conveyor_retention_indices_deleted_total`.
//!
//! It never deletes anything but the store's own daily indices and legacy copy, and a failed
//! sweep (Elasticsearch down) is logged and tried again at the next tick.

use std::time::Duration;

use chrono::Utc;
use pipeline::store::Store;
use tokio_util::sync::CancellationToken;

/// Time between two sweeps of one process.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Time from start-up to the first sweep (the message worker starts first).
const FIRST_SWEEP_AFTER: Duration = Duration::from_secs(5);

/// Sweeps until `shutdown` is cancelled.
pub async fn run(store: Store, keep_days: u32, shutdown: CancellationToken) {
    let mut wait = FIRST_SWEEP_AFTER;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        sweep(&store, keep_days).await;
        wait = spread(SWEEP_EVERY);
    }
}

/// One sweep: deletes the expired indices, logs and counts each; returns how many this process
/// deleted.
pub async fn sweep(store: &Store, keep_days: u32) -> usize {
    let today = Utc::now().date_naive();
    match store.delete_expired(keep_days, today).await {
        Ok(deleted) => {
            for index in &deleted {
                tracing::info!(%index, keep_days, "retention: deleted an expired message index");
            }
            metrics::counter!("conveyor_retention_indices_deleted_total")
                .increment(deleted.len() as u64);
            deleted.len()
        }
        Err(e) => {
            tracing::warn!(error = %e, "retention sweep failed; trying again at the next one");
            0
        }
    }
}

/// `every` give or take up to a tenth, so replicas started together do not sweep in step.
fn spread(every: Duration) -> Duration {
    let tenth = every.as_millis() as u64 / 10;
    let jitter = u64::from(clock_noise()) % (2 * tenth + 1);
    every - Duration::from_millis(tenth) + Duration::from_millis(jitter)
}

/// A little noise from the clock (no RNG dependency needed for spreading a timer).
fn clock_noise() -> u32 {
    Utc::now().timestamp_subsec_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_are_spread_around_the_hour() {
        for _ in 0..100 {
            let d = spread(SWEEP_EVERY);
            assert!(
                d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960),
                "{d:?}"
            );
        }
    }
}
