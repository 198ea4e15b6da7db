//! The Lua scripts of the queue, loaded once per process from `src/scripts/*.lua`. Each script is
//! one atomic multi-key step on a single partition (one hash slot); their headers name KEYS and
//! ARGV. This module only loads them and helps invoke them; callers build the arguments.

use std::sync::LazyLock;

use redis::Script;

use crate::pool::RedisConnection;

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

/// Loads every script into the server's script cache (needed after a Redis restart before
/// EVALSHA in a pipeline can succeed; single invocations reload by themselves). On a cluster
/// each `SCRIPT LOAD` goes to every master (the cluster client routes it so).
pub async fn load_all(conn: &mut RedisConnection) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for src in [
        ACK_SRC,
        RETRY_SRC,
        DEAD_SRC,
        PROMOTE_SRC,
        RECURRING_SRC,
        EXTEND_SRC,
        STATS_SRC,
        RECLAIM_SRC,
        CONSUMERS_SRC,
        ENQUEUE_SRC,
        ADMIN_DEAD_SRC,
        ADMIN_PROMOTE_SRC,
        ADMIN_PURGE_SRC,
    ] {
        if conn.is_cluster() {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(src)
                .query_async::<()>(conn)
                .await?;
        } else {
            pipe.cmd("SCRIPT").arg("LOAD").arg(src).ignore();
        }
    }
    match conn.is_cluster() {
        true => Ok(()),
        false => pipe.query_async::<()>(conn).await,
    }
}

/// Adds `EVALSHA <script> <keys> <args>` to a pipeline.
pub fn push(pipe: &mut redis::Pipeline, script: &Script, keys: &[&str], args: &[String]) {
    pipe.cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
}

/// Whether an error says a script is missing from the server's cache.
pub fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
