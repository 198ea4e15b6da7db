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
const ENQUEUE_MANY_SRC: &str = include_str!("scripts/enqueue_many.lua");
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
/// `enqueue.lua` for a run of jobs of one partition in one call (batch enqueues).
pub static ENQUEUE_MANY: LazyLock<Script> = LazyLock::new(|| Script::new(ENQUEUE_MANY_SRC));
/// The source of `enqueue_many.lua`, for a `SCRIPT LOAD` ahead of a pipeline that EVALSHAs it.
pub const ENQUEUE_MANY_SOURCE: &str = ENQUEUE_MANY_SRC;
/// One partition's waiting / pending / delayed / dead counts, read atomically.
pub static STATS: LazyLock<Script> = LazyLock::new(|| Script::new(STATS_SRC));

/// Retries or deletes dead letters (an operator's action).
pub static ADMIN_DEAD: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIN_DEAD_SRC));
/// Moves one delayed job to the stream now.
pub static ADMIN_PROMOTE: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIN_PROMOTE_SRC));
/// Removes waiting (undelivered), delayed or dead jobs of a partition.
pub static ADMIN_PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIN_PURGE_SRC));

/// Every script with its source: what [`used_by`] looks hashes up in.
static ALL: [(&LazyLock<Script>, &str); 14] = [
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
    (&ENQUEUE_MANY, ENQUEUE_MANY_SRC),
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

/// `pipe` again, with a `SCRIPT LOAD` of every script it runs by `EVALSHA` ahead of its
/// commands (their replies ignored; the rest reply as in `pipe`). In a transaction the node that
/// runs it loads the scripts first, whichever node the connection's slot map sends it to.
pub fn loading(pipe: &redis::Pipeline, extra: &[&'static str]) -> redis::Pipeline {
    let replied = replied(pipe);
    let mut out = redis::pipe();
    if pipe.is_transaction() {
        out.atomic();
    }
    for src in used_by(pipe, extra) {
        out.add_command(load_cmd(src)).ignore();
    }
    for (i, cmd) in pipe.cmd_iter().enumerate() {
        out.add_command(cmd.clone());
        if !replied.get(i).copied().unwrap_or(false) {
            out.ignore();
        }
    }
    out
}

/// For each command of `pipe`, whether a query returns its reply (the others were
/// `ignore`d). redis-rs keeps that set to itself; a query on a connection that answers every
/// command with its own index shows it (offset and count as `ConnectionLike` defines them).
fn replied(pipe: &redis::Pipeline) -> Vec<bool> {
    struct Indices {
        commands: usize,
        atomic: bool,
    }
    impl redis::ConnectionLike for Indices {
        fn req_packed_command(&mut self, _: &[u8]) -> redis::RedisResult<redis::Value> {
            Ok(redis::Value::Nil)
        }
        fn req_packed_commands(
            &mut self,
            _: &[u8],
            _: usize,
            _: usize,
        ) -> redis::RedisResult<Vec<redis::Value>> {
            let each = (0..self.commands).map(|i| redis::Value::Int(i as i64));
            Ok(match self.atomic {
                // The reply of EXEC, the one reply a transaction's query asks for.
                true => vec![redis::Value::Array(each.collect())],
                false => each.collect(),
            })
        }
        fn get_db(&self) -> i64 {
            0
        }
        fn check_connection(&mut self) -> bool {
            true
        }
        fn is_open(&self) -> bool {
            true
        }
    }
    let commands = pipe.cmd_iter().count();
    let mut conn = Indices {
        commands,
        atomic: pipe.is_transaction(),
    };
    let values: Vec<redis::Value> = pipe.query(&mut conn).unwrap_or_default();
    let mut replied = vec![false; commands];
    for v in values {
        if let redis::Value::Int(i) = v {
            if let Some(r) = usize::try_from(i).ok().and_then(|i| replied.get_mut(i)) {
                *r = true;
            }
        }
    }
    replied
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(atomic: bool) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        if atomic {
            pipe.atomic();
        }
        pipe.cmd("SET").arg("k").arg(1).ignore();
        push(&mut pipe, &STATS, &["a", "b", "c", "d"], &["g".to_string()]);
        pipe.cmd("XADD")
            .arg("s")
            .arg("*")
            .arg("f")
            .arg("v")
            .ignore();
        push(&mut pipe, &ACK, &["s"], &[]);
        push(&mut pipe, &STATS, &["a", "b", "c", "d"], &["g".to_string()]);
        pipe
    }

    #[test]
    fn a_pipeline_with_loads_replies_as_the_original() {
        for atomic in [false, true] {
            let pipe = sample(atomic);
            let kept = [false, true, false, true, true];
            assert_eq!(replied(&pipe), kept, "atomic: {atomic}");
            assert_eq!(used_by(&pipe, &[]), vec![STATS_SRC, ACK_SRC]);
            let again = loading(&pipe, &[]);
            assert_eq!(again.is_transaction(), atomic);
            let names: Vec<Vec<u8>> = again
                .cmd_iter()
                .map(|c| match c.args_iter().next() {
                    Some(redis::Arg::Simple(name)) => name.to_vec(),
                    _ => Vec::new(),
                })
                .collect();
            let expected: Vec<&[u8]> = vec![
                b"SCRIPT", b"SCRIPT", b"SET", b"EVALSHA", b"XADD", b"EVALSHA", b"EVALSHA",
            ];
            assert_eq!(names, expected);
            // The loads and the ignored commands stay out of the replies.
            let kept = [false, false, false, true, false, true, true];
            assert_eq!(replied(&again), kept);
        }
    }

    #[test]
    fn scripts_of_other_crates_are_found_by_their_source() {
        let theirs: &'static str = "return 1";
        let mut pipe = redis::pipe();
        push(&mut pipe, &Script::new(theirs), &["k"], &[]);
        assert!(used_by(&pipe, &[]).is_empty());
        assert_eq!(used_by(&pipe, &[theirs]), vec![theirs]);
    }
}
