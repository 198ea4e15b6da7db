//! The packet model: what a producer sends (`Packet`), the job the consumer enqueues
//! (`MessageJob`) and the processed document the worker stores (`StoredMessage`).
//!
//! Packets are parsed and validated here, at the edge, from untrusted JSON into a type that
//! cannot be wrong; every rule violation is reported per field (for a 422 answer). Unknown
//! fields are rejected, not ignored. This module does no I/O and never panics on input.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{self, PartError, ProducerName, ResourceId, ResourcePart};

/// Largest accepted `text`, in bytes of UTF-8 (64 KiB).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Largest accepted `total` of a resource.
pub const MAX_TOTAL: u64 = ids::MAX_TOTAL as u64;
/// Producer used when a packet names none.
pub const DEFAULT_PRODUCER: &str = "default";
/// The fields a packet may carry; anything else is rejected.
pub const FIELDS: [&str; 7] = [
    "number",
    "sent_at",
    "producer",
    "resource_id",
    "seq",
    "total",
    "text",
];

/// A validated packet (body of `POST /messages`). On the wire (and in the job) the resource
/// part is the three flat fields `resource_id`, `seq`, `total`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "wire::PacketFields")]
pub struct Packet {
    /// Integer ≥ 0, counting up from 0 per producer.
    pub number: u64,
    /// The producer's send time: RFC 3339 string or epoch milliseconds on input.
    pub sent_at: DateTime<Utc>,
    /// Default `"default"`.
    pub producer: ProducerName,
    /// Which part of which resource this packet is, if any.
    pub part: Option<ResourcePart>,
    /// Whitespace-separated words, at most 64 KiB.
    pub text: String,
}

impl Packet {
    /// The natural key, also the Elasticsearch `_id`: `"{producer}:{number}"`.
    pub fn doc_id(&self) -> String {
        format!("{}:{}", self.producer, self.number)
    }

    /// The queue partition key: the resource id, so a resource's packets share a partition.
    pub fn partition_key(&self) -> Option<String> {
        self.part.as_ref().map(|p| p.id().to_string())
    }

    /// Parses raw JSON bytes. Malformed JSON is reported as one error named `$`; callers that
    /// must tell malformed JSON (400) from invalid fields (422) parse to a `Value` first.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Packet, ValidationErrors> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => Packet::parse(&value),
            Err(e) => Err(ValidationErrors::single(
                "$",
                format!("malformed JSON: {e}"),
            )),
        }
    }

    /// Validates a JSON value, collecting every field error rather than stopping at the first.
    pub fn parse(value: &Value) -> Result<Packet, ValidationErrors> {
        let Some(obj) = value.as_object() else {
            return Err(ValidationErrors::single("$", "must be a JSON object"));
        };
        let mut errs = Vec::new();
        for key in obj.keys() {
            if !FIELDS.contains(&key.as_str()) {
                errs.push(FieldError::new(key, "unknown field"));
            }
        }
        let number = parse_number(obj, &mut errs);
        let sent_at = parse_sent_at(obj, &mut errs);
        let producer = parse_name(
            obj,
            "producer",
            ProducerName::parse,
            ProducerName::RULE,
            &mut errs,
        );
        let resource_id = parse_name(
            obj,
            "resource_id",
            ResourceId::parse,
            ResourceId::RULE,
            &mut errs,
        );
        let seq = parse_small(obj, "seq", &mut errs);
        let total = parse_small(obj, "total", &mut errs);
        let text = parse_text(obj, &mut errs);
        let part = parse_part(obj, resource_id, seq, total, &mut errs);
        match (number, sent_at, producer, part, text) {
            (Some(number), Some(sent_at), Some(producer), Some(part), Some(text))
                if errs.is_empty() =>
            {
                Ok(Packet {
                    number,
                    sent_at,
                    producer: producer.unwrap_or_else(ProducerName::default_producer),
                    part,
                    text,
                })
            }
            _ => Err(ValidationErrors { errors: errs }),
        }
    }
}

/// One field's rule violation (`{"name","message"}`), the type every 422 answer carries.
pub use service_kit::problem::FieldError;

/// Every rule a packet broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid packet: {}", .errors.iter().map(|e| format!("{}: {}", e.name, e.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn single(name: &str, message: impl Into<String>) -> Self {
        ValidationErrors {
            errors: vec![FieldError::new(name, message)],
        }
    }

    /// The same errors with every name prefixed, e.g. `[3].number` for item 3 of a batch.
    pub fn prefixed(self, prefix: &str) -> Vec<FieldError> {
        self.errors
            .into_iter()
            .map(|e| {
                let name = if e.name == "$" {
                    prefix.to_string()
                } else {
                    format!("{prefix}.{}", e.name)
                };
                FieldError::new(name, e.message)
            })
            .collect()
    }
}

/// The payload of a job on queue `"messages"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MessageJob {
    pub packet: Packet,
    pub received_at: DateTime<Utc>,
}

/// A processed message: the document in index `{prefix}messages` (`_id` = `doc_id`) and the
/// `?wait=true` answer. Serialized with the Elasticsearch field names (the resource part flat:
/// `resource_id`, `seq`, `total`); the schema is [`wire::StoredMessageFields`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "wire::StoredMessageFields")]
pub struct StoredMessage {
    pub producer: ProducerName,
    pub number: u64,
    pub sent_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub stored_at: DateTime<Utc>,
    /// `received_at − sent_at` in fractional milliseconds.
    pub transit_ms: f64,
    /// Length in characters of each whitespace-separated word of `text`.
    pub word_lengths: Vec<u32>,
    pub text: String,
    pub part: Option<ResourcePart>,
}

impl StoredMessage {
    /// The natural key, also the Elasticsearch `_id`.
    pub fn doc_id(&self) -> String {
        format!("{}:{}", self.producer, self.number)
    }
}

/// Whether `s` is a valid producer name: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_valid_producer(s: &str) -> bool {
    ProducerName::is_valid(s)
}

/// Whether `s` is a valid resource id: `[A-Za-z0-9_.:-]{1,128}`.
pub fn is_valid_resource_id(s: &str) -> bool {
    ResourceId::is_valid(s)
}

/// The field's value, treating JSON `null` as absent.
fn optional<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn parse_number(obj: &Map<String, Value>, errs: &mut Vec<FieldError>) -> Option<u64> {
    match optional(obj, "number") {
        None => {
            errs.push(FieldError::new("number", "is required"));
            None
        }
        Some(v) => match v.as_u64() {
            Some(n) if n <= i64::MAX as u64 => Some(n),
            _ => {
                errs.push(FieldError::new(
                    "number",
                    "must be an integer between 0 and 9223372036854775807",
                ));
                None
            }
        },
    }
}

fn parse_sent_at(obj: &Map<String, Value>, errs: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    let parsed = match optional(obj, "sent_at") {
        None => {
            errs.push(FieldError::new("sent_at", "is required"));
            return None;
        }
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        Some(v) => v.as_i64().and_then(DateTime::from_timestamp_millis),
    };
    match parsed {
        Some(t) if (1..=9999).contains(&t.year()) => Some(t),
        _ => {
            errs.push(FieldError::new(
                "sent_at",
                "must be an RFC 3339 date-time string or integer epoch milliseconds, years 1 to 9999",
            ));
            None
        }
    }
}

/// A string field parsed into its newtype. Optional-field parsers return `Some(None)` when the
/// field is absent and `None` after recording an error.
fn parse_name<T>(
    obj: &Map<String, Value>,
    name: &str,
    parse: fn(&str) -> Option<T>,
    rule: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Option<T>> {
    let Some(v) = optional(obj, name) else {
        return Some(None);
    };
    match v.as_str().and_then(parse) {
        Some(t) => Some(Some(t)),
        None => {
            errs.push(FieldError::new(name, rule));
            None
        }
    }
}

fn parse_small(
    obj: &Map<String, Value>,
    name: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Option<u32>> {
    let Some(v) = optional(obj, name) else {
        return Some(None);
    };
    match v.as_u64() {
        Some(n) if n <= MAX_TOTAL => Some(Some(n as u32)),
        _ => {
            errs.push(FieldError::new(
                name,
                format!("must be an integer between 0 and {MAX_TOTAL}"),
            ));
            None
        }
    }
}

fn parse_text(obj: &Map<String, Value>, errs: &mut Vec<FieldError>) -> Option<String> {
    let Some(v) = optional(obj, "text") else {
        return Some(String::new());
    };
    match v.as_str() {
        Some(s) if s.len() <= MAX_TEXT_BYTES => Some(s.to_string()),
        Some(_) => {
            errs.push(FieldError::new("text", "must be at most 65536 bytes"));
            None
        }
        None => {
            errs.push(FieldError::new("text", "must be a string"));
            None
        }
    }
}

/// `resource_id`, `seq` and `total` come together, with `seq < total` and `total ≥ 1`: the
/// packet's [`ResourcePart`], `Some(None)` when it has none, `None` after recording an error.
fn parse_part(
    obj: &Map<String, Value>,
    resource_id: Option<Option<ResourceId>>,
    seq: Option<Option<u32>>,
    total: Option<Option<u32>>,
    errs: &mut Vec<FieldError>,
) -> Option<Option<ResourcePart>> {
    let has = |name| optional(obj, name).is_some();
    let before = errs.len();
    if has("resource_id") {
        for name in ["seq", "total"] {
            if !has(name) {
                errs.push(FieldError::new(name, "is required with resource_id"));
            }
        }
    } else {
        for name in ["seq", "total"] {
            if has(name) {
                errs.push(FieldError::new(name, "is only allowed with resource_id"));
            }
        }
    }
    if errs.len() > before {
        return None;
    }
    match (resource_id?, seq?, total?) {
        (Some(id), Some(seq), Some(total)) => match ResourcePart::new(id, seq, total) {
            Ok(part) => Some(Some(part)),
            Err(PartError::Total) => {
                errs.push(FieldError::new("total", "must be at least 1"));
                None
            }
            Err(PartError::Seq) => {
                errs.push(FieldError::new("seq", "must be less than total"));
                None
            }
        },
        _ => Some(None),
    }
}

/// The flat JSON forms (see [`wire`]).
pub mod wire;
