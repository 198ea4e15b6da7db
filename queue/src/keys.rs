//! The Redis key schema of a queue, in one place. Every key of a partition carries the hash tag
//! `{<queue>:<p>}` so all of a partition's keys live in one cluster slot and its Lua scripts
//! stay single-slot. On a Redis Cluster the tag is `{<queue>:<p>:s<n>}`, `n` chosen so the
//! partitions spread evenly over the slot space and so over the masters ([`crate::slot`]). Nothing else in the crate formats a key. No I/O here. Public as
//! [`Keys`] (see [`Queue::keys`](crate::Queue::keys)) so code outside the crate that reads or
//! writes a queue's keys — a dashboard reading dead letters, a Lua script that XADDs a job with
//! its own writes — names them through these builders instead of spelling them again.
//!
//! ```text
//! <ns>:{<queue>:<p>}              stream of ready jobs (consumer group `workers`)
//! <ns>:{<queue>:<p>}:delayed      ZSET member = job fields (JSON), score = run-at unix ms
//! <ns>:{<queue>:<p>}:dead         dead-letter stream (kept near `dead_letter_max` entries)
//! <ns>:{<queue>:<p>}:dead:trimmed  STRING count of dead letters trimmed away
//! <ns>:{<queue>:<p>}:result:<id>  a reply-wanted job's result (with TTL)
//! <ns>:{<queue>:<p>}:recurring:<name>:<n>   occurrence marker of a recurring job
//! <ns>:{<queue>:<p>}:consumers    ZSET member = consumer, score = last heartbeat (Redis time, ms)
//! <ns>:{<queue>:<p>}:beats-since  STRING Redis time (ms) of the last gap in everyone's heartbeats
//! <ns>:{<queue>:<p>}:dedup:<id>   marker of a job enqueued with a caller-supplied id (with TTL)
//! <ns>:{<queue>}:partitions       STRING the partition count every process must agree on
//! <ns>:{<queue>}:workers          ZSET member = consumer, score = last heartbeat unix ms
//! <ns>:{<queue>}:results          pub/sub channel announcing results (one Redis node)
//! <ns>:{<queue>:<p>}:results      sharded pub/sub channel announcing partition p's results
//!                                 (Redis Cluster: SPUBLISH in the partition's slot)
//! <ns>:{<queue>}:paused           STRING present while the queue is paused (workers do not read)
//! <ns>:{<queue>}:purge-token      STRING a pending purge's confirmation token (with TTL)
//! <ns>:{<queue>:<p>}:<suffix>     an application's own key in partition p (`in_partition`)
//! ```

use crate::slot;

/// Consumer group every worker joins.
pub const GROUP: &str = "workers";

/// Key builder for one queue: every key and channel name of the schema above. Cheap to call;
/// stream keys are built once.
#[derive(Clone, Debug)]
pub struct Keys {
    ns: String,
    name: String,
    partitions: u16,
    /// Stream keys by partition, built once (they are on every hot path).
    streams: Vec<String>,
}

impl Keys {
    /// Keys of queue `name` in namespace `ns` with `partitions` partitions (0 counts as 1) on
    /// one Redis node; the same values as the queue's [`QueueConfig`](crate::QueueConfig) give
    /// the same keys.
    pub fn new(ns: &str, name: &str, partitions: u16) -> Self {
        Keys::build(ns, name, partitions, |p| format!("{name}:{p}"))
    }

    /// The same queue's keys on a Redis Cluster: partition tags spread over the slot space
    /// ([`crate::slot::spread_tag`]), so 12 partitions on 3 equal masters are 4 per master.
    pub fn spread(ns: &str, name: &str, partitions: u16) -> Self {
        let n = partitions.max(1);
        Keys::build(ns, name, partitions, |p| slot::spread_tag(name, p, n))
    }

    /// [`Keys::spread`] on a cluster (`cluster`), else [`Keys::new`].
    pub fn for_mode(ns: &str, name: &str, partitions: u16, cluster: bool) -> Self {
        match cluster {
            true => Keys::spread(ns, name, partitions),
            false => Keys::new(ns, name, partitions),
        }
    }

    fn build(ns: &str, name: &str, partitions: u16, tag: impl Fn(u16) -> String) -> Self {
        let partitions = partitions.max(1);
        Keys {
            ns: ns.to_string(),
            name: name.to_string(),
            partitions,
            streams: (0..partitions)
                .map(|p| format!("{ns}:{{{}}}", tag(p)))
                .collect(),
        }
    }

    /// Number of partitions (at least 1); partitions are `0..partitions()`.
    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// Stream of partition `p` (partition 0's for a `p` out of range, as everywhere here).
    pub fn stream(&self, p: u16) -> String {
        self.stream_ref(p).to_string()
    }

    /// Stream of partition `p`, borrowed.
    pub fn stream_ref(&self, p: u16) -> &str {
        match self.streams.get(usize::from(p)) {
            Some(s) => s,
            None => self.streams.first().map_or("", String::as_str),
        }
    }

    /// Delayed set of partition `p` (retries and scheduled jobs).
    pub fn delayed(&self, p: u16) -> String {
        self.in_partition(p, "delayed")
    }

    /// Dead-letter stream of partition `p`; its entries have the fields
    /// [`wire::DEAD_FIELDS`](crate::wire::DEAD_FIELDS).
    pub fn dead(&self, p: u16) -> String {
        self.in_partition(p, "dead")
    }

    /// Counter of the dead letters trimmed from partition `p`'s dead-letter stream (oldest first)
    /// to keep it near [`QueueConfig::dead_letter_max`](crate::QueueConfig::dead_letter_max).
    pub fn dead_trimmed(&self, p: u16) -> String {
        self.in_partition(p, "dead:trimmed")
    }

    /// Stored result of a reply-wanted job enqueued to partition `p`.
    pub fn result(&self, p: u16, job_id: &str) -> String {
        format!("{}:result:{}", self.stream_ref(p), job_id)
    }

    /// Marker that occurrence `n` of recurring job `name` was enqueued.
    pub fn occurrence(&self, p: u16, name: &str, n: u64) -> String {
        format!("{}:recurring:{}:{}", self.stream_ref(p), name, n)
    }

    /// `<stream of p>:<suffix>`: a key of the application's own in partition `p`'s hash slot,
    /// so a Lua script may touch it together with the partition's stream and dead letters
    /// (e.g. `in_partition(p, "collate:open")`). The suffixes `delayed`, `dead`, `result:…` and
    /// `recurring:…` are the queue's; anything else is free.
    pub fn in_partition(&self, p: u16, suffix: &str) -> String {
        format!("{}:{}", self.stream_ref(p), suffix)
    }

    /// Heartbeats of the consumers working on partition `p` (read by the reclaim of `p`).
    pub fn consumers(&self, p: u16) -> String {
        self.in_partition(p, "consumers")
    }

    /// Redis time of the last gap in every consumer's heartbeats on partition `p`.
    pub fn beats_since(&self, p: u16) -> String {
        self.in_partition(p, "beats-since")
    }

    /// Deduplication marker of a job enqueued with the caller-supplied id `job_id`.
    pub fn dedup(&self, p: u16, job_id: &str) -> String {
        format!("{}:dedup:{}", self.stream_ref(p), job_id)
    }

    /// The partition count stored when the queue was first used.
    pub fn partitions_key(&self) -> String {
        format!("{}:{{{}}}:partitions", self.ns, self.name)
    }

    /// Live-worker heartbeat set.
    pub fn workers(&self) -> String {
        format!("{}:{{{}}}:workers", self.ns, self.name)
    }

    /// Present while the queue is paused: workers stop reading new jobs (in-flight ones finish).
    pub fn paused(&self) -> String {
        format!("{}:{{{}}}:paused", self.ns, self.name)
    }

    /// The confirmation token of a purge that was asked for and not yet confirmed.
    pub fn purge_token(&self) -> String {
        format!("{}:{{{}}}:purge-token", self.ns, self.name)
    }

    /// Pub/sub channel on which results are announced.
    pub fn results_channel(&self) -> String {
        format!("{}:{{{}}}:results", self.ns, self.name)
    }

    /// Sharded pub/sub channel on which partition `p`'s results are announced on a Redis
    /// Cluster (`SPUBLISH`: it lives in the partition's slot, so only its shard carries it).
    pub fn shard_results_channel(&self, p: u16) -> String {
        self.in_partition(p, "results")
    }

    /// Partition a key maps to: FNV-1a 64 of the key, modulo the partition count. Stable across
    /// processes, versions and platforms.
    pub fn partition_of(&self, key: &str) -> u16 {
        (fnv1a(key.as_bytes()) % u64::from(self.partitions)) as u16
    }
}

/// FNV-1a, 64 bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_share_one_hash_tag() {
        let k = Keys::new("ns", "q", 4);
        assert_eq!(k.stream(2), "ns:{q:2}");
        assert_eq!(k.delayed(2), "ns:{q:2}:delayed");
        assert_eq!(k.dead(2), "ns:{q:2}:dead");
        assert_eq!(k.dead_trimmed(2), "ns:{q:2}:dead:trimmed");
        assert_eq!(k.result(2, "j"), "ns:{q:2}:result:j");
        assert_eq!(k.occurrence(2, "tick", 7), "ns:{q:2}:recurring:tick:7");
        assert_eq!(k.in_partition(2, "collate:open"), "ns:{q:2}:collate:open");
        assert_eq!(k.in_partition(2, "dead"), k.dead(2));
        assert_eq!(k.consumers(2), "ns:{q:2}:consumers");
        assert_eq!(k.dedup(2, "p:1"), "ns:{q:2}:dedup:p:1");
        assert_eq!(k.partitions_key(), "ns:{q}:partitions");
        assert_eq!(k.paused(), "ns:{q}:paused");
        assert_eq!(k.purge_token(), "ns:{q}:purge-token");
    }

    #[test]
    fn fnv_matches_reference_and_partition_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let k = Keys::new("ns", "q", 4);
        let p = k.partition_of("resource-42");
        assert_eq!(p, k.partition_of("resource-42"));
        assert!(p < 4);
        let hit: std::collections::HashSet<u16> =
            (0..100).map(|i| k.partition_of(&format!("r{i}"))).collect();
        assert_eq!(hit.len(), 4);
    }

    #[test]
    fn cluster_keys_keep_one_tag_per_partition_and_the_queue_wide_keys() {
        let k = Keys::spread("ns", "q", 12);
        for p in 0..12 {
            let stream = k.stream(p);
            let tag = stream
                .strip_prefix("ns:{")
                .and_then(|s| s.strip_suffix('}'));
            assert_eq!(tag.and_then(slot::parse_tag), Some(("q", p)), "{stream}");
            let slot = slot::slot_of(&stream);
            for key in [k.delayed(p), k.dead(p), k.dedup(p, "x"), k.consumers(p)] {
                assert_eq!(slot::slot_of(&key), slot, "{key}");
            }
        }
        assert_eq!(
            k.partitions_key(),
            Keys::new("ns", "q", 12).partitions_key()
        );
        assert_eq!(Keys::for_mode("ns", "q", 3, false).stream(1), "ns:{q:1}");
        assert_eq!(
            Keys::for_mode("ns", "q", 3, true).stream(1),
            Keys::spread("ns", "q", 3).stream(1)
        );
    }
}
