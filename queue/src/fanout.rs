//! Pipelines over several partitions, sent the way the server allows: on one node all of them
//! in ONE round trip (as before clusters existed); on a Redis Cluster, where a pipeline must
//! stay in one hash slot, one pipeline per partition (a partition is one slot), all sent at
//! once on the same multiplexed cluster connection. Replies come back in the order commands were
//! added, in both modes. Also: the master nodes of a cluster and a `SCAN` over all of them.
//!
//! Replication wait ([`Fanout::wait_for`]): `WAIT n timeout` at the end of each pipeline, so it
//! runs on the very connection that sent the writes, right after them. On a cluster redis-rs
//! would send a lone keyless `WAIT` to every master (`RouteBy::AllPrimaries` in its
//! `cluster_routing`), where this connection wrote nothing; inside a pipeline it is not routed at
//! all — the pipeline goes to the master of its first keyed command's slot — so the WAIT reaches
//! exactly the master that took the partition's writes. A lone write is followed by
//! [`wait_after`], routed explicitly to the master of its key's slot.

use std::time::Duration;

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Pipeline, RedisResult, Value};

use crate::error::QueueError;
use crate::pool::{timed, RedisConnection};

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

/// Which slot a group of commands belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    Partition(u16),
    /// Commands outside the partitions (the queue-wide `{<queue>}` keys, `TIME`).
    Other,
}

/// Commands grouped by partition; see the module docs.
pub struct Fanout {
    cluster: bool,
    pipes: Vec<(Group, Pipeline)>,
    /// Set by [`Fanout::wait_for`]: the pipelines end with a WAIT.
    replication: Option<Replication>,
}

impl Fanout {
    /// Pipelines for a cluster (`cluster`) or one node (then all commands share one).
    pub fn new(cluster: bool) -> Fanout {
        Fanout {
            cluster,
            pipes: Vec::new(),
            replication: None,
        }
    }

    /// Whether the pipeline of `group` ends with a WAIT: on one node the one pipeline; on a
    /// cluster each partition's (a pipeline of keyless commands only would go to a random node,
    /// possibly a replica, where WAIT is an error).
    fn waits(&self, group: Group) -> bool {
        self.replication.is_some() && (!self.cluster || group != Group::Other)
    }

    /// Ends the pipelines with `WAIT replicas timeout` (nothing for `None`); call it after the
    /// last command. [`Fanout::query_acked`] then takes the WAIT replies out of the replies and
    /// says the fewest replicas any of them reached.
    pub fn wait_for(&mut self, replication: Option<Replication>) {
        let Some(r) = replication else { return };
        self.replication = Some(r);
        let cluster = self.cluster;
        for (group, pipe) in &mut self.pipes {
            if !cluster || *group != Group::Other {
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
            self.pipes.push((group, redis::pipe()));
        }
        let last = self.pipes.len() - 1;
        &mut self.pipes[last].1
    }

    /// The pipeline for commands on partition `p`'s keys. On a cluster, commands of one
    /// partition added one after the other share a pipeline.
    pub fn partition(&mut self, p: u16) -> &mut Pipeline {
        self.pipe_for(Group::Partition(p))
    }

    /// The pipeline for commands outside the partitions.
    pub fn other(&mut self) -> &mut Pipeline {
        self.pipe_for(Group::Other)
    }

    /// Sends every pipeline; the replies of the commands not `ignore`d, in the order added.
    /// The first error wins (on a cluster the other pipelines may have run).
    pub async fn query(&self, conn: &mut RedisConnection) -> RedisResult<Vec<Value>> {
        Ok(self.query_acked(conn).await?.0)
    }

    /// Like [`Fanout::query`], and with [`Fanout::wait_for`] the fewest replicas any WAIT
    /// reached (`None` without WAITs); the WAIT replies are not among the replies.
    pub async fn query_acked(
        &self,
        conn: &mut RedisConnection,
    ) -> RedisResult<(Vec<Value>, Option<u32>)> {
        let per_pipe: Vec<Vec<Value>> = match conn.fork() {
            None => match self.pipes.first() {
                Some((_, pipe)) => vec![pipe.query_async(conn).await?],
                None => Vec::new(),
            },
            Some((cluster, timeout)) => {
                let sends =
                    self.pipes.iter().map(|(_, pipe)| {
                        let mut c = cluster.clone();
                        async move {
                            timed(timeout, Box::pin(pipe.query_async::<Vec<Value>>(&mut c))).await
                        }
                    });
                futures::future::try_join_all(sends).await?
            }
        };
        let mut fewest: Option<u32> = None;
        let mut replies = Vec::new();
        for ((group, _), mut values) in self.pipes.iter().zip(per_pipe) {
            if self.waits(*group) {
                let acked = match values.pop() {
                    Some(v) => redis::from_redis_value::<i64>(v)?,
                    None => 0,
                };
                let acked = u32::try_from(acked.max(0)).unwrap_or(u32::MAX);
                fewest = Some(fewest.map_or(acked, |f| f.min(acked)));
            }
            replies.extend(values);
        }
        Ok((replies, fewest))
    }
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

/// `GET` of every key in `keys` (values in order): one pipeline on one node; on a cluster, where
/// the keys may lie in many slots, one `GET` per key, all sent at once.
pub(crate) async fn get_many(
    conn: &mut RedisConnection,
    keys: &[String],
) -> RedisResult<Vec<Option<String>>> {
    match conn.fork() {
        Some((cluster, timeout)) => {
            let gets = keys.iter().map(|key| {
                let mut c = cluster.clone();
                let get = redis::cmd("GET").arg(key).to_owned();
                async move {
                    timed(
                        timeout,
                        Box::pin(async move { get.query_async(&mut c).await }),
                    )
                    .await
                }
            });
            futures::future::try_join_all(gets).await
        }
        None => {
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.cmd("GET").arg(key);
            }
            pipe.query_async(conn).await
        }
    }
}

/// `(host, port)` of every master of the cluster `conn` is connected to, from `CLUSTER SLOTS`.
pub async fn cluster_masters(conn: &mut RedisConnection) -> RedisResult<Vec<(String, u16)>> {
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut masters = Vec::new();
    for range in slots {
        let Value::Array(parts) = range else { continue };
        let Some(Value::Array(node)) = parts.get(2) else {
            continue;
        };
        let host: Option<String> = node
            .first()
            .and_then(|v| redis::from_redis_value_ref(v).ok());
        let port: Option<u16> = node
            .get(1)
            .and_then(|v| redis::from_redis_value_ref(v).ok());
        if let (Some(host), Some(port)) = (host, port) {
            if !masters.contains(&(host.clone(), port)) {
                masters.push((host, port));
            }
        }
    }
    Ok(masters)
}

/// Every key matching `pattern` (a `SCAN MATCH` glob): on one node one SCAN walk, on a cluster
/// one walk per master. O(keys of the server); for operators and tests, never hot paths.
pub async fn scan_all(conn: &mut RedisConnection, pattern: &str) -> RedisResult<Vec<String>> {
    let mut out = Vec::new();
    if !conn.is_cluster() {
        scan_node(conn, None, pattern, &mut out).await?;
        return Ok(out);
    }
    for master in cluster_masters(conn).await? {
        scan_node(conn, Some(master), pattern, &mut out).await?;
    }
    Ok(out)
}

async fn scan_node(
    conn: &mut RedisConnection,
    node: Option<(String, u16)>,
    pattern: &str,
    out: &mut Vec<String>,
) -> RedisResult<()> {
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let reply: Value = match (&node, conn.cluster_connection()) {
            (Some((host, port)), Some(cluster)) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                cluster.route_command(cmd, route).await?
            }
            _ => cmd.query_async(conn).await?,
        };
        let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)?;
        out.extend(keys);
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}
