//! The flat wire forms of [`Packet`] and [`StoredMessage`]: owned for reading (then checked
//! into the domain type), borrowed for writing (no copy on the worker's hot path). The resource
//! part travels as three flat fields, `resource_id`, `seq` and `total`, as the HTTP contract and
//! the Elasticsearch mapping name them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Packet, StoredMessage};
use crate::ids::{ProducerName, ResourceId, ResourcePart};

#[derive(Deserialize)]
pub struct PacketFields {
    number: u64,
    sent_at: DateTime<Utc>,
    producer: ProducerName,
    resource_id: Option<ResourceId>,
    seq: Option<u32>,
    total: Option<u32>,
    text: String,
}

impl TryFrom<PacketFields> for Packet {
    type Error = String;
    fn try_from(f: PacketFields) -> Result<Self, String> {
        let PacketFields {
            number,
            sent_at,
            producer,
            resource_id,
            seq,
            total,
            text,
        } = f;
        let part = ResourcePart::from_flat(resource_id, seq, total)?;
        Ok(Packet {
            number,
            sent_at,
            producer,
            part,
            text,
        })
    }
}

#[derive(Serialize)]
struct PacketRef<'a> {
    number: u64,
    sent_at: &'a DateTime<Utc>,
    producer: &'a str,
    resource_id: Option<&'a str>,
    seq: Option<u32>,
    total: Option<u32>,
    text: &'a str,
}

impl Serialize for Packet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (resource_id, seq, total) = ResourcePart::flat(self.part.as_ref());
        PacketRef {
            number: self.number,
            sent_at: &self.sent_at,
            producer: &self.producer,
            resource_id,
            seq,
            total,
            text: &self.text,
        }
        .serialize(s)
    }
}

/// A processed message as stored and answered. A listing leaves the two large fields out unless
/// asked (`GET /messages?fields=text,word_lengths`); a [`StoredMessage`] has both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = StoredMessage)]
pub struct StoredMessageFields {
    /// `[A-Za-z0-9_.-]{1,64}`.
    #[schema(value_type = String)]
    pub producer: ProducerName,
    pub number: u64,
    #[schema(value_type = String, format = DateTime)]
    pub sent_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub received_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub stored_at: DateTime<Utc>,
    /// `received_at − sent_at` in fractional milliseconds.
    pub transit_ms: f64,
    /// Length in characters of each whitespace-separated word of `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_lengths: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `[A-Za-z0-9_.:-]{1,128}`, or null; `seq` and `total` are set exactly when it is.
    #[schema(value_type = Option<String>)]
    pub resource_id: Option<ResourceId>,
    pub seq: Option<u32>,
    pub total: Option<u32>,
}

impl TryFrom<StoredMessageFields> for StoredMessage {
    type Error = String;
    fn try_from(f: StoredMessageFields) -> Result<Self, String> {
        // Only the resource part is checked; every other field moves as it is.
        let part = ResourcePart::from_flat(f.resource_id, f.seq, f.total)?;
        Ok(StoredMessage {
            part,
            producer: f.producer,
            number: f.number,
            sent_at: f.sent_at,
            received_at: f.received_at,
            stored_at: f.stored_at,
            transit_ms: f.transit_ms,
            word_lengths: f
                .word_lengths
                .ok_or("a stored message without word_lengths")?,
            text: f.text.ok_or("a stored message without text")?,
        })
    }
}

#[derive(Serialize)]
struct StoredMessageRef<'a> {
    producer: &'a str,
    number: u64,
    sent_at: &'a DateTime<Utc>,
    received_at: &'a DateTime<Utc>,
    stored_at: &'a DateTime<Utc>,
    transit_ms: f64,
    word_lengths: &'a [u32],
    text: &'a str,
    resource_id: Option<&'a str>,
    seq: Option<u32>,
    total: Option<u32>,
}

impl Serialize for StoredMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (resource_id, seq, total) = ResourcePart::flat(self.part.as_ref());
        StoredMessageRef {
            producer: &self.producer,
            number: self.number,
            sent_at: &self.sent_at,
            received_at: &self.received_at,
            stored_at: &self.stored_at,
            transit_ms: self.transit_ms,
            word_lengths: &self.word_lengths,
            text: &self.text,
            resource_id,
            seq,
            total,
        }
        .serialize(s)
    }
}

impl utoipa::PartialSchema for StoredMessage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <StoredMessageFields as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for StoredMessage {
    fn name() -> std::borrow::Cow<'static, str> {
        <StoredMessageFields as utoipa::ToSchema>::name()
    }
}
