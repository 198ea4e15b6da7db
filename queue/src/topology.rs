//! Cluster connections that outlive a topology change. redis-rs relearns a slot map when a
//! single command is answered `MOVED`, but a transaction refused by `MOVED` (an `EXECABORT`)
//! teaches it nothing, and a connection whose map still names a dead master keeps sending
//! there: after a failover, such a pooled connection made transactions and `/stats` wait
//! seconds, now and then, for as long as it stayed in the pool (seen as a user: up to the 5 s
//! response timeout, more than 40 s after the failover).
//!
//! So an error that says the topology changed ([`signals_change`]: a refused transaction, a
//! node gone, no answer) marks the pool's [`Topology`], and [`fresh`] (every checkout of the
//! pool) drops the connections created before the mark: a new one reads the slot map anew.
//! Marks come at most once a [`MARK_EVERY`], so a failover costs each process a few new
//! connections, not one per request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed::Manager as _;
use deadpool_redis::cluster::{Connection, Pool};
use deadpool_redis::{PoolError, Timeouts};
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use crate::error::topology_code;

/// Shortest time between two marks: connections made after a mark are kept for this long
/// even if errors go on (a failover still under way refuses new connections' commands too).
pub(crate) const MARK_EVERY: Duration = Duration::from_secs(1);

/// How long [`ClusterHandle::renewed`] may look for a connection when the pool has no
/// response timeout.
const RENEW_WITHIN: Duration = Duration::from_secs(5);

/// When the pool last learned that its cluster's topology changed.
#[derive(Default)]
pub(crate) struct Topology {
    changed: Mutex<Option<Instant>>,
    /// A connection outside the pool and when it was made: see [`Topology::spare`].
    spare: tokio::sync::Mutex<Option<(Instant, ClusterConnection)>>,
}

impl Topology {
    /// The topology changed: connections made before now are stale (at most once a
    /// [`MARK_EVERY`]).
    pub(crate) fn mark(&self) {
        let now = Instant::now();
        let mut changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        if changed.is_none_or(|at| now.duration_since(at) >= MARK_EVERY) {
            metrics::counter!("conveyor_redis_topology_changes_total").increment(1);
            tracing::debug!("redis cluster topology changed; older connections will be replaced");
            *changed = Some(now);
        }
    }

    /// Whether a connection created at `created` predates the last change.
    pub(crate) fn is_stale(&self, created: Instant) -> bool {
        let changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        changed.is_some_and(|at| created < at)
    }

    /// A connection outside `pool` (its settings) made since the last change, shared by every
    /// caller that found no fresh pooled connection free: a failover costs one such connection
    /// per change, not one per refused transaction. The latest one is kept for the next change.
    async fn spare(&self, pool: &Pool) -> Option<ClusterConnection> {
        let mut spare = self.spare.lock().await;
        if let Some((made, conn)) = spare.as_ref() {
            if !self.is_stale(*made) {
                return Some(conn.clone());
            }
        }
        let started = Instant::now();
        let conn = pool.manager().create().await.ok()?;
        *spare = Some((started, conn.clone()));
        Some(conn)
    }
}

/// Whether `e` says the cluster's topology changed under the connection: an answer from a
/// node that no longer serves the slot (inside a transaction too), a node the client cannot
/// reach, or no answer at all.
pub(crate) fn signals_change(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
        return true;
    }
    match e.kind() {
        ErrorKind::ClusterConnectionNotFound => true,
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::ClusterDown) => true,
        _ => refused_transaction(e),
    }
}

/// Whether a cluster transaction's error means the node refused all of it because its slot is
/// moving or moved: `EXECABORT` after a topology error while queueing, or an `EXEC` answered
/// with an error instead of replies (redis-rs reports that as an unparsable multi response;
/// EXEC answers an error only when it ran nothing).
pub(crate) fn refused_transaction(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::ExecAbort) => e
            .clone()
            .into_server_errors()
            .is_some_and(|items| items.iter().any(|(_, err)| topology_code(err.code()))),
        ErrorKind::UnexpectedReturnType => e.to_string().contains("multi response"),
        _ => false,
    }
}

/// A pooled connection made after the last topology change: older ones are taken out of the
/// pool and dropped (at most one pool's worth, then whatever the pool gives).
pub(crate) async fn fresh(pool: &Pool, topology: &Topology) -> Result<Connection, PoolError> {
    match fresh_within(pool, topology, &pool.timeouts()).await? {
        Some(conn) => Ok(conn),
        None => pool.get().await,
    }
}

/// A pooled connection made after the last topology change if the pool has one free (or room
/// for one) now, without waiting; stale ones met on the way are dropped.
async fn fresh_now(pool: &Pool, topology: &Topology) -> Option<Connection> {
    let now = Timeouts {
        wait: Some(Duration::ZERO),
        ..pool.timeouts()
    };
    fresh_within(pool, topology, &now).await.ok().flatten()
}

/// Takes pooled connections under `timeouts`, dropping stale ones, until one made after the
/// last topology change comes (`None` after a pool's worth of stale ones).
async fn fresh_within(
    pool: &Pool,
    topology: &Topology,
    timeouts: &Timeouts,
) -> Result<Option<Connection>, PoolError> {
    for _ in 0..=pool.status().max_size {
        let conn = pool.timeout_get(timeouts).await?;
        if !topology.is_stale(Connection::metrics(&conn).created) {
            return Ok(Some(conn));
        }
        drop(Connection::take(conn));
    }
    Ok(None)
}

/// Marks `topology` when the answer's error says the topology changed.
pub(crate) fn watched<'a, T: Send + 'a>(
    topology: &Arc<Topology>,
    fut: RedisFuture<'a, T>,
) -> RedisFuture<'a, T> {
    let topology = Arc::clone(topology);
    Box::pin(async move {
        let answer = fut.await;
        if let Err(e) = &answer {
            if signals_change(e) {
                topology.mark();
            }
        }
        answer
    })
}

/// Another handle on a cluster connection (the same multiplexed connection), bounded by the
/// response timeout, marking the pool's topology on errors that say it changed; several
/// single-slot commands or pipelines go out at once through clones of it.
#[derive(Clone)]
pub(crate) struct ClusterHandle {
    conn: ClusterConnection,
    timeout: Option<Duration>,
    topology: Arc<Topology>,
    pool: Option<Pool>,
}

impl ClusterHandle {
    pub(crate) fn new(
        conn: ClusterConnection,
        timeout: Option<Duration>,
        topology: Arc<Topology>,
        pool: Option<Pool>,
    ) -> ClusterHandle {
        ClusterHandle {
            conn,
            timeout,
            topology,
            pool,
        }
    }

    /// The response timeout.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The cluster connection itself (to route a command to a given node).
    pub(crate) fn inner(&mut self) -> &mut ClusterConnection {
        &mut self.conn
    }

    /// After a refusal that says the topology changed: marks it and returns a handle on a
    /// connection made since (this one again for a connection outside the pool, or when none
    /// comes within the response timeout; the caller's next attempt finds out). It never waits
    /// for the pool: every pooled connection may be held by a caller renewing too (a failover
    /// refuses them all at once), and each would wait for another forever. So a fresh pooled
    /// connection if one is free, else the topology's spare one ([`Topology::spare`]).
    pub(crate) async fn renewed(&self) -> ClusterHandle {
        self.topology.mark();
        let Some(pool) = &self.pool else {
            return self.clone();
        };
        let limit = self.timeout.unwrap_or(RENEW_WITHIN);
        let pooled = tokio::time::timeout(limit, fresh_now(pool, &self.topology)).await;
        if let Ok(Some(conn)) = pooled {
            return ClusterHandle {
                conn: (*conn).clone(),
                ..self.clone()
            };
        }
        match tokio::time::timeout(limit, self.topology.spare(pool)).await {
            Ok(Some(conn)) => ClusterHandle {
                conn,
                ..self.clone()
            },
            _ => self.clone(),
        }
    }
}

impl ConnectionLike for ClusterHandle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        watched(
            &self.topology,
            timed(self.timeout, self.conn.req_packed_command(cmd)),
        )
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        watched(
            &self.topology,
            timed(
                self.timeout,
                self.conn.req_packed_commands(cmd, offset, count),
            ),
        )
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// An answer that did not come within `timeout` is a timeout error (`is_timeout()`).
pub(crate) fn timed<'a, T: Send + 'a>(
    timeout: Option<Duration>,
    fut: RedisFuture<'a, T>,
) -> RedisFuture<'a, T> {
    match timeout {
        None => fut,
        Some(t) => Box::pin(async move {
            match tokio::time::timeout(t, fut).await {
                Ok(answer) => answer,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer from the Redis Cluster within the response timeout",
                )
                .into()),
            }
        }),
    }
}
