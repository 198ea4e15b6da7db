//! [`Backoff`]: the one exponential backoff for "that failed, wait and try again" loops —
//! reconnecting to Redis, retrying a Redis command, waiting for Elasticsearch. It only computes
//! and sleeps delays; it never decides whether to retry, and it has no jitter. The retry delay of
//! a failed *job* is [`retry_delay`] (exponential bound, full jitter).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::QueueConfig;

/// The delay before retry `attempt` (1-based) of a failed job: drawn uniformly from
/// `[0, min(backoff_max, backoff_base × 2^(attempt−1))]` — "full jitter", so jobs that failed
/// together (a dependency outage) do not come back together, not even once the bound reaches
/// `backoff_max`.
pub fn retry_delay(cfg: &QueueConfig, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let bound = cfg
        .backoff_base
        .saturating_mul(1u32 << exp)
        .min(cfg.backoff_max);
    bound.mul_f64(rand::random::<f64>())
}

/// Exponential backoff between attempts of a retry loop: the first wait is `first`, each later
/// one doubles, up to `max`; [`Backoff::reset`] after a success starts over at `first`.
///
/// ```
/// use std::time::Duration;
/// use queue::{Backoff, CancellationToken};
///
/// # async fn connect() -> Result<(), ()> { Ok(()) }
/// # async fn demo(stop: CancellationToken) {
/// let mut backoff = Backoff::default(); // 100 ms, 200 ms, 400 ms, … 5 s, 5 s, …
/// loop {
///     match connect().await {
///         Ok(()) => break,
///         // Sleeps 100 ms the first time, then doubles; returns false once `stop` fires.
///         Err(()) => if !backoff.wait(&stop).await { return },
///     }
/// }
/// backoff.reset(); // the next failure waits 100 ms again
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Waits `first`, then twice as long each time, never longer than `max` (`first` above
    /// `max` is lowered to it; a zero `first` never waits).
    pub fn new(first: Duration, max: Duration) -> Self {
        let first = first.min(max);
        Backoff {
            first,
            max,
            current: first,
        }
    }

    /// Starts over: the next delay is `first` again. Call it after a success.
    pub fn reset(&mut self) {
        self.current = self.first;
    }

    /// The delay to wait now; the next call returns twice as much, capped at `max`. For a loop
    /// that sleeps on its own terms (no cancellation token to race).
    pub fn next_delay(&mut self) -> Duration {
        let now = self.current;
        self.current = now.checked_mul(2).unwrap_or(self.max).min(self.max);
        now
    }

    /// Sleeps [`Backoff::next_delay`], or less if `stop` is cancelled first: true after a full
    /// sleep (try again), false if stopped (give up). An already cancelled `stop` returns false
    /// at once.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            biased;
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// 100 ms doubling to 5 s: for reconnecting to a local service such as Redis.
impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_stay_under_a_growing_capped_bound() {
        let mut cfg = QueueConfig::new("ns", "q");
        cfg.backoff_base = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_secs(1);
        for _ in 0..100 {
            assert!(retry_delay(&cfg, 1) <= Duration::from_millis(100));
            assert!(retry_delay(&cfg, 2) <= Duration::from_millis(200));
            assert!(retry_delay(&cfg, 1000) <= Duration::from_secs(1));
        }
        let late: std::collections::HashSet<Duration> =
            (0..50).map(|_| retry_delay(&cfg, 10)).collect();
        assert!(late.len() > 10, "capped delays are spread: {late:?}");
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_and_reset_starts_over() {
        let mut b = Backoff::default();
        let got: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
        assert_eq!(b.next_delay(), 200 * MS);
    }

    #[test]
    fn odd_bounds_stay_sane() {
        let mut b = Backoff::new(50 * MS, 120 * MS);
        let got: Vec<Duration> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(got, [50 * MS, 100 * MS, 120 * MS, 120 * MS]);
        // `first` above `max` is lowered to it; no overflow near Duration::MAX.
        let mut b = Backoff::new(Duration::from_secs(9), Duration::from_secs(2));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
        let mut b = Backoff::new(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::ZERO);
        assert_eq!(b.next_delay(), Duration::ZERO);
    }

    /// Bounds a wait that must end at once; an hour-long sleep would fail the test, not hang it.
    async fn promptly(b: &mut Backoff, stop: &CancellationToken) -> bool {
        tokio::time::timeout(Duration::from_secs(30), b.wait(stop))
            .await
            .expect("wait returned promptly")
    }

    #[tokio::test]
    async fn wait_is_false_at_once_when_stopped_and_still_advances() {
        let hour = Duration::from_secs(3600);
        let mut b = Backoff::new(hour, 4 * hour);
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!promptly(&mut b, &stop).await);
        assert_eq!(
            b.next_delay(),
            2 * hour,
            "the stopped wait used up one delay"
        );
    }

    #[tokio::test]
    async fn wait_is_false_when_stopped_while_sleeping() {
        let mut b = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        let stop = CancellationToken::new();
        let canceller = stop.clone();
        tokio::spawn(async move { canceller.cancel() });
        assert!(!promptly(&mut b, &stop).await);
    }

    #[tokio::test]
    async fn wait_is_true_after_a_full_sleep() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(promptly(&mut b, &CancellationToken::new()).await);
    }
}
