//! [`CollateError`]: what a collation call can fail with, and whether trying again may help.

#[derive(Debug, thiserror::Error)]
pub enum CollateError {
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// Recorded on the master, but fewer replicas than the replication wait asks confirmed it.
    #[error("collation written on the master but confirmed by {acked} of {wanted} replicas")]
    NotReplicated { wanted: u32, acked: u32 },
}

impl CollateError {
    /// Whether Redis was unreachable, slow or gone mid-call (a timeout, a dropped connection,
    /// a refused connection, a busy or loading server, a cluster mid-failover, too few replicas
    /// confirming): trying again later may succeed, and the call's effect is unknown — safe,
    /// since collation is idempotent.
    pub fn is_transient(&self) -> bool {
        match self {
            CollateError::Unavailable(_) | CollateError::NotReplicated { .. } => true,
            CollateError::Redis(e) => {
                e.is_timeout()
                    || e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || matches!(
                        e.kind(),
                        redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                    )
                    || matches!(e.retry_method(), redis::RetryMethod::WaitAndRetry)
            }
            CollateError::Encode(_) => false,
        }
    }
}
