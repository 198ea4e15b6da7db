//! The webhook side of a resource: the delivery job enqueued when a resource completes, and the
//! collated body POSTed to `WEBHOOK_URL` (also the document in index `{prefix}resources`).
//! Plain data with validation of what arrives over HTTP; no I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest resource id accepted (same rule as the packet's `resource_id`).
pub const MAX_RESOURCE_ID_LEN: usize = 128;

/// The payload of a job on queue "webhooks", XADDed atomically by `collate.lua`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryJob {
    pub resource_id: String,
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

/// `[A-Za-z0-9_.:-]{1,128}`: the packet rule for resource ids (safe as a file name stem, except
/// that `.` and `..` alone are refused too).
pub fn valid_resource_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_RESOURCE_ID_LEN
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

impl CollatedResource {
    /// Problems with a received body, as `(field, message)` pairs; empty when it is consistent.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if !valid_resource_id(&self.resource_id) {
            errors.push((
                "resource_id",
                "must match [A-Za-z0-9_.:-]{1,128}".to_string(),
            ));
        }
        if self.packets == 0 || self.packets > 10_000 {
            errors.push(("packets", "must be between 1 and 10000".to_string()));
        }
        if self.word_lengths.len() != self.packets as usize {
            errors.push((
                "word_lengths",
                format!(
                    "has {} entries but packets is {}",
                    self.word_lengths.len(),
                    self.packets
                ),
            ));
        }
        if self.first_received_at > self.last_received_at {
            errors.push((
                "first_received_at",
                "must not be after last_received_at".to_string(),
            ));
        }
        errors
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

    #[test]
    fn resource_ids_follow_the_packet_rule() {
        assert!(valid_resource_id("order:42_a.b-c"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a b", "é", &"x".repeat(129)] {
            assert!(!valid_resource_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn validation_reports_each_inconsistency() {
        assert!(sample().validate().is_empty());
        let mut r = sample();
        r.packets = 3;
        r.resource_id = "../x".into();
        let fields: Vec<_> = r.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["resource_id", "word_lengths"]);
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
