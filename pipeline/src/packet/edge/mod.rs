//! Packets parsed straight from the request bytes: no `serde_json::Value` of the body is ever
//! built, so a hostile body costs what its bytes cost and no more. Each field is read into a
//! scalar, checked against its rule, and every broken rule is recorded (the first
//! [`MAX_ERRORS`], with the total); unknown fields are skipped without being kept; a key given
//! twice, or bytes that are not JSON, make the whole body malformed (400). A batch is read item
//! by item and refused as soon as it holds more than its limit.
//!
//! The rules are the edge contract: whatever passes here is something Elasticsearch stores, so a
//! 202 always means "will be stored".

mod fields;
mod visit;

use chrono::{DateTime, TimeDelta, Utc};
use serde::de::DeserializeSeed;

use super::Packet;
use service_kit::problem::FieldError;
use visit::{BatchSeed, PacketSeed};

/// Largest accepted `number`: 2^53 − 1, the largest integer every JSON reader (a browser's
/// included) represents exactly.
pub const MAX_NUMBER: u64 = (1 << 53) - 1;
/// Errors listed in one answer; the answer also says how many there were.
pub const MAX_ERRORS: usize = 20;

/// What a packet's `sent_at` is checked against.
#[derive(Clone, Copy, Debug)]
pub struct EdgeRules {
    /// When the API received the request: `sent_at` may not lie more than `max_clock_skew`
    /// after it, nor more than `max_age` before it.
    pub received_at: DateTime<Utc>,
    pub max_clock_skew: TimeDelta,
    pub max_age: TimeDelta,
}

impl EdgeRules {
    /// Default `MAX_CLOCK_SKEW`: 5 s.
    pub const DEFAULT_MAX_CLOCK_SKEW: TimeDelta = TimeDelta::seconds(5);
    /// Default `MAX_MESSAGE_AGE`: 7 days.
    pub const DEFAULT_MAX_AGE: TimeDelta = TimeDelta::days(7);

    /// The default bounds around `received_at`.
    pub fn at(received_at: DateTime<Utc>) -> Self {
        EdgeRules {
            received_at,
            max_clock_skew: Self::DEFAULT_MAX_CLOCK_SKEW,
            max_age: Self::DEFAULT_MAX_AGE,
        }
    }
}

/// Why request bytes are not a packet (or a batch of them).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// Not JSON, or a key given twice: the body as a whole is unreadable (400).
    #[error("malformed: {0}")]
    Malformed(String),
    /// Rules broken (422): the first [`MAX_ERRORS`] and how many there were in all.
    #[error("{total} invalid field(s)")]
    Invalid {
        errors: Vec<FieldError>,
        total: usize,
    },
}

impl EdgeError {
    fn single(name: &str, message: impl Into<String>) -> Self {
        EdgeError::Invalid {
            errors: vec![FieldError::new(name, message)],
            total: 1,
        }
    }
}

impl Packet {
    /// One packet from the bytes of a `POST /messages` body.
    pub fn from_slice(bytes: &[u8], rules: &EdgeRules) -> Result<Packet, EdgeError> {
        let mut sink = Sink::default();
        let parsed = run(
            bytes,
            PacketSeed {
                rules,
                sink: &mut sink,
            },
        )?;
        match parsed {
            Some(packet) if sink.total == 0 => Ok(packet),
            _ => Err(sink.into_error()),
        }
    }

    /// 1 to `max` packets from the bytes of a `POST /messages/batch` body: all valid, or every
    /// error named `[i].field` (item `i`).
    pub fn batch_from_slice(
        bytes: &[u8],
        rules: &EdgeRules,
        max: usize,
    ) -> Result<Vec<Packet>, EdgeError> {
        let mut sink = Sink::default();
        let mut too_long = false;
        let result = run(
            bytes,
            BatchSeed {
                rules,
                sink: &mut sink,
                max,
                too_long: &mut too_long,
            },
        );
        let length_rule = || EdgeError::single("$", format!("must hold 1 to {max} packets"));
        // Items that broke rules are not collected: a batch whose every item is invalid names
        // those items, not its length.
        match result {
            Err(_) if too_long => Err(length_rule()),
            Err(e) => Err(e),
            Ok(_) if sink.total > 0 => Err(sink.into_error()),
            Ok(None) => Err(sink.into_error()),
            Ok(Some(packets)) if packets.is_empty() => Err(length_rule()),
            Ok(Some(packets)) => Ok(packets),
        }
    }
}

/// Deserializes `bytes` with `seed`, then insists on nothing but whitespace after the value.
fn run<'de, S: DeserializeSeed<'de>>(bytes: &'de [u8], seed: S) -> Result<S::Value, EdgeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = seed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| EdgeError::Malformed(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Where broken rules go: the first [`MAX_ERRORS`], named under the current batch item.
#[derive(Default)]
struct Sink {
    errors: Vec<FieldError>,
    total: usize,
    item: Option<usize>,
}

impl Sink {
    fn push(&mut self, name: &str, message: impl Into<String>) {
        self.total += 1;
        if self.errors.len() >= MAX_ERRORS {
            return;
        }
        let name = match (self.item, name) {
            (None, name) => name.to_string(),
            (Some(i), "$") => format!("[{i}]"),
            (Some(i), name) => format!("[{i}].{name}"),
        };
        self.errors.push(FieldError::new(name, message));
    }

    fn into_error(self) -> EdgeError {
        EdgeError::Invalid {
            errors: self.errors,
            total: self.total,
        }
    }
}
