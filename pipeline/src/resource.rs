//! The webhook side of a resource: the delivery job enqueued when a resource completes, and the
//! collated body POSTed to `WEBHOOK_URL` (also the document in index `{prefix}resources`).
//! Plain data with validation of what arrives over HTTP; no I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{ProducerName, ResourceId, ResourceKey, MAX_TOTAL};
use crate::packet::{FieldError, MAX_TEXT_BYTES};

/// Most word lengths one resource may collate (all packets together; `collate` enforces it). At
/// most ~6 bytes each in the parts JSON and 4 bytes in the worker, so a resource stays within a
/// few MB everywhere.
pub const MAX_WORD_LENGTHS: u64 = 1_000_000;

/// Largest body a delivery of a [`CollatedResource`] can have (`serde_json::to_vec`, as the
/// worker sends it), so a receiver can refuse anything bigger: 6,031,024 bytes (5.75 MiB).
/// - word lengths: at most [`MAX_WORD_LENGTHS`] numbers; a word lies within one packet's text
///   (at most [`MAX_TEXT_BYTES`] = 65,536 bytes, so at most 65,536 chars), so each number has at
///   most 5 digits, plus one `,` → 6 bytes each;
/// - the per-packet lists: at most [`MAX_TOTAL`] of them, `[`, `]` and a `,` → 3 bytes each;
/// - the rest (field names, a resource id of at most 128 bytes, a producer of at most 64,
///   `packets`, three RFC 3339
///   timestamps of at most 35 bytes each): under 1 KiB.
pub const MAX_DELIVERY_BYTES: usize =
    MAX_WORD_LENGTHS as usize * (digits(MAX_TEXT_BYTES) + 1) + MAX_TOTAL as usize * 3 + 1024;

/// Decimal digits of `n`.
const fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The payload of a job on queue "webhooks", XADDed atomically by `collate.lua`: the resource's
/// key under its historical field name (a payload from before producer keys, a bare id, reads as
/// the default producer's resource, which is what it was).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryJob {
    #[serde(rename = "resource_id")]
    pub key: ResourceKey,
}

/// The collated resource: word lengths of every packet ordered by `seq`, plus timing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CollatedResource {
    pub resource_id: String,
    /// The producer whose packets these are; absent for the default producer (so its resources
    /// keep the body they had before producers had keys).
    #[serde(
        default = "ProducerName::default_producer",
        skip_serializing_if = "ProducerName::is_default"
    )]
    pub producer: ProducerName,
    /// Number of packets (`total`); equals `word_lengths.len()`.
    pub packets: u32,
    /// `word_lengths[seq]` is the word-length list of packet `seq`.
    pub word_lengths: Vec<Vec<u32>>,
    /// Earliest `received_at` over the packets (consumer's arrival stamp).
    pub first_received_at: DateTime<Utc>,
    /// Latest `received_at` over the packets: the moment the resource became whole at the API.
    pub last_received_at: DateTime<Utc>,
    /// When the worker marked the resource complete.
    pub completed_at: DateTime<Utc>,
}

impl CollatedResource {
    /// The key of this resource (for a body that passed [`CollatedResource::validate`]).
    pub fn key(&self) -> Option<ResourceKey> {
        ResourceId::parse(&self.resource_id).map(|id| ResourceKey::new(self.producer.clone(), id))
    }

    /// Checks a received body: its resource key, parsed (the id follows the packet rule, so
    /// whatever the consumer accepted is accepted here too), or every problem, one per field.
    pub fn validate(&self) -> Result<ResourceKey, Vec<FieldError>> {
        let mut errors = Vec::new();
        let id = ResourceId::parse(&self.resource_id);
        if id.is_none() {
            errors.push(FieldError::new(
                "resource_id",
                "must match [A-Za-z0-9_.:-]{1,128}",
            ));
        }
        if self.packets == 0 || self.packets > 10_000 {
            errors.push(FieldError::new("packets", "must be between 1 and 10000"));
        }
        if self.word_lengths.len() != self.packets as usize {
            errors.push(FieldError::new(
                "word_lengths",
                format!(
                    "has {} entries but packets is {}",
                    self.word_lengths.len(),
                    self.packets
                ),
            ));
        }
        if self.first_received_at > self.last_received_at {
            errors.push(FieldError::new(
                "first_received_at",
                "must not be after last_received_at",
            ));
        }
        match id {
            Some(id) if errors.is_empty() => Ok(ResourceKey::new(self.producer.clone(), id)),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CollatedResource {
        let t = Utc::now();
        CollatedResource {
            resource_id: "r-1".into(),
            producer: ProducerName::default_producer(),
            packets: 2,
            word_lengths: vec![vec![1, 2], vec![]],
            first_received_at: t,
            last_received_at: t,
            completed_at: t,
        }
    }

    fn error_names(r: &CollatedResource) -> Vec<String> {
        r.validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    #[test]
    fn resource_ids_follow_the_packet_rule() {
        // "." and ".." are valid packet resource ids, so a delivery naming them validates too.
        for good in ["order:42_a.b-c", ".", "..", &"x".repeat(128)] {
            let mut r = sample();
            r.resource_id = good.to_string();
            assert_eq!(r.validate().unwrap().to_string(), good);
        }
        for bad in ["", "a/b", "a\\b", "a b", "é", &"x".repeat(129)] {
            let mut r = sample();
            r.resource_id = bad.to_string();
            assert_eq!(error_names(&r), vec!["resource_id"], "{bad:?}");
        }
    }

    #[test]
    fn validation_reports_each_inconsistency() {
        assert!(sample().validate().is_ok());
        let mut r = sample();
        r.packets = 3;
        r.resource_id = "../x".into();
        assert_eq!(error_names(&r), vec!["resource_id", "word_lengths"]);
    }

    #[test]
    fn the_largest_collatable_resource_fits_the_delivery_limit() {
        assert_eq!(MAX_DELIVERY_BYTES, 6_031_024);
        // Every packet of the largest resource, every word as long as a packet's text allows,
        // the longest id and timestamps with nanoseconds.
        let per_packet = MAX_WORD_LENGTHS as usize / MAX_TOTAL as usize;
        let t = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = CollatedResource {
            resource_id: "x".repeat(128),
            producer: ProducerName::parse(&"p".repeat(64)).unwrap(),
            packets: MAX_TOTAL,
            word_lengths: vec![vec![MAX_TEXT_BYTES as u32; per_packet]; MAX_TOTAL as usize],
            first_received_at: t,
            last_received_at: t,
            completed_at: t,
        };
        assert!(r.validate().is_ok());
        let body = serde_json::to_vec(&r).unwrap();
        assert!(
            body.len() <= MAX_DELIVERY_BYTES,
            "{} > {MAX_DELIVERY_BYTES}",
            body.len()
        );
        // Tight: the bound is within 1 % of the real worst case.
        assert!(
            body.len() * 101 / 100 > MAX_DELIVERY_BYTES,
            "{}",
            body.len()
        );
    }

    #[test]
    fn json_round_trip_keeps_field_names() {
        let r = sample();
        let v = serde_json::to_value(&r).unwrap();
        for f in [
            "resource_id",
            "packets",
            "word_lengths",
            "first_received_at",
            "last_received_at",
            "completed_at",
        ] {
            assert!(v.get(f).is_some(), "{f}");
        }
        assert!(
            v.get("producer").is_none(),
            "the default producer is not spelled"
        );
        assert_eq!(serde_json::from_value::<CollatedResource>(v).unwrap(), r);
        let mut named = sample();
        named.producer = ProducerName::parse("p1").unwrap();
        let v = serde_json::to_value(&named).unwrap();
        assert_eq!(v["producer"], "p1");
        assert_eq!(named.validate().unwrap().to_string(), "p1@r-1");
    }

    #[test]
    fn delivery_jobs_from_before_producer_keys_read_as_the_default_producer() {
        let old: DeliveryJob = serde_json::from_str(r#"{"resource_id":"r:1"}"#).unwrap();
        assert!(old.key.producer().is_default());
        assert_eq!(old.key.id().as_str(), "r:1");
        let new = serde_json::to_string(&DeliveryJob {
            key: ResourceKey::parse("p@r").unwrap(),
        });
        assert_eq!(new.unwrap(), r#"{"resource_id":"p@r"}"#);
    }
}
