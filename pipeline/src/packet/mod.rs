//! The packet model: what a producer sends (`Packet`), the job the consumer enqueues
//! (`MessageJob`) and the processed document the worker stores (`StoredMessage`).
//!
//! Packets are parsed and validated at the edge ([`Packet::from_slice`], [`edge`]) straight from
//! the request bytes into a type that cannot be wrong; every rule violation is reported per field
//! (for a 422 answer). Unknown fields are rejected, not ignored. This module does no I/O and
//! never panics on input.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{self, ProducerName, ResourceId, ResourcePart};

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
}

/// One field's rule violation (`{"name","message"}`), the type every 422 answer carries.
pub use service_kit::problem::FieldError;

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

/// Parsing from request bytes (see [`edge`]).
mod edge;
pub use edge::{EdgeError, EdgeRules, MAX_ERRORS, MAX_NUMBER};

/// The flat JSON forms (see [`wire`]).
pub mod wire;
