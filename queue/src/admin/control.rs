//! An operator's controls of a queue: pause and resume (a key the workers' read loop checks:
//! paused workers read nothing new, in-flight jobs finish and settle), run a delayed job now,
//! purge waiting / delayed / dead jobs after a confirmation token, and the workers with what
//! they hold. Each change to jobs is one Lua script on one partition.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redis::streams::StreamInfoConsumersReply;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::view::glob_escape;
use crate::error::QueueError;
use crate::job::now_ms;
use crate::keys::GROUP;
use crate::queue::Queue;
use crate::scripts;
use crate::stats::LIVE_WINDOW;

/// How long a purge's confirmation token is valid.
pub const PURGE_TOKEN_TTL: Duration = Duration::from_secs(60);

/// Stream entries deleted per `admin_purge.lua` call.
const PURGE_PAGE: u64 = 1000;

/// What a purge removes. Jobs a worker holds are never purged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeTarget {
    /// Jobs not yet delivered to any worker (the backlog).
    Waiting,
    /// Scheduled jobs, retries and waits.
    Delayed,
    /// Dead letters.
    Dead,
}

impl PurgeTarget {
    fn as_str(self) -> &'static str {
        match self {
            PurgeTarget::Waiting => "waiting",
            PurgeTarget::Delayed => "delayed",
            PurgeTarget::Dead => "dead",
        }
    }
}

impl fmt::Display for PurgeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PurgeTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "waiting" => Ok(PurgeTarget::Waiting),
            "delayed" => Ok(PurgeTarget::Delayed),
            "dead" => Ok(PurgeTarget::Dead),
            other => Err(format!(
                "unknown purge target {other:?}: expected waiting, delayed or dead"
            )),
        }
    }
}

/// A purge asked for and not yet confirmed: pass `token` to [`Queue::purge`] within
/// [`PURGE_TOKEN_TTL`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PurgeRequest {
    pub target: PurgeTarget,
    pub token: String,
    /// How many jobs it would remove now.
    pub count: u64,
    pub expires_in_ms: u64,
}

/// A worker of the queue: one consumer of the group, or one live heartbeat.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerInfo {
    pub name: String,
    /// A heartbeat within the last 15 s.
    pub live: bool,
    /// Milliseconds since its last heartbeat (`None`: none recorded, e.g. a worker long dead).
    pub last_beat_ago_ms: Option<u64>,
    /// Jobs it holds now (delivered, not settled), over all partitions.
    pub in_flight: u64,
    /// Milliseconds since it last read or claimed anything (least over partitions).
    pub idle_ms: Option<u64>,
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Queue<T> {
    /// Pauses the queue: every worker stops reading new jobs within one read (its block time);
    /// jobs already read finish and settle. Delayed jobs still become due (into the backlog), and
    /// jobs a dead worker held are still reclaimed and run (they were read before the pause).
    pub async fn pause(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(self.keys().paused())
            .arg(now_ms())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Resumes a paused queue (a no-op if it is not paused).
    pub async fn resume(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("DEL")
            .arg(self.keys().paused())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Whether the queue is paused.
    pub async fn is_paused(&self) -> Result<bool, QueueError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("EXISTS")
            .arg(self.keys().paused())
            .query_async::<u64>(&mut conn)
            .await?
            > 0)
    }

    /// Runs the delayed job `job_id` now (moves it to its stream). [`QueueError::Refused`] if
    /// no delayed job has that id.
    pub async fn promote(&self, job_id: &str) -> Result<(), QueueError> {
        let keys = self.keys();
        let id = serde_json::to_string(job_id)?;
        let pattern = format!("{}*", glob_escape(&format!("[\"id\",{id},")));
        let mut conn = self.conn().await?;
        let mut moved = 0u64;
        for p in 0..keys.partitions() {
            let delayed = keys.delayed(p);
            let mut cursor: u64 = 0;
            let mut members = Vec::new();
            loop {
                let (next, found): (u64, Vec<(String, f64)>) = redis::cmd("ZSCAN")
                    .arg(&delayed)
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                members.extend(found.into_iter().map(|(m, _)| m));
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            for member in members {
                let mut inv = scripts::ADMIN_PROMOTE.prepare_invoke();
                inv.key(&delayed).key(keys.stream(p)).arg(member);
                let n: u64 = inv.invoke_async(&mut conn).await?;
                moved += n;
            }
        }
        if moved == 0 {
            return Err(QueueError::Refused(format!(
                "no delayed job {job_id} in queue {}",
                self.config().name
            )));
        }
        Ok(())
    }

    /// Asks for a purge of `target`: how much it would remove, and the token that confirms it.
    pub async fn purge_request(&self, target: PurgeTarget) -> Result<PurgeRequest, QueueError> {
        let states = self.partition_states().await?;
        let count = states
            .iter()
            .map(|s| match target {
                PurgeTarget::Waiting => s.backlog,
                PurgeTarget::Delayed => s.delayed,
                PurgeTarget::Dead => s.dead,
            })
            .sum();
        let token = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(self.keys().purge_token())
            .arg(format!("{target}:{token}"))
            .arg("PX")
            .arg(PURGE_TOKEN_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        Ok(PurgeRequest {
            target,
            token,
            count,
            expires_in_ms: PURGE_TOKEN_TTL.as_millis() as u64,
        })
    }

    /// Purges `target` from every partition if `token` is the one [`Queue::purge_request`] gave
    /// for it (used once; [`QueueError::Refused`] otherwise, and nothing is removed). Returns how
    /// many jobs were removed. Jobs held by workers are never removed.
    pub async fn purge(&self, target: PurgeTarget, token: &str) -> Result<u64, QueueError> {
        let keys = self.keys();
        let mut conn = self.conn().await?;
        let stored: Option<String> = redis::cmd("GET")
            .arg(keys.purge_token())
            .query_async(&mut conn)
            .await?;
        let confirmed = stored.as_deref() == Some(format!("{target}:{token}").as_str())
            && redis::cmd("DEL")
                .arg(keys.purge_token())
                .query_async::<u64>(&mut conn)
                .await?
                == 1;
        if !confirmed {
            return Err(QueueError::Refused(format!(
                "purge of {target} in queue {} not confirmed: the token is wrong, used or expired; \
                 ask for a new one",
                self.config().name
            )));
        }
        let mut removed = 0;
        for p in 0..keys.partitions() {
            loop {
                let mut inv = scripts::ADMIN_PURGE.prepare_invoke();
                inv.key(keys.stream(p))
                    .key(keys.delayed(p))
                    .key(keys.dead(p))
                    .arg(GROUP)
                    .arg(target.as_str())
                    .arg(PURGE_PAGE);
                let (n, more): (u64, u64) = inv.invoke_async(&mut conn).await?;
                removed += n;
                if more == 0 {
                    break;
                }
            }
        }
        tracing::info!(queue = %self.config().name, %target, removed, "queue purged");
        Ok(removed)
    }

    /// The queue's workers: every live heartbeat and every consumer of the group, with the jobs
    /// each holds. A consumer with no recent heartbeat and jobs held is a worker that died; its
    /// jobs are reclaimed by live workers after a lease.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        let keys = self.keys();
        let mut conn = self.conn().await?;
        let beats: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(keys.workers())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        let now = now_ms();
        let live_since = now.saturating_sub(LIVE_WINDOW.as_millis() as u64);
        let mut out: Vec<WorkerInfo> = beats
            .into_iter()
            .map(|(name, at)| WorkerInfo {
                name,
                live: at as u64 >= live_since,
                last_beat_ago_ms: Some(now.saturating_sub(at as u64)),
                in_flight: 0,
                idle_ms: None,
            })
            .collect();
        for p in 0..keys.partitions() {
            let consumers: redis::RedisResult<StreamInfoConsumersReply> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(keys.stream(p))
                .arg(GROUP)
                .query_async(&mut conn)
                .await;
            let consumers = match consumers {
                Ok(c) => c.consumers,
                // No stream or no group yet: no consumers.
                Err(e) if e.code() == Some("NOGROUP") || e.code() == Some("ERR") => continue,
                Err(e) => return Err(e.into()),
            };
            for c in consumers {
                let idle = c.idle as u64;
                match out.iter_mut().find(|w| w.name == c.name) {
                    Some(w) => {
                        w.in_flight += c.pending as u64;
                        w.idle_ms = Some(w.idle_ms.map_or(idle, |i| i.min(idle)));
                    }
                    None => out.push(WorkerInfo {
                        name: c.name,
                        live: false,
                        last_beat_ago_ms: None,
                        in_flight: c.pending as u64,
                        idle_ms: Some(idle),
                    }),
                }
            }
        }
        out.sort_by(|a, b| (!a.live, &a.name).cmp(&(!b.live, &b.name)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::PurgeTarget;

    #[test]
    fn purge_targets_round_trip() {
        for t in [
            PurgeTarget::Waiting,
            PurgeTarget::Delayed,
            PurgeTarget::Dead,
        ] {
            assert_eq!(t.to_string().parse::<PurgeTarget>(), Ok(t));
        }
        assert!("all".parse::<PurgeTarget>().is_err());
    }
}
