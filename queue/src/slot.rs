//! Where a partition lands on a Redis Cluster, and how partitions are spread evenly there.
//!
//! A cluster maps a key to one of 16,384 slots by the CRC16 of its hash tag, and each master
//! owns ranges of slots (`redis-cli --cluster create` gives N masters N equal ranges). Tags
//! named plainly `{<queue>:<p>}` land wherever their CRC16 falls: 12 partitions over 3 masters
//! came out 5/3/4, so one master took 42 % of the queue. On a cluster each partition's tag
//! therefore carries a suffix chosen so the tag's slot falls inside the p-th of P equal slices
//! of the slot space: `{<queue>:<p>:s<n>}`, `n` the first that does. Partitions then spread
//! over the slot space as evenly as it is divided: 12 partitions over 3 equal masters are 4/4/4,
//! and any master that owns a share of the slots in one range owns that share of the partitions.
//! Every process computes the same tags from the name and the count alone (no I/O, no stored
//! state). One Redis node keeps the plain tags: nothing moves for existing single-node queues.

/// Slots of a Redis Cluster.
pub const SLOTS: u32 = 16_384;

/// Suffixes tried before a partition keeps its plain tag (only reachable when its slice holds
/// no slot at all, with more partitions than slots).
const MAX_TRIES: u32 = 1 << 16;

/// The cluster slot of `key`: the CRC16 (XMODEM) of its hash tag — the text between the first
/// `{` and the next `}` when that is not empty — or of the whole key, modulo [`SLOTS`]. The
/// same function Redis Cluster applies.
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|b| *b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|b| *b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    let crc = crc16::State::<crc16::XMODEM>::calculate(hashed);
    // The remainder is below 16,384: it fits.
    (u32::from(crc) % SLOTS) as u16
}

/// The slots `[lo, hi)` partition `p` of `partitions` aims for: the p-th of equal slices.
fn slice(p: u16, partitions: u16) -> (u32, u32) {
    let n = u32::from(partitions.max(1));
    let p = u32::from(p);
    (p * SLOTS / n, (p + 1) * SLOTS / n)
}

/// The hash tag (without braces) of partition `p` of queue `name` on a cluster: `<name>:<p>:s<n>`
/// with the first `n` whose slot lies in the partition's slice (see the module docs), or the
/// plain `<name>:<p>` when the slice is empty.
pub fn spread_tag(name: &str, p: u16, partitions: u16) -> String {
    let (lo, hi) = slice(p, partitions);
    if hi > lo {
        for n in 0..MAX_TRIES {
            let tag = format!("{name}:{p}:s{n}");
            let slot = u32::from(slot_of(&format!("{{{tag}}}")));
            if (lo..hi).contains(&slot) {
                return tag;
            }
        }
    }
    format!("{name}:{p}")
}

/// The partition number in a stream's hash tag (`<name>:<p>` or `<name>:<p>:s<n>`), with the
/// queue name: `None` for a tag of neither form.
pub fn parse_tag(tag: &str) -> Option<(&str, u16)> {
    let plain = match tag.rsplit_once(':') {
        Some((rest, last))
            if last.len() > 1
                && last.starts_with('s')
                && last[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest
        }
        _ => tag,
    };
    let (name, p) = plain.rsplit_once(':')?;
    if name.is_empty() {
        return None;
    }
    Some((name, p.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_redis_cluster_specification() {
        // The examples of the Redis Cluster specification and `CLUSTER KEYSLOT` on Redis 7.
        // CRC16 of "123456789" is 0x31C3 (the specification's check value), below 16,384.
        assert_eq!(slot_of("123456789"), 0x31C3);
        assert_eq!(slot_of("foo"), 12_182);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("foo{}{bar}"), slot_of("foo{}{bar}"));
        assert_ne!(slot_of("foo{}{bar}"), slot_of("bar"));
        assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
        assert_eq!(slot_of("foo{bar}{zap}"), slot_of("bar"));
    }

    #[test]
    fn twelve_partitions_fall_four_per_master_of_three() {
        // `redis-cli --cluster create` with three masters: 0-5460, 5461-10922, 10923-16383.
        let masters = [0..=5460u16, 5461..=10922, 10923..=16383];
        let mut per_master = [0usize; 3];
        for p in 0..12 {
            let tag = spread_tag("messages", p, 12);
            let slot = slot_of(&format!("conveyor:{{{tag}}}"));
            let m = masters.iter().position(|r| r.contains(&slot)).unwrap();
            per_master[m] += 1;
            assert_eq!(parse_tag(&tag), Some(("messages", p)));
        }
        assert_eq!(per_master, [4, 4, 4]);
    }

    #[test]
    fn every_partition_hits_its_own_slice_and_tags_are_distinct() {
        for partitions in [1u16, 2, 7, 64, 1024] {
            let mut tags = std::collections::HashSet::new();
            for p in 0..partitions {
                let tag = spread_tag("q", p, partitions);
                let (lo, hi) = slice(p, partitions);
                let slot = u32::from(slot_of(&format!("{{{tag}}}")));
                assert!(
                    (lo..hi).contains(&slot),
                    "{tag}: slot {slot} not in {lo}..{hi}"
                );
                assert!(tags.insert(tag));
            }
        }
    }

    #[test]
    fn tags_parse_in_both_forms_and_nothing_else() {
        assert_eq!(parse_tag("q:3"), Some(("q", 3)));
        assert_eq!(parse_tag("q:3:s17"), Some(("q", 3)));
        assert_eq!(parse_tag("a:b:3:s0"), Some(("a:b", 3)));
        assert_eq!(parse_tag("q"), None);
        assert_eq!(parse_tag(":3"), None);
        assert_eq!(parse_tag("q:x"), None);
        assert_eq!(parse_tag("q:s1"), None);
    }
}
