//! Pipelines over several partitions, sent the way the server allows: on one node all of them
//! in ONE round trip (as before clusters existed); on a Redis Cluster, where a pipeline must
//! stay in one hash slot, one pipeline per partition (a partition is one slot), all sent at
//! once on the same multiplexed cluster connection. Replies come back in the order commands were
//! added, in both modes.
//!
//! On a cluster each partition's pipeline is one transaction (`MULTI … EXEC`), so a slot that
//! moves under it (a reshard, a failover) makes the node refuse all of it at once (`MOVED`,
//! `ASK`, `TRYAGAIN`, `READONLY` while queueing, then `EXECABORT`) and none of it runs. Such a
//! refused transaction is sent again, on a connection made since the refusal (which reads the
//! slot map anew: redis-rs learns nothing from a refused transaction, see `topology`), for up
//! to [`RESEND_FOR`]: callers see a slot move as a short delay, never as a half-applied
//! pipeline. (A plain pipeline would run the commands before the first key
//! that moved and refuse the rest — redis-rs does not redirect inside a pipeline — and sending
//! it again would apply those twice.)
//!
//! A pipeline whose `EVALSHA` meets a node without the script (a restarted Redis; a promoted
//! replica, since Redis does not replicate the script cache) is sent again with a `SCRIPT LOAD`
//! of the scripts it names at its head (`scripts::loading`): in a partition's transaction, the
//! node that runs it loads them first, whichever node that is (a separate load could reach
//! another node than the transaction while a failover changes the slot map). Every other
//! command of it ran, so only pipelines safe to send twice may `EVALSHA` here: reads, and
//! the settling of a batch (its scripts are fenced and act once; a result it announces may be
//! announced twice). Pipelines that must not be sent twice load their scripts themselves and
//! say so ([`Fanout::preloaded`]).
//!
//! Replication wait ([`Fanout::wait_for`]): `WAIT n timeout` after each pipeline's writes, on
//! the master that took them. On one node it ends the one pipeline. On a cluster it follows the
//! partition's `EXEC` as its own command (a WAIT inside `MULTI` does not block), routed to the
//! master of the partition's slot — the node connection the transaction went through. A lone
//! write is followed by [`wait_after`], routed the same way.

use std::time::{Duration, Instant};

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Pipeline, RedisResult, Value};

use crate::error::QueueError;
use crate::keys::Keys;
use crate::pool::RedisConnection;
use crate::scripts;
use crate::topology::{refused_transaction, ClusterHandle};

/// A replication wait: `WAIT replicas timeout` after a group of writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replication {
    /// Replicas that must confirm the writes.
    pub replicas: u32,
    /// How long the server waits for them.
    pub timeout: Duration,
}

impl Replication {
    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn cmd(&self) -> redis::Cmd {
        redis::cmd("WAIT")
            .arg(self.replicas)
            .arg(self.timeout_ms())
            .to_owned()
    }

    /// `Ok` when every WAIT reached the replicas asked (`acked` is the fewest any reached),
    /// else [`QueueError::NotReplicated`].
    pub fn check(&self, acked: u32) -> Result<(), QueueError> {
        if acked >= self.replicas {
            return Ok(());
        }
        metrics::counter!("conveyor_writes_not_replicated_total").increment(1);
        Err(QueueError::NotReplicated {
            wanted: self.replicas,
            acked,
        })
    }
}

/// How long a partition's transaction refused for a slot move is sent again before its
/// error is returned (a `redis-cli --cluster reshard` moves a slot in well under a second; a
/// failover takes the cluster-node-timeout plus the election).
pub const RESEND_FOR: Duration = Duration::from_secs(20);

/// Which slot a group of commands belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    Partition(u16),
    /// Commands outside the partitions (the queue-wide `{<queue>}` keys, `TIME`).
    Other,
}

/// Commands grouped by partition; see the module docs.
pub struct Fanout<'k> {
    cluster: bool,
    keys: &'k Keys,
    pipes: Vec<(Group, Pipeline)>,
    /// Set by [`Fanout::wait_for`]: the pipelines' writes are followed by a WAIT.
    replication: Option<Replication>,
    /// Sources of scripts outside this crate the pipelines may `EVALSHA` ([`Fanout::scripts`]).
    extra: &'static [&'static str],
    /// Set by [`Fanout::preloaded`]: a NOSCRIPT is returned, never answered by sending again.
    preloaded: bool,
}

impl<'k> Fanout<'k> {
    /// Pipelines for the partitions of the queue with `keys`, on a cluster (`cluster`) or one
    /// node (then all commands share one pipeline).
    pub fn new(cluster: bool, keys: &'k Keys) -> Fanout<'k> {
        Fanout {
            cluster,
            keys,
            pipes: Vec::new(),
            replication: None,
            extra: &[],
            preloaded: false,
        }
    }

    /// The pipelines load the scripts they run themselves and must never be sent twice (a
    /// batch enqueue's `XADD`s): a NOSCRIPT, which only a `SCRIPT FLUSH` between their load and
    /// their `EVALSHA` can cause, is returned as an error instead of sending them again.
    pub fn preloaded(mut self) -> Self {
        self.preloaded = true;
        self
    }

    /// Names the sources of scripts outside this crate that the pipelines `EVALSHA`, so that a
    /// node without them gets them loaded (see the module docs; this crate's are known).
    pub fn scripts(mut self, sources: &'static [&'static str]) -> Self {
        self.extra = sources;
        self
    }

    /// Follows the writes with `WAIT replicas timeout` (nothing for `None`); call it after the
    /// last command. [`Fanout::query_acked`] then says the fewest replicas any WAIT reached; the
    /// WAIT replies are not among the replies. On a cluster only partitions' pipelines wait (a
    /// pipeline of keyless commands goes to any node, possibly a replica, where WAIT fails).
    pub fn wait_for(&mut self, replication: Option<Replication>) {
        let Some(r) = replication else { return };
        self.replication = Some(r);
        if !self.cluster {
            for (_, pipe) in &mut self.pipes {
                pipe.add_command(r.cmd());
            }
        }
    }

    fn pipe_for(&mut self, group: Group) -> &mut Pipeline {
        let reuse = match self.pipes.last() {
            Some((last, _)) => !self.cluster || *last == group,
            None => false,
        };
        if !reuse {
            let mut pipe = redis::pipe();
            if self.cluster && group != Group::Other {
                pipe.atomic();
            }
            self.pipes.push((group, pipe));
        }
        let last = self.pipes.len() - 1;
        &mut self.pipes[last].1
    }

    /// The pipeline for commands on partition `p`'s keys. On a cluster, commands of one
    /// partition added one after the other share a pipeline (one transaction).
    pub fn partition(&mut self, p: u16) -> &mut Pipeline {
        self.pipe_for(Group::Partition(p))
    }

    /// Opens an all-or-nothing block of partition `p`'s commands: `MULTI` on one node, nothing
    /// on a cluster (where the partition's pipeline is a transaction already). Close it with
    /// [`Fanout::commit`]; add nothing of another partition in between.
    pub fn begin(&mut self, p: u16) -> &mut Pipeline {
        let cluster = self.cluster;
        let pipe = self.partition(p);
        if !cluster {
            pipe.cmd("MULTI").ignore();
        }
        pipe
    }

    /// Closes the block [`Fanout::begin`] opened: `EXEC` on one node, whose reply is the array
    /// of the block's replies (a failed command's error inside it); nothing on a cluster, where
    /// the block's replies come one by one like any pipeline's and an error in any of them
    /// fails the query.
    pub fn commit(&mut self, p: u16) {
        if !self.cluster {
            self.partition(p).cmd("EXEC");
        }
    }

    /// The pipeline for commands outside the partitions.
    pub fn other(&mut self) -> &mut Pipeline {
        self.pipe_for(Group::Other)
    }

    /// Sends every pipeline; the replies of the commands not `ignore`d, in the order added.
    /// The first error wins (on a cluster the other partitions' pipelines may have run).
    pub async fn query(&self, conn: &mut RedisConnection) -> RedisResult<Vec<Value>> {
        Ok(self.query_acked(conn).await?.0)
    }

    /// Like [`Fanout::query`], and with [`Fanout::wait_for`] the fewest replicas any WAIT
    /// reached (`None` without WAITs).
    pub async fn query_acked(
        &self,
        conn: &mut RedisConnection,
    ) -> RedisResult<(Vec<Value>, Option<u32>)> {
        let Some(cluster) = conn.fork() else {
            let Some((_, pipe)) = self.pipes.first() else {
                return Ok((Vec::new(), None));
            };
            let mut values: Vec<Value> = match pipe.query_async(conn).await {
                Err(e) if scripts::missing(&e) && !self.preloaded => {
                    let again = scripts::loading(pipe, self.extra);
                    again.query_async(conn).await?
                }
                other => other?,
            };
            return match self.replication {
                Some(_) => {
                    let acked = acked_of(values.pop())?;
                    Ok((values, Some(acked)))
                }
                None => Ok((values, None)),
            };
        };
        let sends = self.pipes.iter().map(|(group, pipe)| {
            let c = cluster.clone();
            async move { self.send_one(c, *group, pipe).await }
        });
        let per_pipe = futures::future::try_join_all(sends).await?;
        let mut fewest: Option<u32> = None;
        let mut replies = Vec::new();
        for (values, acked) in per_pipe {
            if let Some(acked) = acked {
                fewest = Some(fewest.map_or(acked, |f| f.min(acked)));
            }
            replies.extend(values);
        }
        Ok((replies, fewest))
    }

    /// One pipeline on a cluster: sent again while its slot moves (see the module docs), then
    /// followed by the WAIT of a partition's writes.
    async fn send_one(
        &self,
        mut cluster: ClusterHandle,
        group: Group,
        pipe: &Pipeline,
    ) -> RedisResult<(Vec<Value>, Option<u32>)> {
        let Group::Partition(p) = group else {
            let values = pipe.query_async(&mut cluster).await?;
            return Ok((values, None));
        };
        let key = self.keys.stream_ref(p);
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        // Set once the node met lacked a script: the transaction with its scripts' loads.
        let mut loading: Option<Pipeline> = None;
        let values: Vec<Value> = loop {
            let sent = loading.as_ref().unwrap_or(pipe);
            match sent.query_async(&mut cluster).await {
                Err(e) if scripts::missing(&e) && loading.is_none() && !self.preloaded => {
                    loading = Some(scripts::loading(pipe, self.extra));
                }
                Err(e) if refused_transaction(&e) && started.elapsed() < RESEND_FOR => {
                    metrics::counter!("conveyor_transactions_resent_total").increment(1);
                    tracing::debug!(error = %e, key, "a partition's transaction was refused for a slot move; sending it again");
                    // The refusal taught this connection nothing: the next send goes through
                    // one made since, whose slot map names the slot's owner now.
                    tokio::time::sleep(pause).await;
                    cluster = cluster.renewed().await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => break other?,
            }
        };
        let Some(r) = self.replication else {
            return Ok((values, None));
        };
        let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let timeout = cluster.timeout();
        let routed = Box::pin(cluster.inner().route_command(r.cmd(), routing));
        let acked = crate::topology::timed(timeout, routed).await?;
        Ok((values, Some(acked_of(Some(acked))?)))
    }
}

/// Replicas a WAIT reply says confirmed (0 for no reply).
fn acked_of(reply: Option<Value>) -> RedisResult<u32> {
    let acked = match reply {
        Some(v) => redis::from_redis_value::<i64>(v)?,
        None => 0,
    };
    Ok(u32::try_from(acked.max(0)).unwrap_or(u32::MAX))
}

/// `WAIT` for `replication` after a lone write of `key` on `conn`: on one node on that
/// connection; on a cluster routed to the master of the key's slot (the node connection the
/// write went through). `Ok` when enough replicas confirmed, else
/// [`QueueError::NotReplicated`]; an error of the WAIT itself is an unknown outcome.
pub(crate) async fn wait_after(
    conn: &mut RedisConnection,
    key: &str,
    replication: Replication,
) -> Result<(), QueueError> {
    let cmd = replication.cmd();
    let acked: RedisResult<i64> = match conn.cluster_connection() {
        Some(cluster) => {
            let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
            match cluster.route_command(cmd, routing).await {
                Ok(v) => redis::from_redis_value(v).map_err(redis::RedisError::from),
                Err(e) => Err(e),
            }
        }
        None => cmd.query_async(conn).await,
    };
    let acked = acked.map_err(|e| QueueError::OutcomeUnknown(format!("replication wait: {e}")))?;
    replication.check(u32::try_from(acked.max(0)).unwrap_or(u32::MAX))
}
