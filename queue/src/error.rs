//! The one error type of the queue crate. It classifies Redis failures so callers can tell
//! "Redis is unreachable" (answer 503, retry later) from protocol or encoding errors.
//! It must not log or retry: callers decide what to do with an error.

use crate::job::JobId;

/// Everything a queue operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Connection, pool or I/O trouble: Redis is not reachable right now.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The command was sent but its answer never came (a response timeout, a connection lost
    /// mid-call): it may or may not have run. Not "unavailable" — retrying may run it twice,
    /// unless the job carries an id ([`EnqueueOptions::job_id`](crate::EnqueueOptions::job_id)),
    /// which makes the retry safe.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The queue's stored partition count differs from this process's configuration.
    #[error("queue {queue}: configured with {configured} partitions, but Redis says the queue has {stored} partitions (set the same partition count everywhere)")]
    Partitions {
        queue: String,
        configured: u16,
        stored: u16,
    },
    /// Redis answered with an error (or an unexpected reply).
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// The payload or a result could not be (de)serialized.
    #[error("payload encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// `enqueue_and_wait` gave up waiting; the job itself may still run later.
    #[error("timed out waiting for job {job_id}")]
    Timeout { job_id: JobId },
    /// An operator's request that cannot be carried out as asked: no such dead letter or delayed
    /// job, a purge confirmation token that is wrong or expired, an unknown queue. Nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The write was done on the master, but fewer replicas than asked
    /// ([`QueueConfig::wait_replicas`](crate::QueueConfig::wait_replicas)) confirmed it within
    /// the wait timeout: a failover now could lose it. The job may exist (and run): retry with
    /// the same job id ([`EnqueueOptions::job_id`](crate::EnqueueOptions::job_id)), which
    /// enqueues it at most once, or accept a possible duplicate.
    #[error("written on the master but confirmed by {acked} of {wanted} replicas within the wait timeout")]
    NotReplicated { wanted: u32, acked: u32 },
    /// The waited-for job was dead-lettered instead of completing.
    #[error("job {job_id} failed: {reason}")]
    Failed { job_id: JobId, reason: String },
}

impl QueueError {
    /// True for pool, connection and I/O errors (Redis down or restarting).
    pub fn is_unavailable(&self) -> bool {
        match self {
            QueueError::Unavailable(_) => true,
            QueueError::Redis(e) => redis_unavailable(e),
            _ => false,
        }
    }

    /// True when the write was done but not confirmed by enough replicas
    /// ([`QueueError::NotReplicated`]).
    pub fn is_not_replicated(&self) -> bool {
        matches!(self, QueueError::NotReplicated { .. })
    }

    /// True when a command was sent but its answer never came ([`QueueError::OutcomeUnknown`]).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, QueueError::OutcomeUnknown(_))
    }

    /// A failure of a command that was (or may have been) sent: an answer that never came is
    /// "outcome unknown"; a refused connection (nothing sent) stays as it is.
    pub(crate) fn after_send(e: redis::RedisError) -> QueueError {
        if e.is_connection_refusal() {
            return QueueError::Redis(e);
        }
        if e.is_timeout() || e.is_connection_dropped() || e.is_io_error() {
            return QueueError::OutcomeUnknown(e.to_string());
        }
        QueueError::Redis(e)
    }

    /// True when Redis refused a write because it is at `maxmemory` (`OOM`, with the
    /// `noeviction` policy Conveyor runs it with): nothing was stored, and retrying later is safe.
    pub fn is_full(&self) -> bool {
        let QueueError::Redis(e) = self else {
            return false;
        };
        // Alone, or inside a pipeline/transaction (where EXECABORT follows it).
        e.code() == Some("OOM")
            || e.clone()
                .into_server_errors()
                .is_some_and(|items| items.iter().any(|(_, err)| err.code() == "OOM"))
    }
}

/// Whether a Redis error means "the server is not reachable" rather than "the command failed".
/// A server that answers "wait and retry" counts as unreachable too: `LOADING` (a restart still
/// replaying its AOF), `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`; and so does a Redis Cluster
/// changing its topology (a failover or a slot migration) past the client's own retries:
/// `MOVED`, `ASK`, `READONLY` (a demoted master), no connection to a slot's node — alone or
/// inside a pipeline or transaction.
pub(crate) fn redis_unavailable(e: &redis::RedisError) -> bool {
    use redis::RetryMethod as R;
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.retry_method(),
            R::WaitAndRetry
                | R::MovedRedirect
                | R::AskRedirect
                | R::RefreshSlotsAndRetry
                | R::ReconnectFromInitialConnections
        )
        || e.clone()
            .into_server_errors()
            .is_some_and(|items| items.iter().any(|(_, err)| topology_code(err.code())))
}

/// Server error codes of a node that cannot take the command now, though another node (or the
/// same, a moment later) will: a cluster mid-failover or mid-migration, a server still loading.
pub(crate) fn topology_code(code: &str) -> bool {
    matches!(
        code,
        "MOVED" | "ASK" | "READONLY" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "LOADING"
    )
}

impl From<deadpool_redis::PoolError> for QueueError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        QueueError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind, RedisError, ServerErrorKind};

    #[test]
    fn a_redis_still_loading_its_aof_is_unavailable_a_wrong_command_is_not() {
        let loading = RedisError::from((
            ErrorKind::Server(ServerErrorKind::BusyLoading),
            "Redis is loading the dataset in memory",
        ));
        assert!(QueueError::Redis(loading).is_unavailable());
        let wrong = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ));
        assert!(!QueueError::Redis(wrong).is_unavailable());
    }
}
