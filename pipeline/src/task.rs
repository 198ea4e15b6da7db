//! The ancillary task: turn a packet's text into the lengths of its words, and a received job
//! into the document the worker stores. Pure functions: no I/O, no clock reads (callers pass
//! `stored_at`), no panics.

use chrono::{DateTime, Utc};

use crate::packet::{MessageJob, StoredMessage};

/// Length in Unicode scalar values (chars, not bytes) of each whitespace-separated word.
pub fn word_lengths(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .map(|w| u32::try_from(w.chars().count()).unwrap_or(u32::MAX))
        .collect()
}

/// `later − earlier` in fractional milliseconds (negative when the clocks disagree).
pub fn millis_between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> f64 {
    let delta = later - earlier;
    match delta.num_microseconds() {
        Some(us) => us as f64 / 1000.0,
        None => delta.num_milliseconds() as f64,
    }
}

/// The stored document for a job: word lengths, transit time (`received_at − sent_at`) and the
/// packet's fields.
pub fn process(job: &MessageJob, stored_at: DateTime<Utc>) -> StoredMessage {
    process_owned(job.clone(), stored_at)
}

/// [`process`] for a job the caller no longer needs: its strings move into the document
/// instead of being copied (the worker's hot path).
pub fn process_owned(job: MessageJob, stored_at: DateTime<Utc>) -> StoredMessage {
    let MessageJob {
        packet: p,
        received_at,
    } = job;
    StoredMessage {
        word_lengths: word_lengths(&p.text),
        transit_ms: millis_between(p.sent_at, received_at),
        producer: p.producer,
        number: p.number,
        sent_at: p.sent_at,
        received_at,
        stored_at,
        text: p.text,
        part: p.part,
    }
}
