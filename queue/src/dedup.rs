//! The idempotent enqueue's arguments: KEYS and ARGV of `enqueue.lua` (SET NX of the job id's
//! deduplication marker + XADD or ZADD), for a single invocation and for an `EVALSHA` inside a
//! batch's `MULTI` block. No I/O here.

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

/// The same KEYS and ARGV for an `EVALSHA` command (a job to run now).
pub(crate) fn push_dedup_cmd(
    cmd: &mut redis::Cmd,
    keys: &Keys,
    p: u16,
    entry: &Entry,
    window_ms: u64,
) {
    cmd.arg(keys.dedup(p, &entry.id))
        .arg(keys.stream_ref(p))
        .arg(keys.delayed(p))
        .arg(window_ms)
        .arg("")
        .arg("")
        .arg(entry);
}
