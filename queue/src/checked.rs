//! The one-node pool's connections, checked with a round trip only when they may be broken.
//!
//! deadpool-redis's manager checks every connection each time it leaves the pool (`UNWATCH` +
//! `PING`, one round trip). Under load that round trip waits its turn in Redis's event loop
//! like any command, so a request that needs one command (the API's enqueue) waited for two:
//! with the default stack at full speed and 4 workers, Redis answered a `PING` in ~40 ms at the
//! median, and the API's batch requests took ~100–130 ms.
//!
//! [`CheckedManager`] makes the same connections and the same check, but runs the check only
//! when the connection may be broken:
//! - any command or pipeline on it failed since its last check (an I/O error, a timeout, a
//!   closed socket, or an error reply: whichever it was, the next checkout finds out with a
//!   `PING` before anyone relies on the connection; a broken one is dropped for a new one);
//! - a command on it was cancelled before its answer (its caller's timeout): what the server did
//!   with it, and whether the connection still answers, is unknown;
//! - its last checkout was [`IDLE_CHECK`] or longer ago (deadpool's `Metrics::last_used`): a
//!   server that restarted, or a middlebox that dropped the idle connection, is noticed as
//!   before, without costing a failed command.
//!
//! A connection in steady use is not checked with a round trip, yet its checkout notices a
//! socket the server closed (a restart, `CLIENT KILL`) once redis-rs has read the close:
//! redis-rs's task that drives the connection then ends, and a command handed to an ended task
//! is refused at once, unsent. So the checkout hands the connection a `PING` whose answer
//! nobody waits for (`Cmd::set_no_response`; the `PONG` is read and discarded): accepted, the
//! connection goes out without waiting for Redis; refused, it is dropped for a new one, and no
//! caller's command is spent finding out. This is as good as what the client has seen: a close
//! not read yet (it arrived a moment ago), or none at all (the server's host vanished, a
//! partition), still fails the command that finds it, as a server that goes away just after
//! any check does; the command's failure then makes the connection suspect.
//!
//! Nothing in Conveyor uses `WATCH`, and a transaction is always sent whole in one write: the
//! `UNWATCH` of the check only matters after a failure, when it runs. A dedicated connection
//! (`RedisPool::dedicated`, held for long) is a new one, never an unchecked pooled one.

use std::time::Duration;

use deadpool::managed::{Manager, Metrics, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// Checkouts further apart than this check the connection.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The pool of one Redis server.
pub type CheckedPool = deadpool::managed::Pool<CheckedManager>;

/// deadpool-redis's manager, checking a connection only after a failure or an idle spell.
pub struct CheckedManager {
    inner: Inner,
}

/// Where the connections come from: a manager of our own, or the manager of a deadpool-redis
/// pool built elsewhere (the tests' pools), whose connections are made the same way.
enum Inner {
    Own(Box<deadpool_redis::Manager>),
    Of(deadpool_redis::Pool),
}

impl CheckedManager {
    pub fn new(inner: deadpool_redis::Manager) -> Self {
        Self {
            inner: Inner::Own(Box::new(inner)),
        }
    }

    /// Connections made by `pool`'s manager (its client and connection settings); the
    /// connections already in `pool` stay there.
    pub fn of_pool(pool: deadpool_redis::Pool) -> Self {
        Self {
            inner: Inner::Of(pool),
        }
    }

    fn manager(&self) -> &deadpool_redis::Manager {
        match &self.inner {
            Inner::Own(m) => m,
            Inner::Of(pool) => pool.manager(),
        }
    }
}

impl std::fmt::Debug for CheckedManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedManager").finish_non_exhaustive()
    }
}

/// A pooled connection and whether a command on it failed (or was cancelled) since its last
/// check.
pub struct Checked {
    pub(crate) conn: MultiplexedConnection,
    suspect: bool,
}

impl Manager for CheckedManager {
    type Type = Checked;
    type Error = RedisError;

    async fn create(&self) -> Result<Checked, RedisError> {
        Ok(Checked {
            conn: self.manager().create().await?,
            suspect: false,
        })
    }

    async fn recycle(&self, c: &mut Checked, metrics: &Metrics) -> RecycleResult<RedisError> {
        if !c.suspect && metrics.last_used() < IDLE_CHECK {
            // Refused when the connection's task has ended (it read the socket's close); or,
            // rarely, when the response timeout runs out while the task's queue is full.
            c.conn.req_packed_command(&unanswered_ping()).await?;
            return Ok(());
        }
        self.manager().recycle(&mut c.conn, metrics).await?;
        c.suspect = false;
        Ok(())
    }
}

/// A `PING` sent without waiting for its answer: queued to the connection's writer, it is
/// refused at once when the reader has ended; its `PONG` is read and discarded.
fn unanswered_ping() -> Cmd {
    let mut ping = redis::cmd("PING");
    ping.set_no_response(true);
    ping
}

impl Checked {
    pub(crate) fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            // Suspect until answered: a command dropped mid-way (timed out) leaves it so.
            let was = std::mem::replace(&mut self.suspect, true);
            let reply = self.conn.req_packed_command(cmd).await;
            self.suspect = was || reply.is_err();
            reply
        })
    }

    pub(crate) fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let was = std::mem::replace(&mut self.suspect, true);
            let reply = self.conn.req_packed_commands(cmd, offset, count).await;
            self.suspect = was || reply.is_err();
            reply
        })
    }

    pub(crate) fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
