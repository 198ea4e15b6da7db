//! The webhook side of a resource: the delivery job enqueued when a resource completes, and the
//! collated body POSTed to `WEBHOOK_URL` (also the document in index `{prefix}resources`).
//! Plain data with validation of what arrives over HTTP; no I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::ResourceId;
use crate::packet::FieldError;

/// The payload of a job on queue "webhooks", XADDed atomically by `collate.lua`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryJob {
    pub resource_id: ResourceId,
}

/// The collated resource: word lengths of every packet ordered by `seq`, plus timing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CollatedResource {
    pub resource_id: String,
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
    /// Checks a received body: its resource id, parsed (it follows the packet rule, so whatever
    /// the consumer accepted is accepted here too), or every problem, one per field.
    pub fn validate(&self) -> Result<ResourceId, Vec<FieldError>> {
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
            Some(id) if errors.is_empty() => Ok(id),
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
            assert_eq!(r.validate().unwrap().as_str(), good);
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
        assert_eq!(serde_json::from_value::<CollatedResource>(v).unwrap(), r);
    }
}
