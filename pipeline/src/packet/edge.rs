//! Packets parsed straight from the request bytes: no `serde_json::Value` of the body is ever
//! built, so a hostile body costs what its bytes cost and no more. Each field is read into a
//! scalar, checked against its rule, and every broken rule is recorded (the first
//! [`MAX_ERRORS`], with the total); unknown fields are skipped without being kept; a key given
//! twice, or bytes that are not JSON, make the whole body malformed (400). A batch is read item
//! by item and refused as soon as it holds more than its limit.
//!
//! The rules are the edge contract: whatever passes here is something Elasticsearch stores, so a
//! 202 always means "will be stored".

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Packet, DEFAULT_PRODUCER, MAX_TEXT_BYTES, MAX_TOTAL};
use crate::ids::{PartError, ProducerName, ResourceId, ResourcePart};
use service_kit::problem::FieldError;

/// Largest accepted `number`: 2^53 − 1, the largest integer every JSON reader (a browser's
/// included) represents exactly.
pub const MAX_NUMBER: u64 = (1 << 53) - 1;
/// Errors listed in one answer; the answer also says how many there were.
pub const MAX_ERRORS: usize = 20;
/// Longest field name echoed back in an error, in bytes.
const MAX_NAME_ECHO: usize = 64;

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
        match result {
            Err(_) if too_long => Err(length_rule()),
            Err(e) => Err(e),
            Ok(None) => Err(sink.into_error()),
            Ok(Some(packets)) if packets.is_empty() => Err(length_rule()),
            Ok(Some(packets)) if sink.total == 0 => Ok(packets),
            Ok(Some(_)) => Err(sink.into_error()),
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

/// One JSON value of a field, as far as the rules need it: containers are skipped, not kept.
enum Scalar<'de> {
    Null,
    Bool,
    Unsigned(u64),
    Negative,
    Float,
    Str(Cow<'de, str>),
    Container,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool)
    }
    fn visit_u64<E>(self, n: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Unsigned(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Scalar<'de>, E> {
        Ok(u64::try_from(n).map_or(Scalar::Negative, Scalar::Unsigned))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Float)
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Container)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Container)
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// The fields a packet may carry, in [`super::FIELDS`] order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Number,
    SentAt,
    Producer,
    ResourceId,
    Seq,
    Total,
    Text,
}

impl Field {
    fn of(name: &str) -> Option<Field> {
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
struct Read {
    seen: [bool; 7],
    number: Option<Option<u64>>,
    sent_at: Option<Option<DateTime<Utc>>>,
    producer: Option<Option<ProducerName>>,
    resource_id: Option<Option<ResourceId>>,
    seq: Option<Option<u32>>,
    total: Option<Option<u32>>,
    text: Option<Option<String>>,
}

struct PacketSeed<'a> {
    rules: &'a EdgeRules,
    sink: &'a mut Sink,
}

impl<'de> DeserializeSeed<'de> for PacketSeed<'_> {
    type Value = Option<Packet>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Packet>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PacketSeed<'_> {
    type Value = Option<Packet>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a packet object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Packet>, A::Error> {
        let mut read = Read::default();
        while let Some(key) = map.next_key::<Scalar<'de>>()? {
            // serde_json map keys are always strings.
            let Scalar::Str(key) = key else {
                return Err(de::Error::custom("a key that is not a string"));
            };
            let Some(field) = Field::of(&key) else {
                self.sink.push(&echo(&key), "unknown field");
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let slot = &mut read.seen[field as usize];
            if std::mem::replace(slot, true) {
                return Err(de::Error::custom(format_args!("key {key:?} given twice")));
            }
            let value: Scalar<'de> = map.next_value()?;
            if matches!(value, Scalar::Null) {
                continue; // null is absent
            }
            read.take(field, value, self.rules, self.sink);
        }
        Ok(read.finish(self.sink))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Packet>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.sink.push("$", "must be a JSON object");
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
    fn visit_unit<E>(self) -> Result<Option<Packet>, E> {
        self.not_an_object()
    }
}

impl PacketSeed<'_> {
    fn not_an_object<E>(self) -> Result<Option<Packet>, E> {
        self.sink.push("$", "must be a JSON object");
        Ok(None)
    }
}

/// A field name as it may be echoed: at most [`MAX_NAME_ECHO`] bytes.
fn echo(name: &str) -> String {
    if name.len() <= MAX_NAME_ECHO {
        return name.to_string();
    }
    let mut end = MAX_NAME_ECHO;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

impl Read {
    fn take(&mut self, field: Field, value: Scalar<'_>, rules: &EdgeRules, sink: &mut Sink) {
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
    fn finish(self, sink: &mut Sink) -> Option<Packet> {
        if self.number.is_none() {
            sink.push("number", "is required");
        }
        if self.sent_at.is_none() {
            sink.push("sent_at", "is required");
        }
        let part = self.part(sink);
        let producer = match self.producer {
            None => Some(ProducerName::parse(DEFAULT_PRODUCER).expect("the default is valid")),
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

struct BatchSeed<'a> {
    rules: &'a EdgeRules,
    sink: &'a mut Sink,
    max: usize,
    too_long: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Option<Vec<Packet>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Option<Vec<Packet>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of packets")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut packets = Vec::new();
        let mut i = 0;
        loop {
            if i == self.max {
                // One more item is one too many: stop reading here.
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    *self.too_long = true;
                    return Err(de::Error::custom("too many packets"));
                }
                break;
            }
            self.sink.item = Some(i);
            let item = PacketSeed {
                rules: self.rules,
                sink: self.sink,
            };
            match seq.next_element_seed(item)? {
                None => break,
                Some(Some(packet)) => packets.push(packet),
                Some(None) => {}
            }
            i += 1;
        }
        self.sink.item = None;
        Ok(Some(packets))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.not_an_array()
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        self.not_an_array()
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        self.not_an_array()
    }
}

impl BatchSeed<'_> {
    fn not_an_array<E>(self) -> Result<Option<Vec<Packet>>, E> {
        self.sink.push("$", "must be a JSON array of packets");
        Ok(None)
    }
}
