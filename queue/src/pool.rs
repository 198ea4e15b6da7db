//! [`RedisPool`]: the connection pool every part of Conveyor uses — one Redis server
//! (deadpool-redis's pool of multiplexed connections, the default) or a Redis Cluster
//! (deadpool-redis's `cluster` pool of cluster connections, which route each command by its
//! key's slot and follow `MOVED`/`ASK` and topology changes by themselves).
//!
//! The mode is chosen by the URL ([`RedisPool::open`]): `redis://` / `rediss://` is one node;
//! `redis+cluster://` / `rediss+cluster://` is a cluster, with one or more comma-separated seed
//! nodes (`redis+cluster://user:pass@10.0.0.1:7001,10.0.0.2:7001`): any reachable seed is
//! enough, the others are fallbacks; the client learns every node from `CLUSTER SLOTS`.
//!
//! On one node, a pooled connection is checked with a round trip only after a failed command
//! or an idle spell, not on every checkout (see `checked`).
//!
//! [`RedisConnection`] implements `redis::aio::ConnectionLike` by delegating: on one node it
//! adds nothing (no allocation, no round trip); on a cluster it bounds every command and
//! pipeline by the pool's response timeout (the cluster pool has no setting for it) and
//! replaces connections that outlived a topology change (see `topology`). What a
//! cluster cannot do — a pipeline or multi-key command over several slots — the queue avoids
//! by grouping per partition (see `fanout`).

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::Manager as _;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use crate::checked::{CheckedManager, CheckedPool};
use crate::error::QueueError;
use crate::topology::{fresh, ClusterHandle, Topology};

/// A pool on one Redis server or on a Redis Cluster. Cheap to clone (clones share the pool).
#[derive(Clone)]
pub enum RedisPool {
    /// One server: deadpool-redis's multiplexed connections, checked only after a failure or an
    /// idle spell (`checked`); what [`RedisPool::open`] and [`RedisPool::single`] build, and
    /// what a deadpool-redis pool converts to.
    Checked(CheckedPool),
    /// A Redis Cluster.
    Cluster(ClusterPool),
}

/// The cluster side of [`RedisPool`]: the pool, the seeds it was built from (the result
/// subscriber opens its own cluster connection from them), the response timeout and when the
/// topology last changed (connections older than that are replaced: see `topology`).
#[derive(Clone)]
pub struct ClusterPool {
    pool: deadpool_redis::cluster::Pool,
    seeds: Vec<ConnectionInfo>,
    response_timeout: Option<Duration>,
    topology: Arc<Topology>,
}

/// Longest a pooled cluster connection's check (a `PING` of every node it knows) may take
/// before the pool drops it for a new one: a connection that still counts a dead node waits
/// on it.
const CLUSTER_RECYCLE_TIMEOUT: Duration = Duration::from_secs(2);

impl ClusterPool {
    fn handle(
        &self,
        conn: redis::cluster_async::ClusterConnection,
        timeout: Option<Duration>,
    ) -> ClusterHandle {
        ClusterHandle::new(
            conn,
            timeout,
            Arc::clone(&self.topology),
            Some(self.pool.clone()),
        )
    }
}

/// A pool of the connections `pool`'s manager makes (its client, its connection settings), of
/// its size and timeouts, checked as [`RedisPool::single`]'s are: the pool the services run on,
/// for callers (tests) that built a deadpool-redis pool. Opens no connection yet. Each
/// conversion is a pool of its own (up to its size in connections): to share one, convert once
/// and clone the `RedisPool`.
impl From<deadpool_redis::Pool> for RedisPool {
    fn from(pool: deadpool_redis::Pool) -> Self {
        // A closed pool reports size 0; a pool of 0 would wait forever on its first checkout.
        let max_size = pool.status().max_size.max(1);
        let timeouts = pool.timeouts();
        let built = CheckedPool::builder(CheckedManager::of_pool(pool))
            .max_size(max_size)
            .timeouts(timeouts)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build();
        // The one failure of `build` is timeouts without a runtime, and the runtime is set.
        RedisPool::Checked(built.expect("a pool with a runtime builds"))
    }
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisPool::Checked(p) => f.debug_tuple("Checked").field(&p.status()).finish(),
            RedisPool::Cluster(c) => f.debug_tuple("Cluster").field(&c.seeds.len()).finish(),
        }
    }
}

/// The seed URLs of a `redis+cluster://` / `rediss+cluster://` URL, each a plain `redis://` /
/// `rediss://` URL with the user info and path of the original; `None` for any other URL.
/// `redis+cluster://u:p@h1:7001,h2:7002/0` → `redis://u:p@h1:7001/0`, `redis://u:p@h2:7002/0`.
pub fn cluster_seed_urls(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let plain = scheme.strip_suffix("+cluster")?;
    if plain != "redis" && plain != "rediss" {
        return None;
    }
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let seeds: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("{plain}://{userinfo}{h}{tail}"))
        .collect();
    Some(seeds)
}

impl RedisPool {
    /// A pool for `url` with redis-rs's defaults: one node for `redis://` / `rediss://`, a
    /// cluster for `redis+cluster://` / `rediss+cluster://` (see the module docs). Services
    /// build theirs with credentials, TLS and timeouts through `service-kit`'s `RedisArgs`.
    pub fn open(url: &str, max_size: usize) -> Result<RedisPool, QueueError> {
        match cluster_seed_urls(url) {
            Some(seeds) => {
                let infos = seeds
                    .iter()
                    .map(|s| s.as_str().into_connection_info())
                    .collect::<Result<Vec<_>, _>>()?;
                RedisPool::cluster(infos, max_size, None)
            }
            None => RedisPool::single(deadpool_redis::Manager::new(url)?, max_size),
        }
    }

    /// A pool of up to `max_size` connections to one server made by `manager`, each checked
    /// (`UNWATCH` + `PING`) on checkout only after a failed command or
    /// [`IDLE_CHECK`](crate::IDLE_CHECK) in the
    /// pool, instead of on every checkout. Opens no connection yet.
    pub fn single(
        manager: deadpool_redis::Manager,
        max_size: usize,
    ) -> Result<RedisPool, QueueError> {
        CheckedPool::builder(CheckedManager::new(manager))
            .max_size(max_size)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .map(RedisPool::Checked)
            .map_err(|e| QueueError::Unavailable(e.to_string()))
    }

    /// A cluster pool on `seeds` (at least one reachable node of the cluster); every command
    /// and pipeline is bounded by `response_timeout` when set. Opens no connection yet.
    pub fn cluster(
        seeds: Vec<ConnectionInfo>,
        max_size: usize,
        response_timeout: Option<Duration>,
    ) -> Result<RedisPool, QueueError> {
        if seeds.is_empty() {
            return Err(QueueError::Refused(
                "a Redis Cluster needs a seed node".into(),
            ));
        }
        let manager = deadpool_redis::cluster::Manager::new(seeds.clone(), false)?;
        let pool = deadpool_redis::cluster::Pool::builder(manager)
            .max_size(max_size)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .recycle_timeout(Some(CLUSTER_RECYCLE_TIMEOUT))
            .build()
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        Ok(RedisPool::Cluster(ClusterPool {
            pool,
            seeds,
            response_timeout,
            topology: Arc::default(),
        }))
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisPool::Cluster(_))
    }

    /// The seed nodes of a cluster pool (empty for one node).
    pub fn cluster_seeds(&self) -> &[ConnectionInfo] {
        match self {
            RedisPool::Checked(_) => &[],
            RedisPool::Cluster(c) => &c.seeds,
        }
    }

    /// A pooled connection (returned to the pool on drop).
    pub async fn get(&self) -> Result<RedisConnection, deadpool_redis::PoolError> {
        Ok(match self {
            RedisPool::Checked(p) => RedisConnection(Conn::Checked(p.get().await?)),
            RedisPool::Cluster(c) => {
                let conn = fresh(&c.pool, &c.topology).await?;
                let handle = c.handle((*conn).clone(), c.response_timeout);
                RedisConnection(Conn::Cluster(conn, handle))
            }
        })
    }

    /// A connection of its own, out of the pool, answering within `response_timeout` (blocking
    /// reads use one so their `BLOCK` never delays other commands).
    pub async fn dedicated(
        &self,
        response_timeout: Duration,
    ) -> Result<RedisConnection, deadpool_redis::PoolError> {
        Ok(match self {
            RedisPool::Checked(p) => {
                // A new connection: a pooled one may be handed out unchecked (`checked`).
                let mut conn = p
                    .manager()
                    .create()
                    .await
                    .map_err(deadpool::managed::PoolError::Backend)?
                    .conn;
                conn.set_response_timeout(response_timeout);
                RedisConnection(Conn::Multiplexed(conn))
            }
            RedisPool::Cluster(c) => {
                let conn = fresh(&c.pool, &c.topology).await?;
                let conn = deadpool_redis::cluster::Connection::take(conn);
                RedisConnection(Conn::OwnedCluster(c.handle(conn, Some(response_timeout))))
            }
        })
    }
}

impl RedisPool {
    /// `redis://<laddr>/<db>` of the server the pool's connections reach, from `CLIENT INFO`
    /// (one node).
    pub async fn server_url(&self) -> Result<String, QueueError> {
        let mut conn = self.get().await?;
        let info: String = redis::cmd("CLIENT")
            .arg("INFO")
            .query_async(&mut conn)
            .await?;
        let field = |name: &str| {
            info.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .map(str::to_string)
        };
        let laddr = field("laddr")
            .ok_or_else(|| QueueError::Unavailable("CLIENT INFO has no laddr".into()))?;
        let db = field("db").unwrap_or_else(|| "0".into());
        let (host, port) = laddr
            .rsplit_once(':')
            .ok_or_else(|| QueueError::Unavailable(format!("unexpected laddr {laddr}")))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Ok(format!("redis://{host}:{port}/{db}"))
    }
}

/// A connection from a [`RedisPool`]; use it as any `redis::aio::ConnectionLike`.
pub struct RedisConnection(Conn);

enum Conn {
    Checked(deadpool::managed::Object<CheckedManager>),
    Multiplexed(MultiplexedConnection),
    /// The pooled connection (held only to go back to the pool on drop) and the handle
    /// commands go through.
    Cluster(
        #[allow(dead_code)] deadpool_redis::cluster::Connection,
        ClusterHandle,
    ),
    OwnedCluster(ClusterHandle),
}

impl RedisConnection {
    /// Whether this connection is to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Conn::Cluster(..) | Conn::OwnedCluster(..))
    }

    /// On a cluster: another handle on the same (multiplexed) cluster connection, with its
    /// timeout, so several single-slot pipelines go out at once. `None` on one node.
    pub(crate) fn fork(&self) -> Option<ClusterHandle> {
        match &self.0 {
            Conn::Cluster(_, h) | Conn::OwnedCluster(h) => Some(h.clone()),
            _ => None,
        }
    }

    /// On a cluster, the underlying cluster connection (for routing a command to a given
    /// node); `None` on one node.
    pub fn cluster_connection(&mut self) -> Option<&mut redis::cluster_async::ClusterConnection> {
        match &mut self.0 {
            Conn::Cluster(_, h) | Conn::OwnedCluster(h) => Some(h.inner()),
            _ => None,
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Conn::Checked(c) => c.req_packed_command(cmd),
            Conn::Multiplexed(c) => c.req_packed_command(cmd),
            Conn::Cluster(_, h) | Conn::OwnedCluster(h) => h.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Conn::Checked(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Multiplexed(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(_, h) | Conn::OwnedCluster(h) => {
                h.req_packed_commands(cmd, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Conn::Checked(c) => c.get_db(),
            Conn::Multiplexed(c) => c.get_db(),
            Conn::Cluster(_, h) | Conn::OwnedCluster(h) => h.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_seed_urls;

    #[test]
    fn cluster_urls_split_into_seeds_and_plain_urls_are_not_clusters() {
        assert_eq!(
            cluster_seed_urls("redis+cluster://u:p@h1:7001,h2:7002/0").unwrap(),
            vec!["redis://u:p@h1:7001/0", "redis://u:p@h2:7002/0"]
        );
        assert_eq!(
            cluster_seed_urls("rediss+cluster://127.0.0.1:7001").unwrap(),
            vec!["rediss://127.0.0.1:7001"]
        );
        assert!(cluster_seed_urls("redis://127.0.0.1:6379").is_none());
        assert!(cluster_seed_urls("http+cluster://h:1").is_none());
        assert_eq!(
            cluster_seed_urls("redis+cluster://").unwrap(),
            Vec::<String>::new()
        );
    }
}
