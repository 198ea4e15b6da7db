//! Tombstones of finished resources, kept compact: instead of one key with a TTL per resource
//! (about 120 bytes plus the id each), a partition keeps one HASH per time bucket,
//! `<stream>:collate:done:<bucket>` with `id -> state` (`complete`, `delivered`, `timed_out`,
//! `too_large`), and each bucket key expires as a whole.
//!
//! A bucket is `retention / (BUCKETS - 1)` wide (at least a second) and expires
//! `width + retention` after its first write, so a state written into it lives at least
//! `retention`. A lookup reads the [`BUCKETS`] newest buckets, newest first: the newest state
//! wins (a `delivered` written after `complete`). The scripts derive the bucket keys from the
//! prefix and the current bucket number passed to them; they share the partition's hash tag.
//! No I/O here.

use std::time::Duration;

use queue::Keys;

/// Buckets a lookup reads (the current one and the ones before it that may still hold states
/// younger than the retention).
pub const BUCKETS: u64 = 8;

/// The bucket arithmetic of one retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstones {
    retention_secs: u64,
    width_secs: u64,
}

impl Tombstones {
    /// Tombstones kept for `retention` (at least a second).
    pub fn new(retention: Duration) -> Tombstones {
        let retention_secs = retention.as_secs().max(1);
        Tombstones {
            retention_secs,
            width_secs: retention_secs.div_ceil(BUCKETS - 1).max(1),
        }
    }

    /// How long a state is kept at least.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    /// Number of the bucket written at `now_ms` (unix ms).
    pub fn current(&self, now_ms: u64) -> u64 {
        now_ms / 1000 / self.width_secs
    }

    /// TTL in seconds a bucket gets at its first write.
    pub fn bucket_ttl_secs(&self) -> u64 {
        self.width_secs + self.retention_secs
    }

    /// Key prefix of partition `p`'s buckets (`<prefix><bucket>` is a bucket's key).
    pub fn prefix(keys: &Keys, p: u16) -> String {
        keys.in_partition(p, "collate:done:")
    }

    /// Keys of the buckets a lookup at `now_ms` reads, newest first.
    pub fn lookup(&self, keys: &Keys, p: u16, now_ms: u64) -> Vec<String> {
        let prefix = Tombstones::prefix(keys, p);
        let current = self.current(now_ms);
        (0..BUCKETS.min(current + 1))
            .map(|back| format!("{prefix}{}", current - back))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_younger_than_the_retention_is_in_a_looked_up_bucket() {
        let keys = Keys::new("ns", "webhooks", 1);
        for retention in [1u64, 7, 60, 3600, 7 * 24 * 3600, 7 * 24 * 3600 + 5] {
            let t = Tombstones::new(Duration::from_secs(retention));
            for written_s in [0u64, 1, 999, 123_456, 1_700_000_000] {
                let written = written_s * 1000 + 999;
                let bucket = format!("ns:{{webhooks:0}}:collate:done:{}", t.current(written));
                // Looked up at any moment within the retention, the bucket is read…
                for later in [0, retention / 2, retention.saturating_sub(1)] {
                    let lookup = t.lookup(&keys, 0, written + later * 1000);
                    assert!(
                        lookup.contains(&bucket),
                        "r={retention} w={written} +{later}"
                    );
                }
                // …and it still exists then: it expires width + retention after its first
                // write, which was at most width before this one.
                assert!(t.bucket_ttl_secs() >= retention + t.width_secs);
            }
        }
    }

    #[test]
    fn lookups_are_newest_first_and_bounded() {
        let keys = Keys::new("ns", "webhooks", 2);
        let t = Tombstones::new(Duration::from_secs(70));
        assert_eq!(t.width_secs, 10);
        let l = t.lookup(&keys, 1, 1_000_000);
        assert_eq!(l.len(), BUCKETS as usize);
        assert_eq!(l[0], "ns:{webhooks:1}:collate:done:100");
        assert_eq!(l[7], "ns:{webhooks:1}:collate:done:93");
        assert_eq!(
            t.lookup(&keys, 0, 5_000).len(),
            1,
            "no bucket before the epoch"
        );
    }
}
