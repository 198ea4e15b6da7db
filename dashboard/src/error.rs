//! Why the dashboard's figures could not be read: one error type for both sources. Its text is
//! shown on the page (the source's status line), so it names no secrets. The dashboard's only
//! error answer of its own is the 503 of `/events` past `MAX_SSE_CLIENTS` (routes/events.rs);
//! unknown paths and wrong methods are the kit's 404/405.

/// A failed round trip of the poller to Elasticsearch or Redis.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("elasticsearch unreachable: {0}")]
    EsUnreachable(String),
    #[error("elasticsearch answered {status}: {reason}")]
    EsRejected { status: u16, reason: String },
    #[error("elasticsearch answer not understood: {0}")]
    EsDecode(String),
    #[error("redis: {0}")]
    Redis(String),
    #[error("redis: no answer within {0} ms")]
    RedisTimeout(u128),
}
