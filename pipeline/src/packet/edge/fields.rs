//! The rule of each packet field, applied to the [`Scalar`] the visitor read, and the checks
//! across fields (the resource part; required fields) once the object is read.

use chrono::{DateTime, Timelike, Utc};

use super::visit::Scalar;
use super::{EdgeRules, Sink, MAX_NUMBER};
use crate::ids::{PartError, ProducerName, ResourceId, ResourcePart};
use crate::packet::{Packet, MAX_TEXT_BYTES, MAX_TOTAL};

/// The fields a packet may carry, in [`super::FIELDS`] order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Number,
    SentAt,
    Producer,
    ResourceId,
    Seq,
    Total,
    Text,
}

impl Field {
    pub(super) fn of(name: &str) -> Option<Field> {
        Some(match name {
            "number" => Field::Number,
            "sent_at" => Field::SentAt,
            "producer" => Field::Producer,
            "resource_id" => Field::ResourceId,
            "seq" => Field::Seq,
            "total" => Field::Total,
            "text" => Field::Text,
            _ => return None,
        })
    }
}

/// A packet's fields as read so far: `None` = absent (or `null`), `Some(None)` = present but
/// broken (already recorded).
#[derive(Default)]
pub(super) struct Read {
    seen: [bool; 7],
    number: Option<Option<u64>>,
    sent_at: Option<Option<DateTime<Utc>>>,
    producer: Option<Option<ProducerName>>,
    resource_id: Option<Option<ResourceId>>,
    seq: Option<Option<u32>>,
    total: Option<Option<u32>>,
    text: Option<Option<String>>,
}

impl Read {
    /// Whether `field` is met for the first time in this object (a key given twice is not).
    pub(super) fn first_time(&mut self, field: Field) -> bool {
        !std::mem::replace(&mut self.seen[field as usize], true)
    }

    pub(super) fn take(
        &mut self,
        field: Field,
        value: Scalar<'_>,
        rules: &EdgeRules,
        sink: &mut Sink,
    ) {
        match field {
            Field::Number => self.number = Some(number(value, sink)),
            Field::SentAt => self.sent_at = Some(sent_at(value, rules, sink)),
            Field::Producer => {
                let parsed = name(value, ProducerName::parse);
                if parsed.is_none() {
                    sink.push("producer", ProducerName::RULE);
                }
                self.producer = Some(parsed);
            }
            Field::ResourceId => {
                let parsed = name(value, ResourceId::parse);
                if parsed.is_none() {
                    sink.push("resource_id", ResourceId::RULE);
                }
                self.resource_id = Some(parsed);
            }
            Field::Seq => self.seq = Some(small(value, "seq", sink)),
            Field::Total => self.total = Some(small(value, "total", sink)),
            Field::Text => self.text = Some(text(value, sink)),
        }
    }

    /// The packet, or `None` after recording what is missing or inconsistent.
    pub(super) fn finish(self, sink: &mut Sink) -> Option<Packet> {
        if self.number.is_none() {
            sink.push("number", "is required");
        }
        if self.sent_at.is_none() {
            sink.push("sent_at", "is required");
        }
        let part = self.part(sink);
        let producer = match self.producer {
            None => Some(ProducerName::default_producer()),
            Some(p) => p,
        };
        let text = match self.text {
            None => Some(String::new()),
            Some(t) => t,
        };
        Some(Packet {
            number: self.number??,
            sent_at: self.sent_at??,
            producer: producer?,
            part: part?,
            text: text?,
        })
    }

    /// `resource_id`, `seq` and `total` together or not at all, with `seq < total`.
    fn part(&self, sink: &mut Sink) -> Option<Option<ResourcePart>> {
        let has_id = self.resource_id.is_some();
        let mut consistent = true;
        for (name, present) in [("seq", self.seq.is_some()), ("total", self.total.is_some())] {
            if has_id && !present {
                sink.push(name, "is required with resource_id");
                consistent = false;
            } else if !has_id && present {
                sink.push(name, "is only allowed with resource_id");
                consistent = false;
            }
        }
        if !consistent {
            return None;
        }
        match (self.resource_id.clone(), self.seq, self.total) {
            (None, None, None) => Some(None),
            (Some(Some(id)), Some(Some(seq)), Some(Some(total))) => {
                match ResourcePart::new(id, seq, total) {
                    Ok(part) => Some(Some(part)),
                    Err(PartError::Total) => {
                        sink.push("total", "must be at least 1");
                        None
                    }
                    Err(PartError::Seq) => {
                        sink.push("seq", "must be less than total");
                        None
                    }
                }
            }
            _ => None, // a broken field, already recorded
        }
    }
}

fn number(value: Scalar<'_>, sink: &mut Sink) -> Option<u64> {
    match value {
        Scalar::Unsigned(n) if n <= MAX_NUMBER => Some(n),
        _ => {
            sink.push(
                "number",
                format!("must be an integer between 0 and {MAX_NUMBER} (2^53 - 1)"),
            );
            None
        }
    }
}

fn sent_at(value: Scalar<'_>, rules: &EdgeRules, sink: &mut Sink) -> Option<DateTime<Utc>> {
    const SHAPE: &str = "must be an RFC 3339 date-time string or integer epoch milliseconds";
    let parsed = match value {
        Scalar::Str(s) => DateTime::parse_from_rfc3339(&s)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        Scalar::Unsigned(ms) => i64::try_from(ms)
            .ok()
            .and_then(DateTime::from_timestamp_millis),
        _ => None,
    };
    let Some(t) = parsed else {
        sink.push("sent_at", SHAPE);
        return None;
    };
    if t.nanosecond() >= 1_000_000_000 {
        sink.push(
            "sent_at",
            "is a leap second (:60), which cannot be stored: send the next second (:00) instead",
        );
        return None;
    }
    let latest = rules.received_at.checked_add_signed(rules.max_clock_skew);
    if latest.is_some_and(|latest| t > latest) {
        sink.push(
            "sent_at",
            format!(
                "lies {} ms after the API received the packet ({}); at most MAX_CLOCK_SKEW = {} ms \
                 is accepted: check the producer's clock",
                (t - rules.received_at).num_milliseconds(),
                rules.received_at.to_rfc3339(),
                rules.max_clock_skew.num_milliseconds()
            ),
        );
        return None;
    }
    let oldest = rules.received_at.checked_sub_signed(rules.max_age);
    if oldest.is_some_and(|oldest| t < oldest) {
        sink.push(
            "sent_at",
            format!(
                "is older than MAX_MESSAGE_AGE = {} s before the API received the packet ({})",
                rules.max_age.num_seconds(),
                rules.received_at.to_rfc3339()
            ),
        );
        return None;
    }
    Some(t)
}

/// A name field: `Some(value)` when valid, `None` when present but broken (the caller records
/// the rule).
fn name<T>(value: Scalar<'_>, parse: fn(&str) -> Option<T>) -> Option<T> {
    match value {
        Scalar::Str(s) => parse(&s),
        _ => None,
    }
}

fn small(value: Scalar<'_>, field: &str, sink: &mut Sink) -> Option<u32> {
    match value {
        Scalar::Unsigned(n) if n <= MAX_TOTAL => u32::try_from(n).ok(),
        _ => {
            sink.push(
                field,
                format!("must be an integer between 0 and {MAX_TOTAL}"),
            );
            None
        }
    }
}

fn text(value: Scalar<'_>, sink: &mut Sink) -> Option<String> {
    match value {
        Scalar::Str(s) if s.len() <= MAX_TEXT_BYTES => Some(s.into_owned()),
        Scalar::Str(_) => {
            sink.push("text", format!("must be at most {MAX_TEXT_BYTES} bytes"));
            None
        }
        _ => {
            sink.push("text", "must be a string");
            None
        }
    }
}
