//! [`CollateError`]: what a collation call can fail with, and whether trying again may help.

#[derive(Debug, thiserror::Error)]
pub enum CollateError {
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

impl CollateError {
    /// Whether Redis was unreachable, slow or gone mid-call (a timeout, a dropped connection,
    /// a refused connection, a busy or loading server): trying again later may succeed, and
    /// the call's effect is unknown — safe, since collation is idempotent.
    pub fn is_transient(&self) -> bool {
        match self {
            CollateError::Unavailable(_) => true,
            CollateError::Redis(e) => {
                e.is_timeout()
                    || e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || matches!(
                        e.kind(),
                        redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                    )
            }
            CollateError::Encode(_) => false,
        }
    }
}
