//! The job model: ids, the typed [`Job`] a handler sees, the [`Outcome`] it returns, the wire
//! layout of stream entries and dead letters ([`wire`]) and the reports ([`QueueStats`],
//! [`DeadLetter`]). Encoding and decoding of entries happens here and nowhere else; no Redis I/O.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use crate::wire;

/// A job's unique id (a UUID v7 string: time-ordered).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobId(pub String);

impl JobId {
    pub(crate) fn generate() -> JobId {
        JobId(uuid::Uuid::now_v7().to_string())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One job as a handler sees it.
#[derive(Clone, Debug)]
pub struct Job<T> {
    pub id: JobId,
    pub payload: T,
    /// 1-based attempt number.
    pub attempt: u32,
    pub enqueued_at: SystemTime,
    pub partition: u16,
    /// Whether a caller waits for this job's result (`enqueue_and_wait`). When false, the value
    /// of `Outcome::Done` is dropped unread, so a handler may answer `Done(Value::Null)` instead
    /// of building it.
    pub reply_wanted: bool,
    /// The W3C `traceparent` of the span that enqueued the job ([`wire::TRACE`]), kept across
    /// retries and waits; `None` for a job enqueued without one (and for entries written before
    /// the field existed). A handler continues the trace from it.
    pub trace: Option<String>,
}

/// What became of one job.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Finished; the value (`Value::Null` if none) is published if a reply is wanted.
    Done(serde_json::Value),
    /// Try again later: after `after`, or with exponential backoff if `None`. Dead after max attempts.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Give up now: straight to the dead-letter stream.
    Dead { reason: String },
    /// A dependency is down (Elasticsearch unreachable, webhook target down): run the job again
    /// after `after` with the SAME attempt number, so waiting never uses up `max_attempts` and a
    /// long outage never dead-letters the job. Unbounded by design: the job waits as long as the
    /// dependency stays down. `reason` goes into the job's history at most once per run of
    /// waits (the latest reason replaces an earlier wait note), so the entry stays small however
    /// long it waits. Poison detection does not see waits: the job comes back as a new stream
    /// entry, whose delivery count starts again at 1.
    /// `after` below [`MIN_WAIT`] is raised to it, so a careless handler cannot spin.
    Wait { reason: String, after: Duration },
}

/// Shortest delay of an [`Outcome::Wait`].
pub const MIN_WAIT: Duration = Duration::from_millis(10);

/// Prefix of a history item written by [`Outcome::Wait`] (what the job waited for).
pub(crate) const WAIT_NOTE: &str = "waiting: ";

// Read by `Queue::stats`. With the feature `openapi` it is a `utoipa::ToSchema` whose
// descriptions are the doc comments below: they are written for API clients.
/// Counters of one queue, summed over its partitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStats {
    /// Jobs waiting to be delivered to a worker (stream length minus pending, exact).
    pub backlog: u64,
    /// Jobs delivered to a worker and not yet settled (running, or left by a worker that died
    /// and waiting to be reclaimed).
    pub pending: u64,
    /// Jobs waiting for their time: scheduled jobs, retries and waits for a dependency.
    pub delayed: u64,
    /// Jobs in the dead-letter streams (failed for good).
    pub dead: u64,
    /// Dead letters trimmed away (oldest first) to keep the dead-letter streams near their
    /// length limit, since the queue began; not counted in `dead`.
    #[serde(default)]
    pub dead_trimmed: u64,
    /// Redis memory held by the jobs not yet settled (the streams and the delayed sets), in
    /// bytes, as Redis estimates it (`MEMORY USAGE`, sampled).
    #[serde(default)]
    pub bytes: u64,
    /// Workers that sent a heartbeat in the last 15 seconds.
    pub workers: u64,
}

/// One dead-lettered job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadLetter {
    pub job_id: JobId,
    pub payload: serde_json::Value,
    pub error: String,
    pub attempts: u32,
    /// Errors of every attempt, oldest first; a `waiting: <reason>` item marks that the job
    /// waited for a dependency ([`Outcome::Wait`]) before the next item.
    pub history: Vec<String>,
    pub dead_at_ms: u64,
}

impl DeadLetter {
    /// Reads a dead letter from a dead-letter stream entry's field map; `None` without an id.
    pub(crate) fn from_map(map: &HashMap<String, redis::Value>) -> Option<DeadLetter> {
        let get = |k: &str| {
            map.get(k)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        };
        let payload_raw = get(wire::PAYLOAD).unwrap_or_default();
        Some(DeadLetter {
            job_id: JobId(get(wire::ID)?),
            payload: serde_json::from_str(&payload_raw)
                .unwrap_or(serde_json::Value::String(payload_raw)),
            error: get(wire::ERROR).unwrap_or_default(),
            attempts: get(wire::ATTEMPTS)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
            history: get(wire::HISTORY)
                .and_then(|h| serde_json::from_str(&h).ok())
                .unwrap_or_default(),
            dead_at_ms: get(wire::DEAD_AT).and_then(|a| a.parse().ok()).unwrap_or(0),
        })
    }
}

/// Unix milliseconds of `t` (0 before the epoch).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds [`skew_clock_for_tests`] adds to this process's clock (0 outside such tests).
static CLOCK_SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// Skews this process's clock, as the queue reads it, by `ms` (negative: behind): a test hook
/// that shows which decisions depend on a worker's clock. None that decide when a job runs may
/// (promotion and retry scheduling use Redis `TIME`). Not for use outside tests.
#[doc(hidden)]
pub fn skew_clock_for_tests(ms: i64) {
    CLOCK_SKEW_MS.store(ms, Ordering::Relaxed);
}

/// This process's clock in unix milliseconds (skewed only by [`skew_clock_for_tests`]).
pub(crate) fn now_ms() -> u64 {
    unix_ms(SystemTime::now()).saturating_add_signed(CLOCK_SKEW_MS.load(Ordering::Relaxed))
}

/// A job entry's fields, untyped: what travels through streams and the delayed set.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub id: String,
    pub payload: String,
    pub attempt: u32,
    pub enqueued_at: u64,
    pub reply: bool,
    pub history: Vec<String>,
    /// The enqueuer's W3C `traceparent`, if any ([`wire::TRACE`]).
    pub trace: Option<String>,
}

impl Entry {
    pub fn new(payload: String, reply: bool) -> Entry {
        Entry::with_id(payload, reply, None)
    }

    /// A first attempt with the caller's id, or a generated one.
    pub fn with_id(payload: String, reply: bool, id: Option<String>) -> Entry {
        Entry {
            id: id.unwrap_or_else(|| JobId::generate().0),
            payload,
            attempt: 1,
            enqueued_at: now_ms(),
            reply,
            history: Vec::new(),
            trace: None,
        }
    }

    /// The same entry carrying the enqueuer's trace context (a W3C `traceparent`; an empty
    /// value counts as none).
    pub fn traced(mut self, trace: Option<&str>) -> Entry {
        self.trace = trace.filter(|t| !t.is_empty()).map(str::to_string);
        self
    }

    /// Records a wait in the history, keeping it bounded: the last history item is replaced if
    /// it already is a wait note, so between two real attempts there is at most one wait note
    /// (the latest reason). History length stays ≤ 2 × attempts however often the job waits.
    pub fn note_wait(&mut self, reason: &str) {
        let note = format!("{WAIT_NOTE}{reason}");
        match self.history.last_mut() {
            Some(last) if last.starts_with(WAIT_NOTE) => *last = note,
            _ => self.history.push(note),
        }
    }

    /// Field/value pairs in stream order (the [`wire`] layout).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            (wire::ID, self.id.clone()),
            (wire::PAYLOAD, self.payload.clone()),
            (wire::ATTEMPT, self.attempt.to_string()),
            (wire::ENQUEUED_AT, self.enqueued_at.to_string()),
        ];
        if self.reply {
            f.push((wire::REPLY, "1".to_string()));
        }
        if !self.history.is_empty() {
            let h = serde_json::to_string(&self.history).unwrap_or_else(|_| "[]".into());
            f.push((wire::HISTORY, h));
        }
        if let Some(trace) = &self.trace {
            f.push((wire::TRACE, trace.clone()));
        }
        f
    }

    /// The delayed-set member: a JSON array of field/value strings, unpacked by `promote.lua`.
    pub fn delayed_member(&self) -> String {
        let mut flat: Vec<String> = Vec::with_capacity(12);
        for (k, v) in self.fields() {
            flat.push(k.to_string());
            flat.push(v);
        }
        // Cannot fail: a list of strings always serializes.
        serde_json::to_string(&flat).unwrap_or_else(|_| "[]".to_string())
    }

    /// Field/value pairs of this entry as a dead letter ([`wire::DEAD_FIELDS`], in order): its
    /// final error and its whole history, ending with that error.
    pub fn dead_fields(&self, error: &str) -> Vec<(&'static str, String)> {
        let mut history = self.history.clone();
        history.push(error.to_string());
        vec![
            (wire::ID, self.id.clone()),
            (wire::PAYLOAD, self.payload.clone()),
            (wire::ERROR, error.to_string()),
            (wire::ATTEMPTS, self.attempt.to_string()),
            (
                wire::HISTORY,
                serde_json::to_string(&history).unwrap_or_else(|_| "[]".into()),
            ),
            (wire::DEAD_AT, now_ms().to_string()),
        ]
    }

    /// Reads an entry from a stream entry's field map; `None` if a required field is missing.
    pub fn from_map(map: &HashMap<String, redis::Value>) -> Option<Entry> {
        let get = |k: &str| -> Option<String> {
            map.get(k)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        };
        Some(Entry {
            id: get(wire::ID)?,
            payload: get(wire::PAYLOAD)?,
            attempt: get(wire::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(1),
            enqueued_at: get(wire::ENQUEUED_AT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
            reply: get(wire::REPLY).as_deref() == Some("1"),
            history: get(wire::HISTORY)
                .and_then(|h| serde_json::from_str(&h).ok())
                .unwrap_or_default(),
            trace: get(wire::TRACE).filter(|t| !t.is_empty()),
        })
    }
}

impl Entry {
    /// How many arguments its `ToRedisArgs` writes (field/value pairs), without writing them:
    /// `enqueue_many.lua` is told each job's count.
    pub(crate) fn arg_count(&self) -> usize {
        8 + 2
            * (usize::from(self.reply)
                + usize::from(!self.history.is_empty())
                + usize::from(self.trace.is_some()))
    }
}

/// Writes the entry as XADD field/value arguments without building intermediate strings
/// (this is the bulk-enqueue hot path). [`Entry::arg_count`] counts them.
impl redis::ToRedisArgs for Entry {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        out.write_arg(wire::ID.as_bytes());
        out.write_arg(self.id.as_bytes());
        out.write_arg(wire::PAYLOAD.as_bytes());
        out.write_arg(self.payload.as_bytes());
        out.write_arg(wire::ATTEMPT.as_bytes());
        out.write_arg_fmt(self.attempt);
        out.write_arg(wire::ENQUEUED_AT.as_bytes());
        out.write_arg_fmt(self.enqueued_at);
        if self.reply {
            out.write_arg(wire::REPLY.as_bytes());
            out.write_arg(b"1");
        }
        if !self.history.is_empty() {
            out.write_arg(wire::HISTORY.as_bytes());
            out.write_arg(
                serde_json::to_string(&self.history)
                    .unwrap_or_default()
                    .as_bytes(),
            );
        }
        if let Some(trace) = &self.trace {
            out.write_arg(wire::TRACE.as_bytes());
            out.write_arg(trace.as_bytes());
        }
    }
}

/// What a worker stores and announces for a reply-wanted job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ReplyMsg {
    pub id: String,
    pub ok: bool,
    #[serde(default)]
    pub value: serde_json::Value,
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_count_counts_what_to_redis_args_writes() {
        let count = |e: &Entry| redis::ToRedisArgs::to_redis_args(e).len();
        let mut e = Entry::new("{}".into(), false);
        assert_eq!((e.arg_count(), count(&e)), (8, 8));
        e.reply = true;
        assert_eq!((e.arg_count(), count(&e)), (10, 10));
        e.history.push("boom".into());
        assert_eq!((e.arg_count(), count(&e)), (12, 12));
        e.trace = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        assert_eq!((e.arg_count(), count(&e)), (14, 14));
        e.reply = false;
        assert_eq!((e.arg_count(), count(&e)), (12, 12));
    }

    #[test]
    fn delayed_member_is_a_flat_field_list() {
        let mut e = Entry::new("{\"a\":1}".into(), true);
        e.history.push("boom".into());
        let flat: Vec<String> = serde_json::from_str(&e.delayed_member()).unwrap();
        assert_eq!(flat[0], "id");
        assert_eq!(flat[3], "{\"a\":1}");
        assert!(flat.contains(&"reply".to_string()));
        assert_eq!(flat.last().unwrap(), "[\"boom\"]");
        let args: Vec<String> = redis::ToRedisArgs::to_redis_args(&e)
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap())
            .collect();
        assert_eq!(args, flat, "XADD arguments and the delayed member agree");
    }

    #[test]
    fn field_orders_match_the_published_layouts() {
        let mut e = Entry::new("{}".into(), true);
        e.history.push("first".into());
        let names: Vec<&str> = e.fields().iter().map(|(k, _)| *k).collect();
        assert_eq!(names[..4], wire::ENTRY_FIELDS);
        let dead = e.dead_fields("last");
        let names: Vec<&str> = dead.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, wire::DEAD_FIELDS);
        assert_eq!(dead[4].1, r#"["first","last"]"#);
        let map = dead
            .into_iter()
            .map(|(k, v)| (k.to_string(), redis::Value::BulkString(v.into_bytes())))
            .collect();
        let letter = DeadLetter::from_map(&map).unwrap();
        assert_eq!(letter.job_id.0, e.id);
        assert_eq!(letter.error, "last");
        assert_eq!(letter.attempts, 1);
        assert_eq!(letter.history, ["first", "last"]);
    }

    #[test]
    fn wait_notes_do_not_pile_up() {
        let mut e = Entry::new("1".into(), false);
        for i in 0..100 {
            e.note_wait(if i % 2 == 0 { "es down" } else { "es timeout" });
        }
        assert_eq!(e.history, vec!["waiting: es timeout".to_string()]);
        e.history.push("real failure".into());
        e.note_wait("es down");
        e.note_wait("es down");
        assert_eq!(
            e.history,
            vec![
                "waiting: es timeout".to_string(),
                "real failure".to_string(),
                "waiting: es down".to_string()
            ]
        );
    }
}
