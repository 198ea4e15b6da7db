//! The idempotent enqueue's arguments: KEYS and ARGV of `enqueue.lua` (SET NX of the job id's
//! deduplication marker + XADD or ZADD) for a single invocation, and of `enqueue_many.lua` (the
//! same for a run of jobs of one partition) for an `EVALSHA` inside a batch's `MULTI` block. No
//! I/O here.

use crate::job::Entry;
use crate::keys::Keys;

/// KEYS and ARGV of `enqueue.lua` for `entry` in partition `p`, on a script invocation.
pub(crate) fn push_dedup_args(
    inv: &mut redis::ScriptInvocation<'_>,
    keys: &Keys,
    p: u16,
    entry: &Entry,
    due: Option<u64>,
    window_ms: u64,
) {
    inv.key(keys.dedup(p, &entry.id))
        .key(keys.stream_ref(p))
        .key(keys.delayed(p))
        .arg(window_ms)
        .arg(due.map(|d| d.to_string()).unwrap_or_default())
        .arg(if due.is_some() {
            entry.delayed_member()
        } else {
            String::new()
        })
        .arg(entry);
}

/// Jobs of one `enqueue_many.lua` call at most: a script blocks Redis while it runs (~10 µs per
/// job), so a long run of a large batch becomes several calls in the same transaction.
pub(crate) const MAX_RUN: usize = 256;

/// One `EVALSHA` of `enqueue_many.lua` adding `entries` (jobs to run now) to partition `p`,
/// each unless its id was enqueued within `window_ms`.
pub(crate) fn enqueue_many_cmd(
    keys: &Keys,
    p: u16,
    entries: &[&Entry],
    window_ms: u64,
) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(crate::scripts::ENQUEUE_MANY.get_hash())
        .arg(1 + entries.len())
        .arg(keys.stream_ref(p));
    for entry in entries {
        cmd.arg(keys.dedup(p, &entry.id));
    }
    cmd.arg(window_ms);
    for entry in entries {
        cmd.arg(entry.arg_count()).arg(*entry);
    }
    cmd
}
