//! Field names of the entries the queue keeps in Redis, public so code elsewhere (a Lua script,
//! a dashboard) reads and writes them without spelling them again.
//!
//! A job entry in a partition stream (`Keys::stream`), as a Lua script elsewhere may XADD it:
//! `XADD <stream> * id <job id> payload <json> attempt 1 enqueued_at <unix ms> [reply 1]
//! [history <json>] [traceparent <W3C traceparent>]` ([`ENTRY_FIELDS`] first, in that order).
//!
//! A dead letter in a partition's dead-letter stream (`Keys::dead`):
//! `XADD <dead> * id <job id> payload <json> error <final error> attempts <n>
//! history <json> dead_at <unix ms>` (exactly [`DEAD_FIELDS`], in that order).
//!
//! Optional in a job entry: `traceparent <W3C traceparent>` ([`TRACE`]), the trace context of
//! the span that enqueued the job; entries without it (older ones included) read as untraced.

/// The job id (a UUID v7 string).
pub const ID: &str = "id";
/// The job's payload, JSON.
pub const PAYLOAD: &str = "payload";
/// 1-based attempt number of a job entry.
pub const ATTEMPT: &str = "attempt";
/// Unix milliseconds of the first enqueue.
pub const ENQUEUED_AT: &str = "enqueued_at";
/// Optional, `1`: a caller waits for the result.
pub const REPLY: &str = "reply";
/// JSON array of the errors of earlier attempts: optional in a job entry (set by retries and
/// waits), always in a dead letter (ending with its final error).
pub const HISTORY: &str = "history";
/// Optional: the W3C `traceparent` of the span that enqueued the job (`00-<trace id>-<span id>-
/// <flags>`), carried unchanged by retries and waits (not by dead letters).
pub const TRACE: &str = "traceparent";
/// A dead letter's final error.
pub const ERROR: &str = "error";
/// Attempts a dead-lettered job used (0 if it was dead-lettered without running).
pub const ATTEMPTS: &str = "attempts";
/// Unix milliseconds a job was dead-lettered.
pub const DEAD_AT: &str = "dead_at";

/// The fields every job entry starts with, in order.
pub const ENTRY_FIELDS: [&str; 4] = [ID, PAYLOAD, ATTEMPT, ENQUEUED_AT];
/// The fields of a dead letter, in order.
pub const DEAD_FIELDS: [&str; 6] = [ID, PAYLOAD, ERROR, ATTEMPTS, HISTORY, DEAD_AT];
