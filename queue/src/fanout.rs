//! Pipelines over several partitions, sent the way the server allows: on one node all of them
//! in ONE round trip (as before clusters existed); on a Redis Cluster, where a pipeline must
//! stay in one hash slot, one pipeline per partition (a partition is one slot), all sent at
//! once on the same multiplexed cluster connection. Replies come back in the order commands were
//! added, in both modes. Also: the master nodes of a cluster and a `SCAN` over all of them.

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Pipeline, RedisResult, Value};

use crate::pool::{timed, RedisConnection};

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
}

impl Fanout {
    /// Pipelines for a cluster (`cluster`) or one node (then all commands share one).
    pub fn new(cluster: bool) -> Fanout {
        Fanout {
            cluster,
            pipes: Vec::new(),
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
        match conn.fork() {
            None => match self.pipes.first() {
                Some((_, pipe)) => pipe.query_async(conn).await,
                None => Ok(Vec::new()),
            },
            Some((cluster, timeout)) => {
                let sends =
                    self.pipes.iter().map(|(_, pipe)| {
                        let mut c = cluster.clone();
                        async move {
                            timed(timeout, Box::pin(pipe.query_async::<Vec<Value>>(&mut c))).await
                        }
                    });
                let replies = futures::future::try_join_all(sends).await?;
                Ok(replies.into_iter().flatten().collect())
            }
        }
    }
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
