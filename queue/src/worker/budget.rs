//! The worker's byte budget: how many bytes of entries it holds at once, over all its batches
//! ([`WorkerConfig::max_inflight_bytes`](crate::WorkerConfig::max_inflight_bytes)). A batch
//! holds several copies of what it read (the reply, the decoded payload, the handler's output,
//! its store request), so batches of large entries could hold tens of MB: with 60 KB entries, a
//! worker of 4 batches of 500 jobs held over 80 MB (`tests/tests/memory_bounds.rs`).
//!
//! Redis cannot bound a read by size, only by count, so each read's count comes from an
//! estimate of the entry size: before a read, [`Budget::reserve`] waits for room for one entry
//! and lets the read ask for as many as the free budget holds; after it, [`Budget::fit`] learns
//! the sizes read, returns what the reservation held too much or waits (before the batch runs)
//! until what it read fits. The estimate starts high (64 KiB) and follows larger entries at
//! once, smaller ones by halves.
//!
//! Only the read loop waits on the budget, one wait at a time, so no two half-made
//! reservations can wait on each other. The reclaimer takes what is free without waiting
//! ([`Budget::free`], at least one entry per claim, possibly over the budget by that much): a
//! dead worker's jobs are taken over even while this worker's reads fill the budget.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The estimate of an entry's size before anything was read.
const FIRST_ESTIMATE: u32 = 64 * 1024;

pub(crate) struct Budget {
    bytes: Arc<Semaphore>,
    total: u32,
    /// Estimated bytes of one entry.
    estimate: AtomicU32,
}

/// Room reserved for one read of at most [`Reservation::count`] entries.
pub(crate) struct Reservation {
    pub count: usize,
    held: Option<OwnedSemaphorePermit>,
    /// Whether [`Budget::fit`] may wait for more room (the read loop's reservations only).
    wait: bool,
}

impl Budget {
    /// A budget of `total` bytes (at least 1, at most `u32::MAX`).
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, u32::MAX as usize) as u32;
        Budget {
            bytes: Arc::new(Semaphore::new(total as usize)),
            total,
            estimate: AtomicU32::new(FIRST_ESTIMATE.min(total)),
        }
    }

    /// Waits for room for one entry of the estimated size; the reservation's count (1 to
    /// `max`) is how many such entries the free budget holds. For the read loop only.
    pub async fn reserve(&self, max: usize) -> Reservation {
        let estimate = self.estimate();
        // The semaphore is never closed, so acquiring fails never.
        let held = self.bytes.clone().acquire_many_owned(estimate).await.ok();
        self.more(held, estimate, max, true)
    }

    /// Room for what is free now, without waiting: at least one entry even when nothing is.
    pub fn free(&self, max: usize) -> Reservation {
        let estimate = self.estimate();
        let held = self.bytes.clone().try_acquire_many_owned(estimate).ok();
        self.more(held, estimate, max, false)
    }

    fn estimate(&self) -> u32 {
        self.estimate.load(Ordering::Relaxed).clamp(1, self.total)
    }

    /// `held` plus what else is free, up to `max` entries of `estimate` bytes in all.
    fn more(
        &self,
        mut held: Option<OwnedSemaphorePermit>,
        estimate: u32,
        max: usize,
        wait: bool,
    ) -> Reservation {
        let room = self.bytes.available_permits() / estimate as usize;
        let more = max.saturating_sub(1).min(room);
        if more > 0 {
            // `more × estimate` ≤ the free budget ≤ `total`, which fits a u32.
            if let Ok(extra) = self
                .bytes
                .clone()
                .try_acquire_many_owned(more as u32 * estimate)
            {
                merge(&mut held, extra);
            }
        }
        let count = held.as_ref().map_or(0, |p| p.num_permits()) / estimate as usize;
        Reservation {
            count: count.clamp(1, max.max(1)),
            held,
            wait,
        }
    }

    /// After a read of `entries` entries of `bytes` bytes in all: learns their size, and
    /// returns the part of the budget they hold (at most all of it). When they need more than
    /// was reserved, a read loop's reservation waits for batches in flight to return room; a
    /// reclaimer's takes what is free.
    pub async fn fit(
        &self,
        mut reservation: Reservation,
        bytes: usize,
        entries: usize,
    ) -> Option<OwnedSemaphorePermit> {
        if let Some(each) = bytes.checked_div(entries) {
            let seen = each.clamp(1, self.total as usize) as u32;
            let old = self.estimate.load(Ordering::Relaxed);
            let next = match seen >= old {
                true => seen,
                false => ((old as u64 + seen as u64) / 2) as u32,
            };
            self.estimate.store(next, Ordering::Relaxed);
        }
        let want = bytes.min(self.total as usize);
        let held = reservation.held.as_ref().map_or(0, |p| p.num_permits());
        if want < held {
            // Dropping the split-off part returns it.
            drop(reservation.held.as_mut().and_then(|p| p.split(held - want)));
        } else if want > held {
            let short = want - held;
            let extra = match reservation.wait {
                true => self
                    .bytes
                    .clone()
                    .acquire_many_owned(short as u32)
                    .await
                    .ok(),
                false => {
                    let free = short.min(self.bytes.available_permits()) as u32;
                    self.bytes.clone().try_acquire_many_owned(free).ok()
                }
            };
            if let Some(extra) = extra {
                merge(&mut reservation.held, extra);
            }
        }
        reservation.held.filter(|p| p.num_permits() > 0)
    }
}

fn merge(held: &mut Option<OwnedSemaphorePermit>, extra: OwnedSemaphorePermit) {
    match held {
        Some(p) => p.merge(extra),
        None => *held = Some(extra),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_read_assumes_large_entries_and_learns_their_size() {
        let budget = Budget::new(1 << 20);
        let r = budget.reserve(500).await;
        assert_eq!(r.count, 16, "1 MiB / 64 KiB");
        // 16 entries of 100 bytes: the reservation shrinks to what they hold.
        let held = budget.fit(r, 1600, 16).await.unwrap();
        assert_eq!(held.num_permits(), 1600);
        assert_eq!(budget.estimate(), 32 * 1024 + 50);
        drop(held);
        assert_eq!(budget.bytes.available_permits(), 1 << 20);
        for _ in 0..20 {
            let r = budget.reserve(500).await;
            drop(budget.fit(r, 100 * 10, 10).await);
        }
        assert_eq!(budget.estimate(), 100);
        assert_eq!(
            budget.reserve(500).await.count,
            500,
            "capped at the batch size"
        );
    }

    #[tokio::test]
    async fn larger_entries_raise_the_estimate_at_once_and_wait_for_room() {
        let budget = Arc::new(Budget::new(1000));
        let r = budget.reserve(100).await;
        assert_eq!(r.count, 1, "the estimate is capped at the budget");
        let first = budget.fit(r, 600, 1).await.unwrap();
        assert_eq!(budget.estimate(), 800, "halfway from 1000 down to 600");
        // Room for one more entry of 800 bytes needs the first batch's bytes back.
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let r = budget.reserve(100).await;
                let count = r.count;
                (count, budget.fit(r, 900, 1).await.map(|p| p.num_permits()))
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "it waits while 600 of 1000 bytes are held"
        );
        drop(first);
        let (count, held) = waiting.await.unwrap();
        assert_eq!((count, held), (1, Some(900)));
    }

    #[tokio::test]
    async fn the_reclaimer_takes_one_entry_over_a_full_budget_without_waiting() {
        let budget = Budget::new(1000);
        let r = budget.reserve(10).await;
        let full = budget.fit(r, 1000, 1).await.unwrap();
        let r = budget.free(10);
        assert_eq!(r.count, 1, "one entry, although nothing is free");
        assert!(
            budget.fit(r, 1000, 1).await.is_none(),
            "it holds nothing of the budget"
        );
        drop(full);
        let r = budget.free(10);
        assert_eq!(r.count, 1);
        assert_eq!(budget.fit(r, 300, 1).await.unwrap().num_permits(), 300);
    }

    #[tokio::test]
    async fn a_read_larger_than_the_budget_holds_all_of_it() {
        let budget = Budget::new(1000);
        let r = budget.reserve(10).await;
        let held = budget.fit(r, 5000, 2).await.unwrap();
        assert_eq!(held.num_permits(), 1000);
        assert_eq!(budget.estimate(), 1000);
    }
}
