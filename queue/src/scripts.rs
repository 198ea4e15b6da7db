//! The Lua scripts of the queue, loaded once per process from `src/scripts/*.lua`. Each script is
//! one atomic multi-key step on a single partition (one hash slot); their headers name KEYS and
//! ARGV. This module only loads them and helps invoke them; callers build the arguments.

use std::sync::LazyLock;

use redis::Script;

const ACK_SRC: &str = include_str!("scripts/ack.lua");
const RETRY_SRC: &str = include_str!("scripts/retry.lua");
const DEAD_SRC: &str = include_str!("scripts/dead.lua");
const PROMOTE_SRC: &str = include_str!("scripts/promote.lua");
const RECURRING_SRC: &str = include_str!("scripts/recurring.lua");
const EXTEND_SRC: &str = include_str!("scripts/extend.lua");
const STATS_SRC: &str = include_str!("scripts/stats.lua");
const RECLAIM_SRC: &str = include_str!("scripts/reclaim.lua");
const CONSUMERS_SRC: &str = include_str!("scripts/consumers.lua");
const ENQUEUE_SRC: &str = include_str!("scripts/enqueue.lua");
const ADMIN_DEAD_SRC: &str = include_str!("scripts/admin_dead.lua");
const ADMIN_PROMOTE_SRC: &str = include_str!("scripts/admin_promote.lua");
const ADMIN_PURGE_SRC: &str = include_str!("scripts/admin_purge.lua");

/// XACK + XDEL of finished entries this consumer still owns.
pub static ACK: LazyLock<Script> = LazyLock::new(|| Script::new(ACK_SRC));
/// XACK + XDEL + ZADD of a retried entry.
pub static RETRY: LazyLock<Script> = LazyLock::new(|| Script::new(RETRY_SRC));
/// XACK + XDEL + XADD to the dead-letter stream.
pub static DEAD: LazyLock<Script> = LazyLock::new(|| Script::new(DEAD_SRC));
/// Due jobs from the delayed set to the stream.
pub static PROMOTE: LazyLock<Script> = LazyLock::new(|| Script::new(PROMOTE_SRC));
/// SET NX occurrence marker + XADD.
pub static RECURRING: LazyLock<Script> = LazyLock::new(|| Script::new(RECURRING_SRC));
/// Heartbeat of one partition + lease extension of owned in-flight entries.
pub static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_SRC));
/// Takes over entries of consumers whose heartbeat is stale.
pub static RECLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(RECLAIM_SRC));
/// Removes consumers with nothing pending (leaving, or dead).
pub static CONSUMERS: LazyLock<Script> = LazyLock::new(|| Script::new(CONSUMERS_SRC));
/// SET NX deduplication marker + XADD (or ZADD): an idempotent enqueue.
pub static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(ENQUEUE_SRC));
/// The source of `enqueue.lua`, for a `SCRIPT LOAD` ahead of a pipeline that EVALSHAs it.
pub const ENQUEUE_SOURCE: &str = ENQUEUE_SRC;
/// One partition's waiting / pending / delayed / dead counts, read atomically.
pub static STATS: LazyLock<Script> = LazyLock::new(|| Script::new(STATS_SRC));

/// Retries or deletes dead letters (an operator's action).
pub static ADMIN_DEAD: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIN_DEAD_SRC));
/// Moves one delayed job to the stream now.
pub static ADMIN_PROMOTE: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIN_PROMOTE_SRC));
/// Removes waiting (undelivered), delayed or dead jobs of a partition.
pub static ADMIN_PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIN_PURGE_SRC));

/// Every script with its source: what [`used_by`] looks hashes up in.
static ALL: [(&LazyLock<Script>, &str); 13] = [
    (&ACK, ACK_SRC),
    (&RETRY, RETRY_SRC),
    (&DEAD, DEAD_SRC),
    (&PROMOTE, PROMOTE_SRC),
    (&RECURRING, RECURRING_SRC),
    (&EXTEND, EXTEND_SRC),
    (&STATS, STATS_SRC),
    (&RECLAIM, RECLAIM_SRC),
    (&CONSUMERS, CONSUMERS_SRC),
    (&ENQUEUE, ENQUEUE_SRC),
    (&ADMIN_DEAD, ADMIN_DEAD_SRC),
    (&ADMIN_PROMOTE, ADMIN_PROMOTE_SRC),
    (&ADMIN_PURGE, ADMIN_PURGE_SRC),
];

/// The sources of the scripts `pipe` runs by `EVALSHA`, each once, for a `SCRIPT LOAD` on a
/// node that lost (a restart) or never had (a promoted replica: Redis does not replicate the
/// script cache) them: this module's and those of `extra` (sources of other crates' scripts).
pub fn used_by(pipe: &redis::Pipeline, extra: &[&'static str]) -> Vec<&'static str> {
    let extra: Vec<(Script, &'static str)> = extra.iter().map(|s| (Script::new(s), *s)).collect();
    let mut out: Vec<&'static str> = Vec::new();
    for cmd in pipe.cmd_iter() {
        let mut args = cmd.args_iter();
        let (Some(redis::Arg::Simple(name)), Some(redis::Arg::Simple(hash))) =
            (args.next(), args.next())
        else {
            continue;
        };
        if !name.eq_ignore_ascii_case(b"EVALSHA") {
            continue;
        }
        let ours = ALL.iter().find(|(s, _)| s.get_hash().as_bytes() == hash);
        let theirs = extra.iter().find(|(s, _)| s.get_hash().as_bytes() == hash);
        if let Some(src) = ours.map(|(_, s)| *s).or(theirs.map(|(_, s)| *s)) {
            if !out.contains(&src) {
                out.push(src);
            }
        }
    }
    out
}

/// `SCRIPT LOAD <source>`.
pub fn load_cmd(source: &str) -> redis::Cmd {
    redis::cmd("SCRIPT").arg("LOAD").arg(source).to_owned()
}

/// Adds `EVALSHA <script> <keys> <args>` to a pipeline.
pub fn push(pipe: &mut redis::Pipeline, script: &Script, keys: &[&str], args: &[String]) {
    pipe.cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
}

/// Whether an error says a script is missing from the server's cache: a command's own error,
/// or a pipeline's whose failed commands include one.
pub fn missing(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        || e.clone()
            .into_server_errors()
            .is_some_and(|items| items.iter().any(|(_, err)| err.code() == "NOSCRIPT"))
}
