//! The worker's error tiers: how a failure becomes a job outcome. A dependency that is down
//! (Elasticsearch unreachable or overloaded, the webhook target unreachable or answering
//! 502/503/504) is `Wait`: the job waits without using up an attempt, however long the outage.
//! A failure that may pass on retry (a collation round trip, a 5xx, 401/403 after a secret
//! rotation) is `Retry` with the queue's backoff. A rejection that will never pass (a document
//! Elasticsearch refuses, a 4xx answer) is `Dead`, with the reason. Success is `Done`.

use std::time::Duration;

use pipeline::packet::StoredMessage;
use queue::Outcome;

/// The job's answer: its stored document (what a `?wait=true` caller receives). Built only when
/// a caller waits (`reply`): the queue drops the value of every other job unread, and building
/// a JSON value per message was ~5 % of the worker's CPU under load.
pub fn done(doc: &StoredMessage, reply: bool) -> Outcome {
    if !reply {
        return Outcome::Done(serde_json::Value::Null);
    }
    match serde_json::to_value(doc) {
        Ok(value) => Outcome::Done(value),
        Err(e) => Outcome::Dead {
            reason: format!("encoding the result: {e}"),
        },
    }
}

/// A dependency is down: try again later without counting an attempt.
pub fn wait(reason: &str) -> Outcome {
    Outcome::Wait {
        reason: format!("elasticsearch unavailable: {reason}"),
        after: DEPENDENCY_WAIT,
    }
}

/// How long a batch handed back for an Elasticsearch outage waits before it is read again.
const DEPENDENCY_WAIT: Duration = Duration::from_secs(1);

pub fn retry(error: &str) -> Outcome {
    Outcome::Retry {
        error: error.to_string(),
        after: None,
    }
}
