//! Commands that span the nodes of a Redis Cluster rather than one partition: `GET`s of keys
//! in many slots, the masters of the cluster, a `SCAN` over all of them. On one node each is
//! one pipeline or one walk.

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisResult, Value};

use crate::pool::RedisConnection;

/// `GET` of every key in `keys` (values in order): one pipeline on one node; on a cluster, where
/// the keys may lie in many slots, one `GET` per key, all sent at once.
pub(crate) async fn get_many(
    conn: &mut RedisConnection,
    keys: &[String],
) -> RedisResult<Vec<Option<String>>> {
    match conn.fork() {
        Some(cluster) => {
            let gets = keys.iter().map(|key| {
                let mut c = cluster.clone();
                let get = redis::cmd("GET").arg(key).to_owned();
                async move { get.query_async(&mut c).await }
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
